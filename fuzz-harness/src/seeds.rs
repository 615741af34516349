//! Valid encodings the fuzz corpus starts from: a few of every message kind each target
//! decodes, built with the types' own constructors and signers so they pass every check a
//! decoder makes (the `write_seeds` example writes them to `fuzz/corpus/<target>/`).

use std::net::SocketAddr;

use consensus::{Checkpoint, Message, PrePrepare, Vote};
use da_strong::{
    AvailabilityCertificate, ErasureParams, encode_payload,
    wire::{DaRequest, DaResponse},
};
use netstack::{
    dht::{Contact, DhtBody, DhtMessage},
    relay::wire::RelayFrame,
    resume::ResumeFrame,
    secure::NodeIdentity,
};
use primitives::{
    AccountAccess, AccountKey, Address, B256, Batch, BlockBody, BlockHeader, DeclaredWrite, Encode,
    FinalizedBatch, NodeId, SessionKey, Signature, SignedTransaction, SlotAccess, SpaceAccessList,
    Transaction, U256,
    api::{ClientRequest, ServerMessage},
    bls::{BlsSecretKey, Certificate},
    ethereum::{EthereumKind, EthereumSignature, ethereum_envelope},
    finality::{FinalityLevel, StateItem},
    merkle::MerkleTree,
    pbft::{EquivocationEvidence, EvidenceKind, PbftSignature, Signed},
};

/// The seeds of every target, by target name.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let targets = vec![
        ("moves", moves()),
        ("blocks", blocks()),
        ("pbft", pbft()),
        ("frames", frames()),
        ("kcp", kcp()),
        ("da_chunks", da_chunks()),
        ("json_rpc", json_rpc()),
    ];
    #[cfg(feature = "node-crates")]
    let targets = {
        let mut targets = targets;
        targets.push(("group", crate::node::seeds()));
        targets
    };
    targets
}

/// A move with a SAL that declares an exact balance, a nonce, and a delta on a slot.
pub fn sample_move(nonce: u64, data_len: usize) -> Transaction {
    let to = Address::repeat_byte(0x22);
    let slot = SlotAccess {
        slot: B256::repeat_byte(7),
        write: Some(DeclaredWrite::Delta(
            alloy_primitives::I256::try_from(-3).unwrap_or_default(),
        )),
    };
    let account = AccountAccess {
        address: to,
        balance: Some(DeclaredWrite::Exact(U256::from(100))),
        nonce: Some(nonce + 1),
        storage: vec![slot],
    };
    Transaction {
        chain_id: 1,
        nonce,
        to,
        value: U256::from(5),
        data: vec![0xAB; data_len].into(),
        gas_limit: 100_000,
        gas_price: 0,
        sponsor: (nonce % 2 == 1).then(|| Address::repeat_byte(0x33)),
        access_list: SpaceAccessList::new([account, AccountAccess::read(Address::repeat_byte(1))]),
    }
}

fn signed_moves() -> Vec<SignedTransaction> {
    let key = AccountKey::from_seed(7);
    let session = SessionKey::from_seed(8);
    vec![
        sample_move(0, 0).sign(&key),
        sample_move(1, 16).sign(&key),
        sample_move(2, 4).sign_with_session(&session, key.address()),
    ]
}

fn moves() -> Vec<Vec<u8>> {
    let address = Address::repeat_byte(0x44);
    let mut seeds: Vec<Vec<u8>> = signed_moves().iter().map(Encode::to_bytes).collect();
    seeds.push(sample_move(3, 0).access_list.to_bytes());
    let requests = signed_moves()
        .into_iter()
        .map(ClientRequest::Submit)
        .chain([
            ClientRequest::PendingNonce(address),
            ClientRequest::PendingStorage(address, B256::repeat_byte(9)),
            ClientRequest::Status(B256::repeat_byte(10)),
            ClientRequest::Subscribe(StateItem::Storage(address, B256::repeat_byte(3))),
            ClientRequest::Unsubscribe(StateItem::Balance(address)),
        ]);
    seeds.extend(requests.map(|request| request.to_bytes()));
    let answers = [
        ServerMessage::Ack {
            hash: B256::repeat_byte(1),
            result: Ok(42),
            preconfirmation: None,
        },
        ServerMessage::Status {
            hash: B256::repeat_byte(2),
            level: FinalityLevel::Pending,
        },
    ];
    seeds.extend(answers.iter().map(Encode::to_bytes));
    seeds
}

fn sequencer_key() -> AccountKey {
    AccountKey::from_seed(11)
}

fn block(height: u64) -> (BlockHeader, BlockBody) {
    let body = BlockBody {
        moves: signed_moves(),
    };
    let header = BlockHeader::seal(
        &sequencer_key(),
        height,
        B256::repeat_byte(u8::try_from(height % 256).unwrap_or(0)),
        1_000 + height,
        &body,
        u32::try_from(body.to_bytes().len()).unwrap_or(u32::MAX),
    );
    (header, body)
}

fn bls_keys() -> Vec<BlsSecretKey> {
    (0..4u8)
        .map(|seed| BlsSecretKey::from_seed(&[seed; 32]))
        .collect()
}

fn sample_batch() -> Batch {
    Batch {
        number: 1,
        parent: B256::ZERO,
        headers: vec![block(0).0, block(1).0],
    }
}

fn certificate(message: &[u8]) -> Certificate {
    let votes: Vec<(usize, _)> = bls_keys()
        .iter()
        .enumerate()
        .take(3)
        .map(|(index, key)| (index, key.sign(message)))
        .collect();
    Certificate::aggregate(&votes).unwrap_or_else(|error| panic!("aggregating votes: {error}"))
}

fn blocks() -> Vec<Vec<u8>> {
    let (header, body) = block(0);
    let batch = sample_batch();
    let finalized = FinalizedBatch {
        certificate: certificate(batch.hash().as_slice()),
        batch: batch.clone(),
        sequence: 1,
        view: 0,
    };
    let leaves: Vec<Vec<u8>> = body.moves.iter().map(Encode::to_bytes).collect();
    let tree = MerkleTree::from_leaves(leaves.iter().map(Vec::as_slice));
    let mut seeds = vec![
        header.to_bytes(),
        body.to_bytes(),
        BlockBody::default().to_bytes(),
        batch.to_bytes(),
        finalized.to_bytes(),
    ];
    seeds.extend(
        (0..leaves.len())
            .filter_map(|index| tree.proof(index))
            .map(|proof| proof.to_bytes()),
    );
    seeds
}

fn pbft() -> Vec<Vec<u8>> {
    let keys = bls_keys();
    let batch = sample_batch();
    let operator = primitives::AccountKey::from_seed(1);
    let pre_prepare = PrePrepare::new(&operator, 0, 1, batch.clone());
    let digest = pre_prepare.digest();
    let messages: Vec<Message<Batch>> = vec![
        Message::PrePrepare(pre_prepare),
        Message::PrePrepare(PrePrepare::proposing(&operator, 1, 2, None)),
        Message::Prepare(Vote::prepare(&operator, 0, 1, digest, 1)),
        Message::Commit(Vote::commit(&keys[2], 0, 1, digest, 2)),
        Message::Checkpoint(Checkpoint::new(&keys[3], 10, B256::repeat_byte(5), 3)),
        Message::Fetch { from: 7 },
    ];
    let mut seeds: Vec<Vec<u8>> = messages.iter().map(Encode::to_bytes).collect();
    let signed = |byte: u8| {
        let digest = B256::repeat_byte(byte);
        Signed {
            digest,
            signature: PbftSignature::Bls(keys[1].sign(digest.as_slice())),
        }
    };
    let evidence = EquivocationEvidence::new(EvidenceKind::Commit, 1, 0, 1, signed(1), signed(2));
    seeds.push(evidence.to_bytes());
    seeds.push(certificate(b"commit").to_bytes());
    seeds
}

fn frames() -> Vec<Vec<u8>> {
    let node = NodeId(Address::repeat_byte(0x55));
    let addr: SocketAddr = "192.0.2.7:4000"
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([0; 4], 0)));
    let mut seeds = vec![
        ResumeFrame::Data {
            seq: 3,
            payload: b"move",
        }
        .encode(),
        ResumeFrame::Ack { next: 4 }.encode(),
        ResumeFrame::Resume {
            session: 9,
            next: 0,
        }
        .encode(),
    ];
    let relay = [
        RelayFrame::Probe { nonce: 1 },
        RelayFrame::Observed {
            nonce: 1,
            observed: addr,
            challenge: [6; 16],
        },
        RelayFrame::DialBack { nonce: 2 },
        RelayFrame::Register {
            node,
            challenge: [6; 16],
            signature: Signature([1; 65]),
        },
        RelayFrame::Registered {
            node,
            lease_secs: 30,
        },
        RelayFrame::Forward {
            to: node,
            channel: 0,
            payload: b"sealed",
        },
        RelayFrame::Delivered {
            from: node,
            channel: 1,
            payload: b"sealed",
        },
        RelayFrame::NoRoute { to: node },
    ];
    seeds.extend(relay.iter().map(RelayFrame::encode));
    let identity = NodeIdentity::new(AccountKey::from_seed(12));
    let bodies = [
        DhtBody::Ping,
        DhtBody::Pong { observed: addr },
        DhtBody::FindNode {
            target: Address::repeat_byte(0x66),
        },
        DhtBody::Nodes {
            contacts: vec![Contact { id: node, addr }],
        },
    ];
    for (request_id, body) in (0u64..).zip(bodies) {
        // Only a ping may go to a node whose ID the sender does not know yet.
        let recipient = (body != DhtBody::Ping || request_id > 0).then_some(node);
        let message = DhtMessage {
            request_id,
            sender: identity.node_id(),
            recipient,
            body,
        };
        seeds.push(message.encode(&identity));
    }
    seeds
}

fn kcp() -> Vec<Vec<u8>> {
    // Steps: 0 send (length byte), 1 deliver, 2 drop, 3 raw (u16 length), 4 corrupt (at, mask),
    // 5 wait (ms), 6 handshake datagram (length byte), 7 relay the handshakes' own messages.
    vec![
        vec![0, 3, 1, 5, 10, 1],
        vec![0, 1, 0, 200, 1, 5, 20, 1, 0, 2, 1],
        vec![0, 4, 2, 5, 50, 5, 200, 1, 5, 250, 1],
        vec![0, 4, 4, 0, 1, 1, 5, 100, 1],
        vec![0, 1, 4, 30, 128, 1],
        vec![7, 7, 7, 0, 1, 1],
        vec![7, 6, 4, 0xC5, 0, 1, 2],
        vec![
            3, 0, 24, 1, 0, 0, 0, 81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    ]
}

fn da_chunks() -> Vec<Vec<u8>> {
    let params = ErasureParams::new(2, 4).unwrap_or_else(|error| panic!("{error}"));
    let payload: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    let encoded = encode_payload(&payload, params).unwrap_or_else(|error| panic!("{error}"));
    let commitment = encoded.commitment;
    let mut seeds: Vec<Vec<u8>> = encoded.chunks.iter().map(Encode::to_bytes).collect();
    let keys = bls_keys();
    let message = da_strong::attestation::availability_message(&commitment);
    let requests = [
        DaRequest::Store {
            commitment,
            chunk: encoded.chunks[0].clone(),
        },
        DaRequest::Get {
            commitment,
            index: 1,
        },
        DaRequest::Sample {
            commitment,
            seed: 5,
        },
    ];
    seeds.extend(requests.iter().map(Encode::to_bytes));
    let responses = [
        DaResponse::Stored {
            attestation: keys[0].sign(&message),
        },
        DaResponse::Chunk(Some(encoded.chunks[3].clone())),
        DaResponse::Chunk(None),
        DaResponse::Refused {
            reason: "full".into(),
        },
    ];
    seeds.extend(responses.iter().map(Encode::to_bytes));
    seeds.push(
        AvailabilityCertificate {
            commitment,
            certificate: certificate(&message),
        }
        .to_bytes(),
    );
    seeds
}

fn raw_transactions() -> Vec<Vec<u8>> {
    let key = AccountKey::from_seed(13);
    [
        EthereumKind::Legacy,
        EthereumKind::Eip2930,
        EthereumKind::Eip1559,
    ]
    .into_iter()
    .map(|kind| {
        let eip1559 = kind == EthereumKind::Eip1559;
        let mut signature = EthereumSignature {
            kind,
            create: false,
            max_fee_per_gas: if eip1559 { 7 } else { 0 },
            max_priority_fee_per_gas: if eip1559 { 2 } else { 0 },
            signature: Signature([0; 65]),
            access_list: Default::default(),
        };
        let mut tx = sample_move(4, 3);
        tx.access_list = SpaceAccessList::default();
        tx.sponsor = None;
        tx.gas_price = if eip1559 { 2 } else { 5 };
        signature.signature = key.sign_prehash(&signature.signing_hash(&tx));
        ethereum_envelope(&tx, &signature)
    })
    .collect()
}

fn json_rpc() -> Vec<Vec<u8>> {
    let mut seeds = raw_transactions();
    let raw = format!("0x{}", alloy_primitives::hex::encode(&seeds[2]));
    let address = "0x2222222222222222222222222222222222222222";
    let hash = format!("0x{}", "ab".repeat(32));
    let bodies = [
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["{raw}"]}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["{address}","latest"]}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":3,"method":"eth_getStorageAt","params":["{address}","0x1","pending"]}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":4,"method":"eth_call","params":[{{"from":"{address}","to":"{address}","data":"0x12345678","gas":"0x5208"}},"latest"]}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":5,"method":"eth_getLogs","params":[{{"fromBlock":"0x1","toBlock":"latest","address":"{address}","topics":[["{hash}"],null]}}]}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":"a","method":"eth_getTransactionReceipt","params":["{hash}"]}}"#),
        r#"{"jsonrpc":"2.0","id":6,"method":"eth_getBlockByNumber","params":["0x10",true]}"#.to_string(),
        r#"{"jsonrpc":"2.0","id":7,"method":"eth_feeHistory","params":["0x4","latest",[25.0,75.0]]}"#.to_string(),
        format!(r#"{{"jsonrpc":"2.0","id":8,"method":"eth_createAccessList","params":[{{"to":"{address}","input":"0x00","accessList":[{{"address":"{address}","storageKeys":["{hash}"]}}]}}]}}"#),
    ];
    seeds.extend(bodies.into_iter().map(String::into_bytes));
    seeds
}
