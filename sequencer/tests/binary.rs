//! The `sequencer` binary as an operator runs it, against an embedded upper chain served over
//! TCP: every move it acks survives `kill -9` and reaches a block in weak DA.
//!
//! Run 1 ticks once a minute, so nothing it acks is packed before it is killed mid-load: every
//! acked move must come back from the write-ahead log. Run 2 (the tick overridden by a flag)
//! packs every 20 ms and is killed mid-load too, with some moves in blocks and some not. Run 3
//! must then put every move acked by runs 1 and 2 into a block whose body is in weak DA.

#![allow(missing_docs, clippy::unwrap_used)]

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Arc,
    time::Duration,
};

use client_sdk::{Client, ClientError};
use da_weak::{LIST_BLOCKS_MAX, WeakDa, block_key};
use parking_lot::Mutex;
use primitives::{
    AccountAccess, AccountKey, Address, B256, BlockBody, Bytes, DeclaredWrite, Decode,
    FailureReason, FinalityLevel, NodeId, SignedTransaction, SlotAccess, SpaceAccessList,
    Transaction, TxHash, U256,
    api::{Refusal, ReplacementRefusal, SponsorRefusal},
    bls::BlsPublicKey,
};
use sequencer::identity::SequencerKeys;
use upper_chain::{
    AdminOp, ChainServer, EmbeddedChain, Genesis, SequencerRecord, ServerConfig,
    SponsorPolicyUpdate, SponsorTerms, UpperChain,
};

const UPPER_CHAIN_ID: u64 = 4243;
const CHAIN_ID: u64 = 77;
const PLAYERS: u64 = 8;

fn sequencer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sequencer"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value of the first `name value` line.
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(name).map(str::trim))
        .unwrap_or_else(|| panic!("no {name} line in {text}"))
}

fn keygen(dir: &Path) -> (PathBuf, NodeId, BlsPublicKey) {
    let path = dir.join("sequencer.key");
    let output = sequencer(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let id: Address = line(&stdout, "id").parse().unwrap();
    let bls: [u8; 48] = alloy_primitives::hex::decode_to_array(line(&stdout, "bls_key")).unwrap();
    (path, NodeId(id), BlsPublicKey::from_bytes(&bls).unwrap())
}

/// Serves `chain` over TCP from `runtime`; returns its `tickrate://` URL.
fn serve(runtime: &tokio::runtime::Runtime, chain: Arc<EmbeddedChain>) -> String {
    let server = runtime
        .block_on(ChainServer::bind(
            "127.0.0.1:0",
            chain,
            ServerConfig::new(UPPER_CHAIN_ID),
        ))
        .unwrap();
    let url = format!("tickrate://{}", server.local_addr().unwrap());
    runtime.spawn(server.run());
    url
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, chain_url: &str, metrics_port: u16) -> PathBuf {
    let path = dir.join("sequencer.toml");
    let config = format!(
        r#"key_file = "sequencer.key"
chain_id = {CHAIN_ID}
tick_ms = 60000
client_listen = "127.0.0.1:0"
mesh_listen = "127.0.0.1:0"
weak_da = "weak-da"
metrics_listen = "127.0.0.1:{metrics_port}"

[wal]
dir = "wal"
fsync = "group"

[chain]
url = "{chain_url}"
chain_id = {UPPER_CHAIN_ID}
"#
    );
    std::fs::write(&path, config).unwrap();
    path
}

/// A running `sequencer run`, killed with SIGKILL on drop.
struct Running {
    child: Child,
    client_addr: SocketAddr,
    log: PathBuf,
    /// Kept open: the sequencer may print more.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Running {
    fn start(config: &Path, log: &Path, flags: &[&str]) -> Running {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sequencer"))
            .args(["run", "--config", config.to_str().unwrap()])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut client_addr = None;
        let mut line = String::new();
        while client_addr.is_none() {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let status = child.wait().unwrap();
                panic!(
                    "sequencer exited ({status}) before listening:\n{}",
                    std::fs::read_to_string(log).unwrap()
                );
            }
            if let Some(addr) = line.strip_prefix("client_addr ") {
                client_addr = Some(addr.trim().parse().unwrap());
            }
        }
        Running {
            child,
            client_addr: client_addr.unwrap(),
            log: log.to_path_buf(),
            _stdout: stdout,
        }
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn player(index: u64) -> AccountKey {
    AccountKey::from_seed(50_000 + index)
}

fn transfer(key: &AccountKey, nonce: u64) -> primitives::SignedTransaction {
    let to = Address::repeat_byte(0x42);
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to,
        value: U256::ZERO,
        data: Bytes::new(),
        gas_limit: 21_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(key.address()),
            AccountAccess::read(to),
        ]),
    }
    .sign(key)
}

/// Sends moves from every player, each its next nonces in order, pipelined, until `stop` is
/// set; records every acked hash. Returns once told to stop.
async fn load(
    addr: SocketAddr,
    acked: Arc<Mutex<Vec<TxHash>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let client = Client::connect(addr).await.unwrap();
    let keys: Vec<AccountKey> = (0..PLAYERS).map(player).collect();
    let mut nonces = HashMap::new();
    for key in &keys {
        // After a restart the replayed moves are pending again: go on from there.
        let Ok(nonce) = client.pending_nonce(key.address()).await else {
            return;
        };
        nonces.insert(key.address(), nonce);
    }
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for key in &keys {
            let nonce = nonces.get_mut(&key.address()).unwrap();
            let Ok(submission) = client.submit(transfer(key, *nonce)).await else {
                return;
            };
            *nonce += 1;
            let acked = acked.clone();
            tokio::spawn(async move {
                let hash = submission.hash;
                if submission.ack().await.is_ok() {
                    acked.lock().push(hash);
                }
            });
        }
        // About 8 moves a millisecond: enough that acks, fsyncs and ticks interleave.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs `load` against `running` until `acks` more moves are acked, then `kill -9`s it
/// mid-load; returns the moves acked before it died.
fn load_and_kill(
    runtime: &tokio::runtime::Runtime,
    running: Running,
    acks: usize,
    before_kill: impl FnOnce(),
) -> Vec<TxHash> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = runtime.spawn(load(running.client_addr, acked.clone(), stop.clone()));
    let mut waited = 0;
    while acked.lock().len() < acks {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
        assert!(
            waited < 3_000 && !task.is_finished(),
            "only {} acks, the load stopped or a minute passed; log:\n{}",
            acked.lock().len(),
            std::fs::read_to_string(&running.log).unwrap_or_default()
        );
    }
    before_kill();
    running.kill();
    // Acks already on their way were sent after their fsync: they count too.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.abort();
    std::mem::take(&mut *acked.lock())
}

/// Every move in a block of `sequencer` whose body is in weak DA (and how often it appears).
fn moves_in_weak_da(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    id: NodeId,
) -> HashMap<TxHash, u32> {
    let weak_da = WeakDa::local(dir).unwrap();
    let mut moves = HashMap::new();
    runtime.block_on(async {
        let mut from = 0;
        loop {
            let blocks = weak_da
                .list_blocks(&id, from, LIST_BLOCKS_MAX)
                .await
                .unwrap();
            let Some(last) = blocks.last() else { break };
            from = last.height + 1;
            for block in &blocks {
                let key = block_key(&id, block.height, &block.root);
                // A local weak DA keeps each body in a file at its key.
                let bytes = std::fs::read(dir.join(key.as_ref())).unwrap();
                let body = BlockBody::from_bytes(&bytes).unwrap();
                assert_eq!(body.root(), block.root, "a stored body matches its root");
                for signed in &body.moves {
                    *moves.entry(signed.hash()).or_insert(0) += 1;
                }
            }
        }
    });
    moves
}

fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn metric(scraped: &str, name: &str) -> f64 {
    scraped
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name} in\n{scraped}"))
}

#[test]
fn every_move_acked_before_a_kill_9_reaches_a_block_after_the_restart() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, id, bls_key) = keygen(dir.path());

    // The upper chain, served to the sequencer process, with a set of one: this sequencer.
    let chain = Arc::new(EmbeddedChain::new(vec![SequencerRecord { id, bls_key }]));
    let chain_url = serve(&runtime, chain.clone());

    let metrics_port = free_tcp_port();
    let config = write_config(dir.path(), &chain_url, metrics_port);
    let log = dir.path().join("sequencer.log");
    let weak_da = dir.path().join("weak-da");

    // Run 1: no tick after the first (empty) one, so every acked move is only in the log.
    let running = Running::start(&config, &log, &[]);
    let first = load_and_kill(&runtime, running, 400, || {
        let scraped = scrape(metrics_port);
        assert!(metric(&scraped, "sequencer_moves_acked_total") >= 400.0);
        assert!(metric(&scraped, "sequencer_wal_fsyncs_total") >= 1.0);
        assert!(scraped.contains("sequencer_ack_latency_seconds_bucket"));
        assert!(scraped.contains("sequencer_mempool_moves"));
    });
    assert!(first.len() >= 400);
    assert!(
        moves_in_weak_da(&runtime, &weak_da, id).is_empty(),
        "run 1 packed nothing"
    );

    // Run 2: the tick overridden by a flag; killed mid-load with blocks stored and moves not.
    let running = Running::start(&config, &log, &["--tick-ms", "20"]);
    let second = load_and_kill(&runtime, running, 800, || {});

    let stored_at_kill = moves_in_weak_da(&runtime, &weak_da, id);
    let unpacked_at_kill = second
        .iter()
        .filter(|hash| !stored_at_kill.contains_key(*hash))
        .count();
    eprintln!(
        "run 1 acked {}, run 2 acked {} ({unpacked_at_kill} of them not yet in a stored block at the kill)",
        first.len(),
        second.len()
    );

    // Run 3: every move acked by runs 1 and 2 reaches a block in weak DA.
    let running = Running::start(&config, &log, &["--tick-ms", "20"]);
    let acked: HashSet<TxHash> = first.iter().chain(&second).copied().collect();
    assert_eq!(
        acked.len(),
        first.len() + second.len(),
        "each move acked once"
    );
    let mut missing = acked.len();
    for _ in 0..500 {
        let stored = moves_in_weak_da(&runtime, &weak_da, id);
        missing = acked
            .iter()
            .filter(|hash| !stored.contains_key(*hash))
            .count();
        if missing == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acked moves never reached a block; log:\n{log_text}",
        acked.len()
    );
    let stored = moves_in_weak_da(&runtime, &weak_da, id);
    eprintln!(
        "after run 3: {} moves in weak DA, {} of them in two blocks",
        stored.len(),
        stored.values().filter(|count| **count > 1).count()
    );
    // Blocks settled against weak DA after a kill are not packed again: no move is in two.
    assert!(stored.values().all(|count| *count == 1));
    assert!(log_text.contains("acked moves from the write-ahead log are back in the mempool"));
    // A set of one runs PBFT alone: its batches are finalized.
    assert!(log_text.contains("batch finalized"));
    assert!(log_text.contains("no shard nodes in this process"));
    if std::env::var_os("TICKRATE_SEQUENCER_LOG").is_some() {
        eprintln!("{log_text}");
    }
    drop(running);
}

/// A move of `key` at `nonce`, priced `gas_price`, that writes `value` into slot `slot` of the
/// game contract.
fn cell(key: &AccountKey, nonce: u64, gas_price: u128, slot: u64, value: u64) -> SignedTransaction {
    let game = Address::repeat_byte(0x42);
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to: game,
        value: U256::ZERO,
        data: Bytes::new(),
        gas_limit: 50_000,
        gas_price,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(key.address()),
            AccountAccess {
                storage: vec![SlotAccess {
                    slot: B256::from(U256::from(slot)),
                    write: Some(DeclaredWrite::Exact(U256::from(value))),
                }],
                ..AccountAccess::read(game)
            },
        ]),
    }
    .sign(key)
}

/// A pending move replaced by the same sender and nonce at a higher gas price is gone from
/// pending state, its sender hears it was replaced, and after `kill -9` and a restart the
/// replacement, not the replaced move, is what the log gives back and what reaches a block.
/// A replacement without the price bump is refused and changes nothing; once packed, the nonce
/// is spent.
#[test]
fn a_replacement_survives_a_kill_9_and_only_it_reaches_a_block() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, id, bls_key) = keygen(dir.path());
    let chain = Arc::new(EmbeddedChain::new(vec![SequencerRecord { id, bls_key }]));
    let chain_url = serve(&runtime, chain);
    let config = write_config(dir.path(), &chain_url, free_tcp_port());
    let log = dir.path().join("sequencer.log");
    let weak_da = dir.path().join("weak-da");
    let game = Address::repeat_byte(0x42);
    let key = player(77);
    let slot = |n: u64| B256::from(U256::from(n));

    // Run 1 ticks once a minute: every move stays in the mempool.
    let running = Running::start(&config, &log, &[]);
    let first = cell(&key, 0, 10, 0, 1);
    let later = cell(&key, 1, 0, 1, 2);
    let underpriced = cell(&key, 0, 10, 0, 5);
    let replacement = cell(&key, 0, 11, 0, 7);
    runtime.block_on(async {
        let client = Client::connect(running.client_addr).await.unwrap();
        client.submit_and_ack(first.clone()).await.unwrap();
        client.submit_and_ack(later.clone()).await.unwrap();
        let refused = client.submit_and_ack(underpriced.clone()).await;
        assert!(
            matches!(
                refused,
                Err(ClientError::Refused(Refusal::Replacement(
                    ReplacementRefusal::Underpriced {
                        min_gas_price: 11,
                        got: 10
                    }
                )))
            ),
            "{refused:?}"
        );
        // Refused: pending state is as before.
        assert_eq!(
            client.pending_storage(game, slot(0)).await.unwrap(),
            U256::from(1)
        );
        assert_eq!(client.pending_nonce(key.address()).await.unwrap(), 2);
        client.submit_and_ack(replacement.clone()).await.unwrap();
        assert_eq!(
            client.pending_storage(game, slot(0)).await.unwrap(),
            U256::from(7)
        );
        assert_eq!(
            client.pending_storage(game, slot(1)).await.unwrap(),
            U256::from(2)
        );
        assert_eq!(client.pending_nonce(key.address()).await.unwrap(), 2);
        let level = tokio::time::timeout(
            Duration::from_secs(60),
            client.wait_for(first.hash(), FinalityLevel::Executed),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            level,
            FinalityLevel::Failed(FailureReason::Replaced {
                by: replacement.hash()
            })
        );
    });
    running.kill();

    // Run 2 comes back from the log and packs every 20 ms.
    let running = Running::start(&config, &log, &["--tick-ms", "20"]);
    let mut stored = HashMap::new();
    for _ in 0..500 {
        stored = moves_in_weak_da(&runtime, &weak_da, id);
        if stored.contains_key(&replacement.hash()) && stored.contains_key(&later.hash()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stored.get(&replacement.hash()), Some(&1), "{stored:?}");
    assert_eq!(stored.get(&later.hash()), Some(&1));
    assert!(
        !stored.contains_key(&first.hash()),
        "the replaced move never reaches a block"
    );
    assert!(!stored.contains_key(&underpriced.hash()));
    runtime.block_on(async {
        let client = Client::connect(running.client_addr).await.unwrap();
        // Replayed in place: the replacement's write, then the later move's.
        assert_eq!(
            client.pending_storage(game, slot(0)).await.unwrap(),
            U256::from(7)
        );
        assert_eq!(client.pending_nonce(key.address()).await.unwrap(), 2);
        // Packed: too late to replace, the nonce is spent.
        let late = client.submit_and_ack(cell(&key, 0, 1_000, 0, 9)).await;
        assert!(
            matches!(
                late,
                Err(ClientError::Refused(Refusal::BadNonce {
                    expected: 2,
                    got: 0
                }))
            ),
            "{late:?}"
        );
    });
    drop(running);
}

/// Sets `sponsor`'s policy on the chain to `targets` with `budget` gas per player.
fn set_sponsor_policy(
    chain: &EmbeddedChain,
    sponsor: &AccountKey,
    targets: Vec<Address>,
    budget: u64,
) {
    let update = SponsorPolicyUpdate {
        sponsor: sponsor.address(),
        terms: Some(SponsorTerms {
            targets,
            player_gas_budget: budget,
            total_gas_budget: budget * 100,
            player_moves_per_second: 1_000,
            player_moves_burst: 1_000,
        }),
        nonce: chain.sponsor_nonce(&sponsor.address()).unwrap(),
    };
    let signature = sponsor.sign_prehash(&update.signing_hash());
    chain.set_sponsor_policy(update, &signature).unwrap();
}

/// A zero-price move of `key` at `nonce` to `to`, paid for by `sponsor`.
fn sponsored(key: &AccountKey, nonce: u64, to: Address, sponsor: Address) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to,
        value: U256::ZERO,
        data: Bytes::new(),
        gas_limit: 50_000,
        gas_price: 0,
        sponsor: Some(sponsor),
        access_list: SpaceAccessList::new([
            AccountAccess::read(key.address()),
            AccountAccess::read(to),
        ]),
    }
    .sign(key)
}

/// A sponsor publishes its policy on the upper chain, signed with its own key: the sequencer
/// reads it at start and enforces it (the budget per player, the targets), over the policy its
/// configuration names for the same sponsor; a configured sponsor absent from the chain still
/// pays. The sponsor then widens its policy on the chain, and the sequencer takes the change on
/// its next read.
#[test]
fn a_sponsor_policy_on_the_upper_chain_is_enforced_and_its_change_taken() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, id, bls_key) = keygen(dir.path());
    let chain = Arc::new(EmbeddedChain::new(vec![SequencerRecord { id, bls_key }]));
    let chain_url = serve(&runtime, chain.clone());
    let (game, other) = (Address::repeat_byte(0x42), Address::repeat_byte(0x43));
    let on_chain = AccountKey::from_seed(0x5905);
    let configured_only = AccountKey::from_seed(0x5906);
    // Two moves' worth of gas per player, for the game only.
    set_sponsor_policy(&chain, &on_chain, vec![game], 100_000);

    let config = write_config(dir.path(), &chain_url, free_tcp_port());
    let sponsors = [(&on_chain, other), (&configured_only, game)]
        .iter()
        .map(|(sponsor, target)| {
            format!(
                "\n[[sponsors]]\nsponsor = \"{}\"\ntargets = [\"{target}\"]\n\
                 player_gas_budget = 10000000\ntotal_gas_budget = 1000000000\n\
                 player_moves_per_second = 1000\nplayer_moves_burst = 1000\n",
                sponsor.address()
            )
        })
        .collect::<String>();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[wal]", "sponsor_refresh_ms = 50\n\n[wal]");
    std::fs::write(&config, text + &sponsors).unwrap();
    let running = Running::start(&config, &dir.path().join("sequencer.log"), &[]);
    let player = player(90);
    let refusal = |result: Result<TxHash, ClientError>| match result {
        Err(ClientError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    };
    runtime.block_on(async {
        let client = Client::connect(running.client_addr).await.unwrap();
        for nonce in 0..2 {
            client
                .submit_and_ack(sponsored(&player, nonce, game, on_chain.address()))
                .await
                .unwrap();
        }
        assert_eq!(
            refusal(
                client
                    .submit_and_ack(sponsored(&player, 2, game, on_chain.address()))
                    .await
            ),
            Refusal::Sponsorship(SponsorRefusal::PlayerBudgetSpent)
        );
        // The configuration's policy for this sponsor covers `other`; the chain's wins.
        assert_eq!(
            refusal(
                client
                    .submit_and_ack(sponsored(&player, 2, other, on_chain.address()))
                    .await
            ),
            Refusal::Sponsorship(SponsorRefusal::TargetNotCovered)
        );
        assert_eq!(client.pending_nonce(player.address()).await.unwrap(), 2);
        // A sponsor only the configuration names still pays.
        client
            .submit_and_ack(sponsored(&player, 2, game, configured_only.address()))
            .await
            .unwrap();

        // The sponsor widens its policy on the chain: `other` too, and a larger budget.
        set_sponsor_policy(&chain, &on_chain, vec![game, other], 1_000_000);
        let widened = sponsored(&player, 3, other, on_chain.address());
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match client.submit_and_ack(widened.clone()).await {
                    Ok(_) => return,
                    Err(ClientError::Refused(Refusal::Sponsorship(
                        SponsorRefusal::TargetNotCovered,
                    ))) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(error) => panic!("{error:?}"),
                }
            }
        })
        .await
        .expect("the sequencer reads the widened policy");
        // What was spent under the old terms still counts: 150,000 of 1,000,000.
        for nonce in 4..21 {
            client
                .submit_and_ack(sponsored(&player, nonce, game, on_chain.address()))
                .await
                .unwrap();
        }
        assert_eq!(
            refusal(
                client
                    .submit_and_ack(sponsored(&player, 21, game, on_chain.address()))
                    .await
            ),
            Refusal::Sponsorship(SponsorRefusal::PlayerBudgetSpent)
        );
    });
    drop(running);
}

/// A sequencer whitelisted outside the first epoch's set starts as a standby and joins the
/// epoch that names it, which the commitment of the first epoch's last sequence fixes. A
/// sequencer whitelisted after it started is admitted to its mesh and linked to, without a
/// restart.
#[test]
fn a_whitelisted_sequencer_stands_by_until_an_epoch_names_it() {
    const EPOCH_LENGTH: u64 = 3;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let member = SequencerKeys::from_entropy([21; 32], [22; 32]).unwrap();
    let standby = SequencerKeys::from_entropy([23; 32], [24; 32]).unwrap();
    standby.save(&dir.path().join("sequencer.key")).unwrap();
    let admin = AccountKey::from_seed(4_242);
    let chain = Arc::new(EmbeddedChain::with_genesis(&Genesis {
        admin: admin.address(),
        stake_cap: 1_000,
        sequencers: vec![SequencerRecord {
            id: member.id(),
            bls_key: member.bls_public(),
        }],
        sequencer_epoch_length: Some(EPOCH_LENGTH),
        da_committee: None,
    }));
    let admin_op = |op: AdminOp| {
        let signature = admin.sign_prehash(&op.signing_hash(chain.admin_nonce().unwrap()));
        chain.admin(op, &signature).unwrap();
    };
    admin_op(AdminOp::Whitelist {
        record: SequencerRecord {
            id: standby.id(),
            bls_key: standby.bls_public(),
        },
        possession: standby.bls().proof_of_possession(),
        stake: 10,
    });
    admin_op(AdminOp::Rotate { size: 2 });
    let chain_url = serve(&runtime, chain.clone());
    let config = write_config(dir.path(), &chain_url, free_tcp_port());
    // The member's mesh address: the standby has nothing to send it before it joins.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .unwrap();
    writeln!(
        file,
        "\n[[peers]]\nid = \"{}\"\nmesh = \"127.0.0.1:9\"",
        member.id().0
    )
    .unwrap();
    // And a sequencer the chain does not know yet.
    let newcomer = SequencerKeys::from_entropy([25; 32], [26; 32]).unwrap();
    writeln!(
        file,
        "\n[[peers]]\nid = \"{}\"\nmesh = \"127.0.0.1:9\"",
        newcomer.id().0
    )
    .unwrap();
    let log = dir.path().join("sequencer.log");

    let running = Running::start(&config, &log, &["--tick-ms", "20"]);
    let joined = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("joining the sequencer set")
    };
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("standing by until an epoch names this sequencer"),
        "{text}"
    );
    assert!(!joined(&log), "no epoch names it yet:\n{text}");

    // The member alone commits epoch 0's sequences; the last one fixes epoch 1 with both.
    for sequence in 1..=EPOCH_LENGTH {
        let digest = primitives::B256::repeat_byte(sequence as u8);
        let message = primitives::pbft::commit_message(0, sequence, &digest);
        let certificate =
            primitives::bls::Certificate::aggregate(&[(0, member.bls().sign(&message))]).unwrap();
        chain
            .commit_batch(sequence, digest, &message, &certificate)
            .unwrap();
    }
    let one = chain.sequencer_epoch(1).unwrap().unwrap();
    assert_eq!(one.sequencers.len(), 2);
    let mut waited = 0;
    while !joined(&log) {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
        assert!(
            waited < 400,
            "the standby never joined epoch 1; log:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }

    // The newcomer is whitelisted now: the running sequencer admits it and links to it.
    let linked = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("linked to a newly admitted sequencer")
    };
    assert!(!linked(&log), "not whitelisted yet");
    admin_op(AdminOp::Whitelist {
        record: SequencerRecord {
            id: newcomer.id(),
            bls_key: newcomer.bls_public(),
        },
        possession: newcomer.bls().proof_of_possession(),
        stake: 5,
    });
    let mut waited = 0;
    while !linked(&log) {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
        assert!(
            waited < 600,
            "the newcomer was never linked; log:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("mesh admission changed on the upper chain"),
        "{text}"
    );
    drop(running);
}

#[test]
fn a_key_outside_the_sequencer_set_a_wrong_chain_id_or_a_bad_url_is_a_clear_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, _, _) = keygen(dir.path());
    // A chain whose set does not hold this key.
    let stranger = SequencerRecord {
        id: NodeId(Address::repeat_byte(9)),
        bls_key: primitives::bls::BlsSecretKey::from_seed(&[3; 32]).public_key(),
    };
    let chain_url = serve(&runtime, Arc::new(EmbeddedChain::new(vec![stranger])));
    let config = write_config(dir.path(), &chain_url, free_tcp_port());
    let config = config.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&[], "is not in the upper chain's sequencer set"),
        (&["--upper-chain-id", "1"], "chain id"),
        (&["--chain-url", "ftp://127.0.0.1:1"], "upper chain ftp://"),
        (&["--wal-fsync", "sometimes"], "unknown fsync policy"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["run", "--config", config];
        args.extend_from_slice(flags);
        let output = sequencer(&args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{flags:?} should fail");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!dir.path().join("wal").exists(), "{flags:?} opened the log");
    }
}
