//! `ack-latency`: submit → pending ack over real KCP sessions on loopback, with the
//! write-ahead log on (group commit), at 5,000, 20,000 and 50,000 moves/s.
//!
//! One sequencer alone (a set of one, so its PBFT commits by itself; no shard nodes, whose
//! execution would only compete for the same two cores), a fresh one per rate. Players hold
//! session keys granted beforehand (the grants are acked and on disk before the clock starts),
//! so signature checks cost what a busy game costs. `CLIENTS` client sessions share the offered
//! rate; each sends its due moves every millisecond and times each from just before it is sent
//! to its ack's arrival. An ack waits for the log's fsync, so the disk's own append + fdatasync
//! latency, measured first in the same run, is the floor. Target (DESIGN.md): p99 ≤ 2 ms at 20,000 moves/s. `--rate N` measures
//! rate N alone; `--seconds` sets the load's length per rate.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use client_sdk::Client;
use da_weak::WeakDa;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use primitives::{AccountKey, NodeId, SessionKey, SignedTransaction, TxHash, bls::BlsSecretKey};
use rayon::prelude::*;
use sequencer::{
    mesh::{InProcessMesh, PeerLinks},
    node::{IngressConfig, SequencerConfig, SequencerWiring},
    wal::{FsyncPolicy, Wal, WalConfig},
};
use sim::{
    game::{grant_game_session, move_piece_with_session},
    report::{BenchReport, Op},
};
use tokio::{
    runtime::Handle,
    sync::{broadcast, mpsc, oneshot},
};
use upper_chain::{EmbeddedChain, SequencerRecord};

use crate::Args;

const CHAIN_ID: u64 = 4242;
/// Client sessions sharing the offered rate.
const CLIENTS: usize = 8;
/// Players per client session (each with its own account and session key).
const PLAYERS_PER_CLIENT: usize = 100;
/// The offered rates.
const RATES: [u64; 3] = [5_000, 20_000, 50_000];
/// Between two sends of a client.
const SEND_INTERVAL: Duration = Duration::from_millis(1);
/// How long acks are awaited after the last send before the missing ones are counted.
const ACK_WAIT_MAX: Duration = Duration::from_secs(20);

pub async fn run(args: &Args) -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("ack-latency");
    let seconds = args.seconds.clamp(1, 30);
    report.figure("seconds_per_rate", seconds as f64);
    // The physical floor of an ack that waits for the disk: one small append and fdatasync,
    // where the benchmark's logs live, measured in the same run.
    let fsync = tokio::task::spawn_blocking(disk_fsync_latency).await??;
    report.figure(
        "disk_fsync_p50_ms",
        fsync.value_at_quantile(0.50) as f64 / 1_000.0,
    );
    report.figure(
        "disk_fsync_p99_ms",
        fsync.value_at_quantile(0.99) as f64 / 1_000.0,
    );
    // `--rate N` measures that one rate instead (the default rate of the binary means "all").
    let rates: Vec<u64> = if (args.rate - 2_000.0).abs() < f64::EPSILON {
        RATES.to_vec()
    } else {
        vec![args.rate as u64]
    };
    for rate in rates {
        let (latencies, unacked) = measure(rate, seconds).await?;
        let name = if rate >= 1_000 {
            format!("r{}k", rate / 1_000)
        } else {
            format!("r{rate}")
        };
        report.figure(&format!("{name}_acked"), latencies.len() as f64);
        report.figure(&format!("{name}_unacked_after_20s"), unacked as f64);
        report.figure(
            &format!("{name}_p50_ms"),
            latencies.value_at_quantile(0.50) as f64 / 1_000.0,
        );
        report.figure(
            &format!("{name}_p99_ms"),
            latencies.value_at_quantile(0.99) as f64 / 1_000.0,
        );
        report.figure(
            &format!("{name}_p999_ms"),
            latencies.value_at_quantile(0.999) as f64 / 1_000.0,
        );
        report.figure(&format!("{name}_max_ms"), latencies.max() as f64 / 1_000.0);
    }
    report.target("r20k_p99_ms", Op::AtMost, 2.0);
    Ok(report)
}

/// Microseconds of 500 appends of 256 bytes, each followed by `fdatasync`, in a temporary file.
fn disk_fsync_latency() -> anyhow::Result<Histogram<u64>> {
    use std::io::Write;

    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("probe"))?;
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
    for _ in 0..500 {
        let started = std::time::Instant::now();
        file.write_all(&[0x5a; 256])?;
        file.sync_data()?;
        latencies.saturating_record((started.elapsed().as_micros() as u64).max(1));
    }
    Ok(latencies)
}

/// A sequencer alone, its WAL in `dir`, its clients' socket on `listen`; returns where
/// clients connect and what keeps it alive.
async fn start_sequencer(
    dir: &std::path::Path,
    listen: SocketAddr,
) -> anyhow::Result<(SocketAddr, impl Sized + Send + use<>)> {
    let key = AccountKey::from_seed(9_000);
    let bls = BlsSecretKey::from_seed(&[7u8; 32]);
    let id = NodeId(key.address());
    let set = vec![(id, bls.public_key())];
    let chain = Arc::new(EmbeddedChain::new(vec![SequencerRecord {
        id,
        bls_key: bls.public_key(),
    }]));
    let (mesh, _) = InProcessMesh::connect(&[id])
        .pop()
        .context("a mesh of one")?;
    // No peer ever sends; the sender is kept so the sequencer does not see its peers gone.
    let (peer_sender, inbound) = mpsc::channel(1);
    let (finalized, mut batches) = mpsc::channel(1_024);
    let (executed_sender, executed) = broadcast::channel(16);
    // Finalized batches have nowhere to go here: take them so the sequencer never waits.
    tokio::spawn(async move { while batches.recv().await.is_some() {} });
    let wal = Wal::open(&WalConfig::new(
        dir.join("wal"),
        FsyncPolicy::Group {
            window: Duration::ZERO,
        },
    ))
    .context("opening the write-ahead log")?;
    let handle = sequencer::node::spawn(
        SequencerConfig {
            chain_id: CHAIN_ID,
            tick: Duration::from_millis(10),
            client_listen: listen,
            ingress: IngressConfig::default(),
        },
        SequencerWiring {
            key,
            bls,
            sequencers: set,
            mesh: Arc::new(mesh) as Arc<dyn PeerLinks>,
            inbound,
            weak_da: WeakDa::local(&dir.join("weak-da"))?,
            chain,
            finalized,
            executed,
            wal: Some(wal),
            consensus_dir: None,
            bodies: None,
        },
    )
    .await?;
    Ok((handle.client_addr, (executed_sender, peer_sender)))
}

/// One client session's players and the moves they will send, in order.
struct ClientLoad {
    grants: Vec<SignedTransaction>,
    /// With their hashes, computed here: the bench's bookkeeping is not the client's work.
    moves: Vec<(TxHash, SignedTransaction)>,
}

fn client_load(client: usize, moves_per_client: usize) -> ClientLoad {
    let players: Vec<(AccountKey, SessionKey)> = (0..PLAYERS_PER_CLIENT)
        .map(|index| {
            let seed = (client * PLAYERS_PER_CLIENT + index) as u64 + 1;
            (AccountKey::from_seed(seed), SessionKey::from_seed(seed))
        })
        .collect();
    let grants = players
        .iter()
        .map(|(account, session)| {
            grant_game_session(account, session, CHAIN_ID, 0, u64::MAX, u64::MAX)
        })
        .collect();
    let moves = (0..moves_per_client)
        .map(|index| {
            let (account, session) = &players[index % PLAYERS_PER_CLIENT];
            let nonce = 1 + (index / PLAYERS_PER_CLIENT) as u64;
            let signed = move_piece_with_session(account, session, CHAIN_ID, nonce, nonce % 64);
            (signed.hash(), signed)
        })
        .collect();
    ClientLoad { grants, moves }
}

/// Where a measurement's sequencer and its clients run: each on a runtime whose sockets are in
/// the network it is to be measured over.
pub struct Placement {
    /// Runs the sequencer.
    pub sequencer: Handle,
    /// Runs the client sessions.
    pub clients: Handle,
    /// Where the sequencer's client socket listens.
    pub listen: SocketAddr,
}

impl Placement {
    /// Both on this runtime, the sequencer on loopback.
    pub fn loopback() -> Placement {
        Placement {
            sequencer: Handle::current(),
            clients: Handle::current(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// The ack latencies at `rate` on loopback, and how many moves were never acked in time.
async fn measure(rate: u64, seconds: u64) -> anyhow::Result<(Histogram<u64>, usize)> {
    measure_on(&Placement::loopback(), rate, seconds, CLIENTS).await
}

/// The ack latencies of `clients` client sessions sharing `rate` moves a second for `seconds`,
/// against a fresh sequencer placed as `placement` says, and how many moves were never acked
/// in time.
pub async fn measure_on(
    placement: &Placement,
    rate: u64,
    seconds: u64,
    clients: usize,
) -> anyhow::Result<(Histogram<u64>, usize)> {
    let dir = tempfile::tempdir()?;
    let (started, address) = oneshot::channel();
    // The sequencer lives until this measurement ends (`_stop` is dropped).
    let (_stop, stopped) = oneshot::channel::<()>();
    let sequencer_dir = dir.path().to_path_buf();
    let listen = placement.listen;
    placement.sequencer.spawn(async move {
        match start_sequencer(&sequencer_dir, listen).await {
            Ok((address, alive)) => {
                let _ = started.send(Ok(address));
                let _ = stopped.await;
                drop(alive);
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        }
    });
    let address = address.await.context("the sequencer's task ended")??;
    let moves_per_client = (rate * seconds) as usize / clients;
    let loads: Vec<ClientLoad> = tokio::task::spawn_blocking(move || {
        (0..clients)
            .into_par_iter()
            .map(|client| client_load(client, moves_per_client))
            .collect()
    })
    .await?;
    // Every session is open and its grants acked before any load starts.
    let mut opening = Vec::with_capacity(clients);
    for load in loads {
        opening.push(placement.clients.spawn(async move {
            let client = Client::connect(address).await?;
            for grant in &load.grants {
                client
                    .submit_and_ack(grant.clone())
                    .await
                    .context("a session grant")?;
            }
            anyhow::Ok((client, load.moves))
        }));
    }
    let mut opened = Vec::with_capacity(clients);
    for session in opening {
        opened.push(session.await??);
    }

    // Microseconds; three significant figures up to ten seconds.
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 10_000_000, 3,
    )?));
    let per_client_rate = rate as f64 / clients as f64;
    let mut senders = Vec::with_capacity(clients);
    for (client, moves) in opened {
        let latencies = latencies.clone();
        senders.push(placement.clients.spawn(send_at_rate(
            client,
            moves,
            per_client_rate,
            latencies,
        )));
    }
    let mut unacked = 0;
    for sender in senders {
        unacked += sender.await??;
    }
    let latencies = latencies.lock().clone();
    Ok((latencies, unacked))
}

/// Sends `moves` at `rate` a second, in bursts every [`SEND_INTERVAL`], and records each ack's
/// latency from the client's event stream (the instant the ack was read); waits for the acks
/// at most [`ACK_WAIT_MAX`] after the last send and returns how many never came.
async fn send_at_rate(
    client: Client,
    moves: Vec<(TxHash, SignedTransaction)>,
    rate: f64,
    latencies: Arc<Mutex<Histogram<u64>>>,
) -> anyhow::Result<usize> {
    let mut events = client.events();
    let sent_at: Arc<Mutex<std::collections::HashMap<TxHash, std::time::Instant>>> = Arc::default();
    let expected = moves.len();
    let recorder = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut acked = 0usize;
            while acked < expected {
                let Some(event) = events.recv().await else {
                    anyhow::bail!("the session closed after {acked} acks");
                };
                if let Err(refusal) = event.level {
                    anyhow::bail!("a move refused: {refusal}");
                }
                // The first level heard for a move is its ack (the sequencer sends no status
                // before the ack).
                let Some(at) = sent_at.lock().remove(&event.hash) else {
                    continue;
                };
                let micros = event.at.saturating_duration_since(at).as_micros() as u64;
                latencies.lock().saturating_record(micros.max(1));
                acked += 1;
            }
            Ok(())
        })
    };
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(SEND_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut moves = moves.into_iter().peekable();
    let mut sent = 0usize;
    while moves.peek().is_some() {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as usize;
        while sent < due {
            let Some((hash, signed)) = moves.next() else {
                break;
            };
            sent_at.lock().insert(hash, std::time::Instant::now());
            client.submit(signed).await?;
            sent += 1;
        }
    }
    // An overloaded sequencer acks late: wait a bounded time, then count what is missing.
    if let Ok(recorded) = tokio::time::timeout(ACK_WAIT_MAX, recorder).await {
        recorded??;
    }
    let unacked = sent_at.lock().len();
    Ok(unacked)
}
