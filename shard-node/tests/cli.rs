//! The `shard-node` binary against an embedded chain served over TCP, as an operator runs it:
//! keygen, register (once, by the key's own node ID), status, set-wallet (by the node's own key
//! only), and clear refusals for a wrong chain id, an unknown chain URL and a malformed wallet
//! feature list.

#![allow(missing_docs, clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
};

use primitives::{Address, NodeId};
use upper_chain::{ChainServer, EmbeddedChain, ServerConfig, UpperChain};

const CHAIN_ID: u64 = 4242;

struct Chain {
    owner: Arc<EmbeddedChain>,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

fn served_chain() -> Chain {
    served_chain_from(&upper_chain::Genesis::default())
}

fn served_chain_from(genesis: &upper_chain::Genesis) -> Chain {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let owner = Arc::new(EmbeddedChain::with_genesis(genesis));
    let server = runtime
        .block_on(ChainServer::bind(
            "127.0.0.1:0",
            owner.clone(),
            ServerConfig::new(CHAIN_ID),
        ))
        .unwrap();
    let url = format!("tickrate://{}", server.local_addr().unwrap());
    runtime.spawn(server.run());
    Chain {
        owner,
        url,
        _runtime: runtime,
    }
}

fn shard_node(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shard-node"));
    command.args(args).env_remove("WALLET_FEATURES");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The value of the first `name value` line.
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(name).map(str::trim))
        .unwrap_or_else(|| panic!("no {name} line in {text}"))
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, NodeId) {
    let path = dir.join(name);
    let output = shard_node(&["keygen", "--out", path.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let id: Address = line(&stdout(&output), "node_id").parse().unwrap();
    (path, NodeId(id))
}

fn write_config(
    dir: &Path,
    name: &str,
    key_file: &str,
    url: &str,
    chain_id: u64,
    features: &str,
) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "key_file = \"{key_file}\"\nendpoint = \"127.0.0.1:7500\"\n\
         reward_wallet = \"0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e\"\n\
         wallet_features = \"{features}\"\n\n[chain]\nurl = \"{url}\"\nchain_id = {chain_id}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A new key in `dir` and the configuration of a node using it on `chain`, with no payout
/// features; the node's ID and the configuration's path.
fn operator(dir: &Path, chain: &Chain) -> (NodeId, PathBuf) {
    let (_, id) = keygen(dir, "node.key");
    let config = write_config(dir, "node.toml", "node.key", &chain.url, CHAIN_ID, "");
    (id, config)
}

#[test]
fn an_operator_generates_a_key_registers_once_and_sees_its_status() {
    let chain = served_chain();
    let dir = tempfile::tempdir().unwrap();
    let (key_path, id) = keygen(dir.path(), "node.key");

    // A second keygen never overwrites a key.
    let before = std::fs::read(&key_path).unwrap();
    let again = shard_node(&["keygen", "--out", key_path.to_str().unwrap()], &[]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read(&key_path).unwrap(), before);

    let config = write_config(
        dir.path(),
        "node.toml",
        "node.key",
        &chain.url,
        CHAIN_ID,
        "assets",
    );
    let config = config.to_str().unwrap();
    let status = shard_node(&["status", "--config", config], &[]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert_eq!(line(&stdout(&status), "state"), "unregistered");

    // WALLET_FEATURES overrides the file; an unknown feature is kept as given.
    let register = shard_node(
        &["register", "--config", config],
        &[("WALLET_FEATURES", "assets,future-pay")],
    );
    assert!(register.status.success(), "{}", stderr(&register));
    assert_eq!(line(&stdout(&register), "registered"), id.0.to_string());
    let epoch = chain.owner.epoch().unwrap();
    let record = chain
        .owner
        .registry_snapshot(epoch + 1)
        .unwrap()
        .node(&id)
        .cloned()
        .unwrap();
    assert_eq!(
        record.registration.wallet_features,
        ["assets", "future-pay"]
    );
    assert_eq!(record.registration.endpoint, "127.0.0.1:7500");
    assert_eq!(
        record.registration.reward_wallet,
        Address::repeat_byte(0x5e)
    );

    let twice = shard_node(&["register", "--config", config], &[]);
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).contains("already registered"),
        "{}",
        stderr(&twice)
    );

    let status = shard_node(&["status", "--config", config], &[]);
    assert_eq!(line(&stdout(&status), "state"), "registered");
    chain.owner.advance_epoch();
    let status = shard_node(&["status", "--config", config, "--json"], &[]);
    assert!(status.status.success(), "{}", stderr(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["state"], "active");
    assert_eq!(json["node_id"], id.0.to_string());
    assert_eq!(
        json["wallet_features"],
        serde_json::json!(["assets", "future-pay"])
    );
}

#[test]
fn a_wrong_chain_an_unknown_url_or_bad_features_are_clear_errors_and_register_nothing() {
    let chain = served_chain();
    let dir = tempfile::tempdir().unwrap();
    let (_, id) = keygen(dir.path(), "node.key");
    let next_epoch = chain.owner.epoch().unwrap() + 1;

    let wrong_id = write_config(
        dir.path(),
        "wrong-id.toml",
        "node.key",
        &chain.url,
        CHAIN_ID + 1,
        "",
    );
    let output = shard_node(&["register", "--config", wrong_id.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("chain id"), "{}", stderr(&output));

    let unknown = write_config(
        dir.path(),
        "unknown.toml",
        "node.key",
        "ws://127.0.0.1:1",
        CHAIN_ID,
        "",
    );
    let output = shard_node(&["register", "--config", unknown.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("ws://127.0.0.1:1"),
        "{}",
        stderr(&output)
    );

    let features = write_config(
        dir.path(),
        "features.toml",
        "node.key",
        &chain.url,
        CHAIN_ID,
        "assets,,x",
    );
    let output = shard_node(&["register", "--config", features.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("empty entry"),
        "{}",
        stderr(&output)
    );

    let missing_key = write_config(
        dir.path(),
        "missing.toml",
        "absent.key",
        &chain.url,
        CHAIN_ID,
        "",
    );
    let output = shard_node(
        &["register", "--config", missing_key.to_str().unwrap()],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("absent.key"),
        "{}",
        stderr(&output)
    );

    assert!(
        chain
            .owner
            .registry_snapshot(next_epoch)
            .unwrap()
            .node(&id)
            .is_none()
    );
}

#[test]
fn an_operator_changes_its_wallet_and_features_and_no_one_else_can() {
    let chain = served_chain();
    let dir = tempfile::tempdir().unwrap();
    let (id, config) = operator(dir.path(), &chain);
    let config = config.to_str().unwrap();

    // Not registered yet: nothing to change.
    let early = shard_node(&["set-wallet", "--config", config], &[]);
    assert!(!early.status.success());
    assert!(
        stderr(&early).contains("not registered"),
        "{}",
        stderr(&early)
    );

    let register = shard_node(&["register", "--config", config], &[]);
    assert!(register.status.success(), "{}", stderr(&register));
    let registration = |chain: &Chain| {
        let epoch = chain.owner.epoch().unwrap();
        chain
            .owner
            .registry_snapshot(epoch + 1)
            .unwrap()
            .node(&id)
            .cloned()
            .unwrap()
            .registration
    };
    assert!(registration(&chain).wallet_features.is_empty());

    // A new wallet and features; the unknown feature is kept as given.
    let wallet = "0x7777777777777777777777777777777777777777";
    let update = shard_node(
        &["set-wallet", "--config", config, "--reward-wallet", wallet],
        &[("WALLET_FEATURES", "assets,future-pay")],
    );
    assert!(update.status.success(), "{}", stderr(&update));
    assert_eq!(
        line(&stdout(&update), "wallet_features"),
        "assets,future-pay"
    );
    let now = registration(&chain);
    assert_eq!(now.reward_wallet, Address::repeat_byte(0x77));
    assert_eq!(now.wallet_features, ["assets", "future-pay"]);
    assert_eq!(chain.owner.wallet_nonce(&id).unwrap(), 1);

    // A malformed list changes nothing.
    let bad = shard_node(
        &["set-wallet", "--config", config],
        &[("WALLET_FEATURES", "assets,,x")],
    );
    assert!(!bad.status.success());
    assert_eq!(registration(&chain), now);

    // Another operator's key, with this node's ID in its update, is refused by the chain.
    let (other_key, _) = keygen(dir.path(), "other.key");
    let intruder = primitives::keyfile::OperatorKeys::load(&other_key).unwrap();
    let forged = upper_chain::WalletUpdate {
        node: id,
        reward_wallet: Address::repeat_byte(0x66),
        wallet_features: Vec::new(),
        nonce: 1,
    };
    assert!(matches!(
        chain.owner.update_wallet(
            forged.clone(),
            &intruder.operator().sign_prehash(&forged.signing_hash())
        ),
        Err(upper_chain::ChainError::WrongSigner { .. })
    ));
    assert_eq!(registration(&chain), now);

    // Back to the file's values: its wallet and no feature.
    let reset = shard_node(&["set-wallet", "--config", config], &[]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let reset = registration(&chain);
    assert_eq!(reset.reward_wallet, Address::repeat_byte(0x5e));
    assert!(reset.wallet_features.is_empty());
    assert_eq!(chain.owner.wallet_nonce(&id).unwrap(), 2);

    // Once the node serves, a change waits for the next epoch, and `status` shows both.
    let serving = chain.owner.advance_epoch();
    let moved = shard_node(
        &["set-wallet", "--config", config, "--reward-wallet", wallet],
        &[("WALLET_FEATURES", "assets")],
    );
    assert!(moved.status.success(), "{}", stderr(&moved));
    assert_eq!(
        line(&stdout(&moved), "from_epoch"),
        (serving + 1).to_string()
    );
    let status = shard_node(&["status", "--config", config], &[]);
    assert!(status.status.success(), "{}", stderr(&status));
    let text = stdout(&status);
    assert_eq!(
        line(&text, "reward_wallet"),
        format!("{}", Address::repeat_byte(0x5e))
    );
    assert_eq!(
        line(&text, "next_wallet"),
        format!(
            "{} features assets from_epoch {}",
            Address::repeat_byte(0x77),
            serving + 1
        )
    );
    chain.owner.advance_epoch();
    let status = shard_node(&["status", "--config", config, "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        json["reward_wallet"],
        format!("{}", Address::repeat_byte(0x77))
    );
    assert_eq!(json["wallet_features"], serde_json::json!(["assets"]));
    assert!(json["next_wallet"].is_null(), "{json}");
    // The epoch the node served in before keeps the wallet it had.
    let before = chain.owner.registry_snapshot(serving).unwrap();
    assert_eq!(
        before.node(&id).unwrap().registration.reward_wallet,
        Address::repeat_byte(0x5e)
    );
}

#[test]
fn an_evicted_node_sees_why_in_its_status() {
    use shard_node::{ShardNode, bft::EvictionEvidence};
    use upper_chain::{DepartureProof, group_id};

    let chain = served_chain();
    let dir = tempfile::tempdir().unwrap();
    let (id, config) = operator(dir.path(), &chain);
    let config = config.to_str().unwrap();
    let register = shard_node(&["register", "--config", config], &[]);
    assert!(register.status.success(), "{}", stderr(&register));
    // Seven more nodes make a group of eight with it.
    let others: Vec<ShardNode> = (0..7)
        .map(|seed| ShardNode::from_seed(900 + seed))
        .collect();
    for node in &others {
        let (registration, signature) = node.registration("peer".into(), Address::ZERO, vec![]);
        chain.owner.register_node(registration, &signature).unwrap();
    }
    chain.owner.advance_epoch();
    let epoch = chain.owner.epoch().unwrap();
    let mut members = chain
        .owner
        .registry_snapshot(epoch)
        .unwrap()
        .group_of(&Address::repeat_byte(0x42));
    members.sort();
    assert_eq!(members.len(), 8);
    assert!(members.contains(&id));

    // Six of the others vote it out, as their group cores would.
    let evidence = EvictionEvidence {
        group: group_id(&members),
        epoch,
        silent_rounds: shard_node::bft::EVICTION_SILENT_ROUNDS,
    };
    let departure = evidence.departure(id);
    let votes: Vec<(usize, primitives::bls::BlsSignature)> = others
        .iter()
        .take(6)
        .map(|node| {
            let index = members
                .iter()
                .position(|member| *member == node.id())
                .unwrap();
            (index, node.bls().sign(&departure.signing_bytes()))
        })
        .collect();
    let certificate = primitives::bls::Certificate::aggregate(&votes).unwrap();
    chain
        .owner
        .record_departure(
            departure,
            &DepartureProof::GroupCertificate {
                members: members.clone(),
                certificate,
            },
        )
        .unwrap();

    let status = shard_node(&["status", "--config", config], &[]);
    assert!(status.status.success(), "{}", stderr(&status));
    let text = stdout(&status);
    assert_eq!(line(&text, "state"), "departed");
    assert_eq!(
        line(&text, "departure_reason"),
        format!(
            "evicted: its group {} of epoch {epoch} heard nothing from it in 6 rounds in a row",
            group_id(&members)
        )
    );
    let status = shard_node(&["status", "--config", config, "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["departure"]["kind"], "Eviction");
    assert_eq!(json["departure"]["epoch"], epoch + 1);
    assert!(
        json["departure"]["why"]
            .as_str()
            .unwrap()
            .contains("heard nothing from it in 6 rounds")
    );
}

/// `SSTORE(CALLER, CALLDATALOAD(0))`.
const STORE_CODE: &[u8] = &[0x60, 0x00, 0x35, 0x33, 0x55, 0x00];
const COUNTER: Address = Address::repeat_byte(0xc0);

/// A move of `key`'s storing `value` in the counter under its own address.
fn store_move(
    key: &primitives::AccountKey,
    nonce: u64,
    value: u64,
) -> primitives::SignedTransaction {
    use primitives::{AccountAccess, DeclaredWrite, SlotAccess, SpaceAccessList, U256};
    primitives::Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to: COUNTER,
        value: U256::ZERO,
        data: primitives::Bytes::from(U256::from(value).to_be_bytes::<32>().to_vec()),
        gas_limit: 100_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(key.address()),
            AccountAccess {
                storage: vec![SlotAccess {
                    slot: primitives::B256::left_padding_from(key.address().as_slice()),
                    write: Some(DeclaredWrite::Exact(U256::from(value))),
                }],
                ..AccountAccess::read(COUNTER)
            },
        ]),
    }
    .sign(key)
}

/// Batch `number` of `moves`, sealed by one sequencer (the network checks bodies against
/// headers; the commit certificate is the driver's to check).
fn finalized_batch(number: u64, body: &primitives::BlockBody) -> primitives::FinalizedBatch {
    use primitives::{Batch, BlockHeader, codec::Encode};
    let header = BlockHeader::seal(
        &primitives::AccountKey::from_seed(1),
        number,
        primitives::B256::ZERO,
        0,
        body,
        body.to_bytes().len() as u32,
    );
    let sequencer = primitives::bls::BlsSecretKey::from_seed(&[1; 32]);
    primitives::FinalizedBatch {
        batch: Batch {
            number,
            parent: primitives::B256::ZERO,
            headers: vec![header],
        },
        sequence: number,
        view: 0,
        certificate: primitives::bls::Certificate::aggregate(&[(0, sequencer.sign(b"test"))])
            .unwrap(),
    }
}

#[test]
fn verify_re_executes_a_record_log_checks_the_committed_roots_and_pins_a_tampered_move() {
    use primitives::{Decode, Encode, U256};
    use shard_node::{
        ShardNetwork, ShardNode,
        record::{ExecutionRecord, RecordLog},
    };

    let chain = served_chain();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<ShardNode> = (0..16).map(ShardNode::from_seed).collect();
    for node in &nodes {
        let (registration, signature) = node.registration("peer".into(), Address::ZERO, vec![]);
        chain.owner.register_node(registration, &signature).unwrap();
    }
    chain.owner.advance_epoch();
    let mut network = ShardNetwork::new(
        chain.owner.clone(),
        CHAIN_ID,
        nodes,
        &dir.path().join("shards"),
    )
    .unwrap();
    network.set_root_commit_interval(2);
    let records = dir.path().join("records");
    network.set_record_log(RecordLog::open(&records).unwrap());
    network
        .insert_genesis(
            COUNTER,
            execution::AccountState {
                code: primitives::Bytes::from_static(STORE_CODE),
                ..execution::AccountState::default()
            },
        )
        .unwrap();
    let players: Vec<primitives::AccountKey> = (0..10)
        .map(|seed| primitives::AccountKey::from_seed(700 + seed))
        .collect();
    for number in 1..=4u64 {
        let body = primitives::BlockBody {
            moves: players
                .iter()
                .enumerate()
                .map(|(index, key)| store_move(key, number - 1, number * 100 + index as u64))
                .collect(),
        };
        network
            .execute_batch(&finalized_batch(number, &body), &[body])
            .unwrap();
    }
    let records_arg = records.to_str().unwrap();
    let chain_id = CHAIN_ID.to_string();
    let args = [
        "verify",
        "--records",
        records_arg,
        "--chain",
        &chain.url,
        "--chain-id",
        &chain_id,
    ];
    let honest = shard_node(&args, &[]);
    assert!(honest.status.success(), "{}", stderr(&honest));
    let text = stdout(&honest);
    assert_eq!(line(&text, "replayed_batches"), "4");
    assert_eq!(line(&text, "replayed_moves"), "40");
    let checked: usize = line(&text, "roots_checked").parse().unwrap();
    assert!(checked >= 2, "{text}");
    assert_eq!(text.matches("root_ok").count(), checked);

    // A record whose move 3 of batch 3 claims another value is pinned to that move.
    let log = RecordLog::open(&records).unwrap();
    let mut record: ExecutionRecord = log.record(3).unwrap().unwrap();
    let slot = primitives::B256::left_padding_from(players[3].address().as_slice());
    record.moves[3]
        .outcome
        .diff
        .accounts
        .get_mut(&COUNTER)
        .unwrap()
        .storage
        .insert(slot, U256::from(999_999));
    let hash = record.moves[3].signed.hash();
    log.append(&ExecutionRecord::from_bytes(&record.to_bytes()).unwrap())
        .unwrap();
    let tampered = shard_node(&args, &[]);
    assert!(!tampered.status.success());
    let text = stdout(&tampered);
    assert!(
        text.contains(&format!("batch 3, move 3 ({hash})")),
        "{text}"
    );

    // A file that does not decode is a clear error, not a panic.
    std::fs::write(records.join("000000000003.rec"), b"\x01garbage").unwrap();
    let garbage = shard_node(&args, &[]);
    assert!(!garbage.status.success());
    assert!(
        stderr(&garbage).contains("000000000003.rec"),
        "{}",
        stderr(&garbage)
    );
}

#[test]
fn verify_reads_the_records_from_strong_da_alone_with_a_node_down() {
    use da_strong::{DaClient, DaNode, DaNodeAddress, DaServer, ErasureParams};
    use shard_node::{ShardNetwork, ShardNode, strong_da::StrongDaPublisher};
    use upper_chain::AvailabilityKind;

    // Four DA nodes, any two rebuild a record; their committee is fixed in the chain's genesis.
    let params = ErasureParams::new(2, 4).unwrap();
    let keys: Vec<primitives::bls::BlsSecretKey> = (0..4u8)
        .map(|index| primitives::bls::BlsSecretKey::from_seed(&[0x40 + index; 32]))
        .collect();
    let chain = served_chain_from(&upper_chain::Genesis {
        da_committee: Some(upper_chain::DaCommittee {
            keys: keys.iter().map(|key| key.public_key()).collect(),
            data_chunks: params.data_chunks,
            quorum: params.quorum() as u32,
        }),
        ..upper_chain::Genesis::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let _runtime = chain._runtime.enter();
    let mut servers = Vec::new();
    let mut nodes = Vec::new();
    let mut da_args = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let node_dir = dir.path().join(format!("da-{index}"));
        let identity = da_strong::server::load_or_create_identity(&node_dir).unwrap();
        let node = DaNode::open(&node_dir.join("chunks"), index as u16, key.clone()).unwrap();
        let server =
            DaServer::start("127.0.0.1:0".parse().unwrap(), &identity, Arc::new(node)).unwrap();
        da_args.push(format!(
            "{}={}",
            server.local_addr(),
            node_dir.join("quic-certificate.der").display()
        ));
        nodes.push(DaNodeAddress {
            address: server.local_addr(),
            public_key: key.public_key(),
            certificate: identity.certificate.clone(),
        });
        servers.push(server);
    }

    let shard_nodes: Vec<ShardNode> = (0..16).map(ShardNode::from_seed).collect();
    for node in &shard_nodes {
        let (registration, signature) = node.registration("peer".into(), Address::ZERO, vec![]);
        chain.owner.register_node(registration, &signature).unwrap();
    }
    chain.owner.advance_epoch();
    let mut network = ShardNetwork::new(
        chain.owner.clone(),
        CHAIN_ID,
        shard_nodes,
        &dir.path().join("shards"),
    )
    .unwrap();
    network.set_root_commit_interval(2);
    network.set_strong_da(StrongDaPublisher::spawn(
        Arc::new(DaClient::new(params, nodes).unwrap()),
        chain.owner.clone(),
    ));
    network
        .insert_genesis(
            COUNTER,
            execution::AccountState {
                code: primitives::Bytes::from_static(STORE_CODE),
                ..execution::AccountState::default()
            },
        )
        .unwrap();
    let players: Vec<primitives::AccountKey> = (0..10)
        .map(|seed| primitives::AccountKey::from_seed(800 + seed))
        .collect();
    for number in 1..=4u64 {
        let body = primitives::BlockBody {
            moves: players
                .iter()
                .enumerate()
                .map(|(index, key)| store_move(key, number - 1, number * 100 + index as u64))
                .collect(),
        };
        network
            .execute_batch(&finalized_batch(number, &body), &[body])
            .unwrap();
    }
    // Dispersal runs beside execution: wait (bounded) until the chain holds every commitment.
    let recorded = |kind, number| chain.owner.availability(kind, number).unwrap().is_some();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(recorded(AvailabilityKind::Genesis, 0)
        && (1..=4).all(|number| recorded(AvailabilityKind::ExecutionRecord, number)))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "records not dispersed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let chain_id = CHAIN_ID.to_string();
    let verify_with = |da: &str| {
        shard_node(
            &[
                "verify",
                "--da",
                da,
                "--chain",
                &chain.url,
                "--chain-id",
                &chain_id,
            ],
            &[],
        )
    };
    let all = da_args.join(",");
    let honest = verify_with(&all);
    assert!(honest.status.success(), "{}", stderr(&honest));
    let text = stdout(&honest);
    assert_eq!(line(&text, "replayed_batches"), "4");
    assert_eq!(line(&text, "replayed_moves"), "40");
    let checked: usize = line(&text, "roots_checked").parse().unwrap();
    assert!(checked >= 2, "{text}");

    // With the first DA node down, the others still rebuild every record.
    let first = servers.remove(0);
    chain._runtime.block_on(first.shutdown());
    let degraded = verify_with(&all);
    assert!(degraded.status.success(), "{}", stderr(&degraded));
    assert_eq!(line(&stdout(&degraded), "replayed_moves"), "40");

    // A committee that is not the chain's, or a node that does not parse, is a clear error.
    let three = da_args[..3].join(",");
    let short = verify_with(&three);
    assert!(!short.status.success());
    assert!(
        stderr(&short).contains("3 DA nodes given; the chain's committee has 4"),
        "{}",
        stderr(&short)
    );
    let garbage = verify_with("127.0.0.1:1");
    assert!(!garbage.status.success());
    assert!(
        stderr(&garbage).contains("expected ADDR=CERT_FILE"),
        "{}",
        stderr(&garbage)
    );
    // Three of four nodes down: fewer than k answer, and the replay stops with why.
    for server in servers.drain(..2) {
        chain._runtime.block_on(server.shutdown());
    }
    let unavailable = verify_with(&all);
    assert!(!unavailable.status.success());
    assert!(
        stderr(&unavailable).contains("verified chunks of the 2 needed"),
        "{}",
        stderr(&unavailable)
    );
}
