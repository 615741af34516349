//! The interface tests against an embedded chain (in RocksDB) served over TCP and reached with
//! `connect("tickrate://…")`, and the server's answers to bad URLs, wrong chain ids and hostile
//! frames.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
};

use common::Harness;
use primitives::{Address, Decode, U256};
use upper_chain::{
    ChainConfig, ChainError, ChainServer, EmbeddedChain, Genesis, ServerConfig, UpperChain,
    connect,
    wire::{Answer, PROTOCOL_VERSION, Request, put_frame},
};

const CHAIN_ID: u64 = 4242;

fn genesis() -> Genesis {
    Genesis {
        admin: common::admin_key().address(),
        stake_cap: common::STAKE_CAP,
        sequencers: Vec::new(),
        sequencer_epoch_length: None,
        da_committee: Some(common::da_committee()),
    }
}

/// One process's chain, served; the tests talk to it over TCP as another process would.
struct Served {
    owner: Arc<EmbeddedChain>,
    remote: Arc<dyn UpperChain>,
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Harness for Served {
    fn chain(&self) -> Arc<dyn UpperChain> {
        self.remote.clone()
    }

    fn deposit(&self, recipient: Address, amount: U256) {
        // Deposits originate on the chain itself, in the owning process.
        self.owner
            .deposit(Address::repeat_byte(0x0d), recipient, amount)
            .unwrap();
    }
}

fn served() -> Served {
    served_from(&genesis())
}

fn served_from(genesis: &Genesis) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let owner = Arc::new(EmbeddedChain::open(dir.path(), genesis).unwrap());
    let server = runtime
        .block_on(ChainServer::bind(
            "127.0.0.1:0",
            owner.clone(),
            ServerConfig::new(CHAIN_ID),
        ))
        .unwrap();
    let addr = server.local_addr().unwrap();
    runtime.spawn(server.run());
    let remote = connect(&ChainConfig::new(format!("tickrate://{addr}"), CHAIN_ID)).unwrap();
    Served {
        owner,
        remote,
        addr,
        _runtime: runtime,
        _dir: dir,
    }
}

interface_tests!(served());

/// Preconfirmation evidence sent over the wire, checked by the chain behind it.
#[test]
fn broken_preconfirmation_expels_the_sequencer() {
    let served = served();
    common::broken_preconfirmation_expels_the_sequencer(served.remote.as_ref());
}

/// Sponsorship policies set and read over the wire, as on the chain itself.
#[test]
fn strong_da_commitments_need_a_committee_quorum() {
    let served = served();
    common::strong_da_commitments_need_a_committee_quorum(served.remote.as_ref());
}

#[test]
fn sponsor_policies_by_the_sponsor_only() {
    let served = served();
    common::sponsor_policies_by_the_sponsor_only(served.remote.as_ref());
    assert_eq!(
        served.owner.sponsor_policies().unwrap(),
        served.remote.sponsor_policies().unwrap()
    );
}

/// Sequencer epochs read and committed over the wire, as on the chain itself.
#[test]
fn sequencer_sets_change_only_at_epoch_boundaries() {
    let served = served_from(&common::epochs_genesis());
    common::sequencer_sets_change_only_at_epoch_boundaries(served.remote.as_ref());
    assert_eq!(
        served.owner.sequencer_epoch(2).unwrap(),
        served.remote.sequencer_epoch(2).unwrap()
    );
}

#[test]
fn a_wrong_chain_id_is_refused() {
    let served = served();
    let url = format!("tickrate://{}", served.addr);
    assert_eq!(
        connect(&ChainConfig::new(url, CHAIN_ID + 1)).err(),
        Some(ChainError::WrongChainId {
            expected: CHAIN_ID + 1,
            got: CHAIN_ID
        })
    );
}

#[test]
fn nothing_listening_is_unreachable_and_unknown_schemes_are_bad_urls() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tickrate://127.0.0.1:{port}");
    assert!(matches!(
        connect(&ChainConfig::new(url.clone(), CHAIN_ID)),
        Err(ChainError::Unreachable { url: u, .. }) if u == url
    ));
    for bad in ["embedded:", "ftp://127.0.0.1:1", "127.0.0.1:8545"] {
        assert_eq!(
            connect(&ChainConfig::new(bad, CHAIN_ID)).err(),
            Some(ChainError::BadUrl(bad.into()))
        );
    }
    // An EVM URL without the contract's address is a configuration error, not a guess.
    assert!(matches!(
        connect(&ChainConfig::new("http://127.0.0.1:1", 31337)),
        Err(ChainError::Config(_))
    ));
}

#[test]
fn reads_from_a_server_that_went_away_are_errors_not_panics() {
    let Served {
        owner,
        remote,
        _runtime: runtime,
        ..
    } = served();
    let epoch = remote.epoch().unwrap();
    // The serving process stops: its listener and connections close.
    drop(runtime);
    drop(owner);
    let unreachable = |what: &str, error: Option<ChainError>| {
        assert!(
            matches!(error, Some(ChainError::Unreachable { .. })),
            "{what}: {error:?}"
        );
    };
    unreachable("epoch", remote.epoch().err());
    unreachable("registry snapshot", remote.registry_snapshot(epoch).err());
    unreachable("sequencer set", remote.sequencer_set().err());
    unreachable("last batch", remote.last_batch().err());
    unreachable("group root", remote.group_root(&Default::default()).err());
}

fn exchange(stream: &mut TcpStream, frame: &[u8]) -> Option<Answer> {
    stream.write_all(frame).unwrap();
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    Some(Answer::from_bytes(&body).unwrap())
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn malformed_requests_get_typed_refusals_and_change_nothing() {
    let served = served();
    let chain = served.chain();
    common::exits_and_evictions(&served);
    let epoch = chain.epoch().unwrap();
    let snapshot = chain.registry_snapshot(epoch).unwrap();

    let mut stream = TcpStream::connect(served.addr).unwrap();
    for body in [
        vec![],                                            // nothing
        vec![PROTOCOL_VERSION, 200],                       // an unknown call
        vec![PROTOCOL_VERSION + 1, 0],                     // a future version
        vec![PROTOCOL_VERSION, 2, 0, 0],                   // an epoch cut short
        vec![PROTOCOL_VERSION, 3, 0],                      // a trailing byte
        vec![PROTOCOL_VERSION, 1, 0xff, 0xff, 0xff, 0xff], // an endpoint longer than the frame
    ] {
        match exchange(&mut stream, &raw_frame(&body)) {
            Some(Answer::Refused(ChainError::Malformed(_))) => {}
            other => panic!("{body:?} answered with {other:?}"),
        }
    }
    // The connection still serves well-formed requests.
    let mut frame = Vec::new();
    put_frame(&mut frame, &Request::Epoch);
    assert_eq!(exchange(&mut stream, &frame), Some(Answer::Number(epoch)));

    // A frame announcing more than a request may hold is refused and the connection closed.
    let mut frame = u32::MAX.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0; 16]);
    assert!(matches!(
        exchange(&mut stream, &frame),
        Some(Answer::Refused(ChainError::Malformed(_)))
    ));
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap_or(0), 0);

    // A peer that leaves mid-frame takes nothing with it.
    let mut half = TcpStream::connect(served.addr).unwrap();
    half.write_all(&[0, 0, 0, 100, PROTOCOL_VERSION]).unwrap();
    drop(half);

    assert_eq!(chain.epoch().unwrap(), epoch);
    assert_eq!(chain.registry_snapshot(epoch).unwrap(), snapshot);
}
