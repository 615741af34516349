//! `sequencer`: a sequencer operator's command.
//!
//! - `sequencer keygen --out sequencer.key` writes a new key file (owner-only) and prints the
//!   sequencer's ID and BLS public key (what the upper chain's admin whitelists).
//! - `sequencer run --config sequencer.toml [flags]` runs the sequencer: client API over KCP,
//!   blocks to weak DA, PBFT with the other members over the KCP mesh, batch commitments on the
//!   upper chain, every acked move in the write-ahead log first. A whitelisted sequencer outside
//!   the current set (on a chain with sequencer epochs) starts as a standby: its ports open,
//!   and its core starts in the first epoch that names it. Flags override the file (see
//!   `sequencer::config`). Prints `id`, `client_addr` and `mesh_addr` lines on stdout once
//!   listening; logs go to stderr (`RUST_LOG` filters them).
//! - `sequencer wal-bench --dir DIR` measures the write-ahead log's policies on a disk.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use da_weak::WeakDa;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use netstack::{
    kcp::KcpConfig,
    secure::{AllowList, NodeIdentity},
};
use primitives::{Address, NodeId};
use rand::RngCore;
use sequencer::{
    config::{FsyncSetting, Overrides, SequencerFileConfig},
    identity::SequencerKeys,
    mesh::{
        PeerLinks,
        kcp::{KcpMesh, KcpMeshListener},
    },
    node::{IngressConfig, SequencerConfig, SequencerWiring},
    wal::{Wal, WalConfig},
};
use tokio::sync::{broadcast, mpsc};
use tracing::{error, info, warn};
use upper_chain::{ChainConfig, UpperChain, connect};

#[derive(Parser, Debug)]
#[command(version, about = "A Tickrate sequencer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a new key file; its operator key's address is the sequencer's ID.
    Keygen {
        /// Where to write it (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs the sequencer.
    Run(RunArgs),
    /// Measures the write-ahead log on a disk: acked moves a second, fsyncs a second and ack
    /// latency, for one fsync policy.
    WalBench(BenchArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
    /// The network's chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    /// Time between blocks, in milliseconds.
    #[arg(long)]
    tick_ms: Option<u64>,
    /// Where clients connect (UDP).
    #[arg(long)]
    client_listen: Option<SocketAddr>,
    /// Where the other sequencers connect (UDP).
    #[arg(long)]
    mesh_listen: Option<SocketAddr>,
    /// Weak DA: a directory, file:///dir or s3://bucket?...
    #[arg(long)]
    weak_da: Option<String>,
    /// Where Prometheus scrapes `/metrics` (TCP).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Where the Web3-compatible JSON-RPC is served (HTTP and WebSocket, TCP).
    #[arg(long)]
    rpc_listen: Option<SocketAddr>,
    /// The write-ahead log's directory.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// The write-ahead log's fsync policy: per-move, per-tick or group.
    #[arg(long)]
    wal_fsync: Option<FsyncSetting>,
    /// The upper chain's URL (tickrate://host:port or http(s)://…).
    #[arg(long)]
    chain_url: Option<String>,
    /// The upper chain's chain id.
    #[arg(long)]
    upper_chain_id: Option<u64>,
    /// The upper chain's `Registry` contract (EVM chains).
    #[arg(long)]
    registry: Option<Address>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// A directory on the disk to measure (a fresh `wal-bench-*` folder is made in it).
    #[arg(long)]
    dir: PathBuf,
    /// The policy: per-move, per-tick or group.
    #[arg(long, default_value = "group")]
    fsync: FsyncSetting,
    /// The tick, for per-tick.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Bytes of each logged move (a transfer is about 200).
    #[arg(long, default_value_t = 200)]
    move_bytes: usize,
    /// Moves offered a second (0: as fast as the log takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to measure.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

/// mimalloc, as every node binary: see the workspace's Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Keygen { out } => keygen(&out),
        Command::Run(args) => run(args),
        Command::WalBench(args) => wal_bench(&args),
    }
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    let mut operator = [0u8; 32];
    let mut bls_seed = [0u8; 32];
    let mut rng = rand::rng();
    // A draw that is not a valid secp256k1 secret (probability ~2^-128) is drawn again.
    let keys = loop {
        rng.fill_bytes(&mut operator);
        rng.fill_bytes(&mut bls_seed);
        if let Ok(keys) = SequencerKeys::from_entropy(operator, bls_seed) {
            break keys;
        }
    };
    keys.save(out)?;
    println!("id {}", keys.id().0);
    println!(
        "bls_key {}",
        alloy_primitives::hex::encode_prefixed(keys.bls_public().to_bytes())
    );
    println!("key_file {}", out.display());
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        chain_id: args.chain_id,
        tick_ms: args.tick_ms,
        client_listen: args.client_listen,
        mesh_listen: args.mesh_listen,
        weak_da: args.weak_da,
        metrics_listen: args.metrics_listen,
        rpc_listen: args.rpc_listen,
        wal_dir: args.wal_dir,
        wal_fsync: args.wal_fsync,
        chain_url: args.chain_url,
        upper_chain_id: args.upper_chain_id,
        registry: args.registry,
    };
    let config = SequencerFileConfig::load(&args.config)?.with(overrides)?;
    let keys = SequencerKeys::load(&config.key_file)?;
    let id = keys.id();

    // The upper chain, before any runtime: its clients are blocking.
    let chain_config = ChainConfig {
        url: config.chain.url.clone(),
        chain_id: config.chain.chain_id,
        registry: config.chain.registry,
        // On an EVM chain batch commitments are sent by the operator key.
        sender: Some(keys.operator().clone()),
    };
    let chain = connect(&chain_config).with_context(|| {
        format!(
            "upper chain {} (chain id {})",
            config.chain.url, config.chain.chain_id
        )
    })?;
    let membership = membership(chain.as_ref(), &keys)?;
    let peers = peer_addresses(&config, &membership, id)?;
    info!(target: "sequencer", %id, members = membership.set.len(), admitted = membership.admitted.len(),
        chain = %config.chain.url,
        "sequencer set (IDs and BLS keys) and whitelist read from the upper chain; mesh endpoints from the configuration file");
    if membership.standby {
        info!(target: "sequencer", %id,
            "whitelisted but not in the current sequencer set: standing by until an epoch names this sequencer");
    }
    let sequencers = membership.set.clone();

    let weak_da =
        WeakDa::from_url(&config.weak_da).with_context(|| format!("weak DA {}", config.weak_da))?;
    let (wal, recovered) = Wal::open(&WalConfig::new(&config.wal_dir, config.fsync_policy()))
        .with_context(|| format!("write-ahead log {}", config.wal_dir.display()))?;
    let health = wal.health();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        if let Some(address) = config.metrics_listen {
            PrometheusBuilder::new()
                .with_http_listener(address)
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                        0.25, 0.5, 1.0,
                    ],
                )?
                .install()
                .with_context(|| format!("serving metrics on {address}"))?;
            sequencer::metrics::describe();
            info!(target: "sequencer", %address, "Prometheus metrics at /metrics");
        }
        let admitted = AllowList::new(membership.admitted.iter().copied());
        let listener = KcpMeshListener::bind(
            NodeIdentity::new(keys.operator().clone()),
            config.mesh_listen,
            KcpConfig::default(),
            admitted.clone(),
        )
        .await
        .with_context(|| format!("mesh listen {}", config.mesh_listen))?;
        let mesh_addr = listener.local_addr();
        let (mesh, inbound) = listener.connect(&peers);
        tokio::spawn(refresh_admission(
            chain.clone(),
            admitted,
            mesh.clone(),
            config.peers.clone(),
        ));

        // Finalized batches go to execution in-process only (the devnet); here they are logged.
        let (finalized, mut finalized_queue) = mpsc::channel(1_024);
        tokio::spawn(async move {
            while let Some(batch) = finalized_queue.recv().await {
                let batch: primitives::FinalizedBatch = batch;
                info!(target: "sequencer", number = batch.batch.number, sequence = batch.sequence,
                    blocks = batch.batch.headers.len(), "batch finalized");
            }
        });
        let (executed_sender, executed) = broadcast::channel(16);
        warn!(target: "sequencer",
            "no shard nodes in this process: execution results reach sequencers only in-process \
             today, so this sequencer's moves stop at Finalized and pending state has no executed base");

        let handle = sequencer::node::spawn(
            SequencerConfig {
                chain_id: config.chain_id,
                tick: config.tick,
                client_listen: config.client_listen,
                ingress: IngressConfig {
                    sponsors: config.sponsors.clone(),
                    sponsor_refresh: config.sponsor_refresh,
                    ..IngressConfig::default()
                },
            },
            SequencerWiring {
                key: keys.operator().clone(),
                bls: keys.bls(),
                sequencers,
                mesh: Arc::new(mesh) as Arc<dyn PeerLinks>,
                inbound,
                weak_da,
                chain,
                finalized,
                executed,
                wal: Some((wal, recovered)),
                consensus_dir: Some(config.consensus_dir()),
                bodies: body_exchange(&config, keys.operator())?,
            },
        )
        .await
        .with_context(|| format!("client listen {}", config.client_listen))?;
        // The gateway follows the same execution results as the core (none in this process
        // today, so its executed state stays at an empty genesis; pending state is live).
        let _rpc = match config.rpc_listen {
            Some(listen) => Some(
                sequencer::rpc::serve(
                    sequencer::rpc::RpcConfig {
                        listen,
                        chain_id: config.chain_id,
                        genesis: Vec::new(),
                    },
                    handle.gateway.clone(),
                    executed_sender.subscribe(),
                )
                .await
                .with_context(|| format!("rpc listen {listen}"))?,
            ),
            None => None,
        };
        info!(target: "sequencer", %id, client = %handle.client_addr, mesh = %mesh_addr,
            chain_id = config.chain_id, tick_ms = config.tick.as_millis() as u64,
            wal = %config.wal_dir.display(), fsync = ?config.wal_fsync, "sequencer listening");
        // What scripts read, in one write; a closed stdout does not stop the sequencer.
        let lines = format!(
            "id {}\nclient_addr {}\nmesh_addr {mesh_addr}\n",
            id.0, handle.client_addr
        );
        let mut stdout = std::io::stdout();
        if let Err(error) = stdout
            .write_all(lines.as_bytes())
            .and_then(|()| stdout.flush())
        {
            warn!(target: "sequencer", %error, "could not print the addresses to stdout");
        }

        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut watch = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
                _ = watch.tick() => {
                    if let Some(failure) = health.failure() {
                        error!(target: "sequencer", %failure, "write-ahead log failed; exiting");
                        bail!("write-ahead log failed: {failure}");
                    }
                }
            }
        }
        info!(target: "sequencer", "stopping");
        drop(executed_sender);
        Ok(())
    })
}

/// How often the mesh reads again from the upper chain whom it admits.
const ADMISSION_REFRESH: Duration = Duration::from_secs(5);

/// Keeps the mesh's admission in step with the upper chain: every [`ADMISSION_REFRESH`] it
/// reads the set and the whitelist again, replaces the list the mesh socket admits by, and
/// links to each newly admitted sequencer that has a `[[peers]]` address. A sequencer
/// whitelisted after this one started is heard, and heard from, without a restart; one that
/// left the whitelist opens no new session (an open one stays, and its votes count only while
/// the validator set names it).
async fn refresh_admission(
    chain: Arc<dyn UpperChain>,
    admitted: AllowList,
    mesh: KcpMesh,
    peers: Vec<(NodeId, SocketAddr)>,
) {
    let mut interval = tokio::time::interval(ADMISSION_REFRESH);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let reader = chain.clone();
        let nodes = match tokio::task::spawn_blocking(move || admitted_nodes(reader.as_ref())).await
        {
            Ok(Ok(nodes)) => nodes,
            Ok(Err(error)) => {
                warn!(target: "sequencer", %error, "reading the sequencer set and whitelist failed; the mesh keeps admitting whom it did");
                continue;
            }
            Err(error) => {
                warn!(target: "sequencer", %error, "the admission reader stopped");
                continue;
            }
        };
        if admitted.replace(nodes.iter().copied()) {
            info!(target: "sequencer", admitted = nodes.len(), "mesh admission changed on the upper chain");
        }
        for (peer, addr) in &peers {
            if nodes.contains(peer) && mesh.link(*peer, *addr) {
                info!(target: "sequencer", peer = %peer.0, %addr, "linked to a newly admitted sequencer");
            }
        }
    }
}

/// Whom the mesh admits: the current set and the whitelist.
fn admitted_nodes(chain: &dyn UpperChain) -> Result<Vec<NodeId>, upper_chain::ChainError> {
    let mut admitted: Vec<NodeId> = chain
        .sequencer_set()?
        .iter()
        .map(|record| record.id)
        .collect();
    for candidate in chain.sequencer_candidates()? {
        if !admitted.contains(&candidate.record.id) {
            admitted.push(candidate.record.id);
        }
    }
    Ok(admitted)
}

/// Who this sequencer runs with, as the upper chain has it at start.
struct Membership {
    /// The current sequencer set, in validator order (the one set of a chain without epochs).
    set: Vec<(NodeId, primitives::bls::BlsPublicKey)>,
    /// Whom the mesh admits at start: the set and the whitelist ([`refresh_admission`] keeps
    /// it current).
    admitted: Vec<NodeId>,
    /// Whitelisted, not in the set: the core waits for a sequencer epoch that names it.
    standby: bool,
}

/// This key's place with the upper chain: a member of its current set, or, on a chain with
/// sequencer epochs, a whitelisted standby; with its own BLS key either way.
fn membership(chain: &dyn UpperChain, keys: &SequencerKeys) -> anyhow::Result<Membership> {
    let set = chain
        .sequencer_set()
        .context("reading the sequencer set from the upper chain")?;
    let candidates = chain
        .sequencer_candidates()
        .context("reading the sequencer whitelist from the upper chain")?;
    let id = keys.id();
    let mine = set.iter().find(|record| record.id == id).or_else(|| {
        candidates
            .iter()
            .map(|candidate| &candidate.record)
            .find(|record| record.id == id)
    });
    match mine {
        None => bail!(
            "sequencer {} is not in the upper chain's sequencer set ({} members) nor on its whitelist; the admin whitelists it with its BLS key {}",
            id.0,
            set.len(),
            alloy_primitives::hex::encode_prefixed(keys.bls_public().to_bytes())
        ),
        Some(record) if record.bls_key != keys.bls_public() => bail!(
            "the upper chain records another BLS key for sequencer {} than this key file holds",
            id.0
        ),
        Some(_) => {}
    }
    let standby = !set.iter().any(|record| record.id == id);
    if standby {
        let epochs = chain
            .sequencer_epoch(0)
            .context("reading sequencer epoch 0 from the upper chain")?
            .is_some_and(|epoch| epoch.length.is_some());
        if !epochs {
            bail!(
                "sequencer {} is whitelisted but not in the upper chain's sequencer set, and the chain has no sequencer epochs to bring it in: the admin rotates it into the set",
                id.0
            );
        }
    }
    let admitted = admitted_nodes(chain).context("reading whom the mesh admits")?;
    Ok(Membership {
        set: set
            .into_iter()
            .map(|record| (record.id, record.bls_key))
            .collect(),
        admitted,
        standby,
    })
}

/// The mesh addresses, from the configuration's `[[peers]]`: every other member of the set
/// must have one; whitelisted sequencers outside it may (they are reached once an epoch names
/// them). Entries not admitted yet are linked once the upper chain whitelists them.
fn peer_addresses(
    config: &SequencerFileConfig,
    membership: &Membership,
    me: NodeId,
) -> anyhow::Result<Vec<(NodeId, SocketAddr)>> {
    let mut missing = Vec::new();
    for (id, _) in &membership.set {
        if *id != me && !config.peers.iter().any(|(peer, _)| peer == id) {
            missing.push(id.0.to_string());
        }
    }
    if !missing.is_empty() {
        bail!(
            "no mesh address in [[peers]] for sequencer set members {}",
            missing.join(", ")
        );
    }
    let mut peers = Vec::with_capacity(config.peers.len());
    for (peer, addr) in &config.peers {
        if *peer == me {
            continue;
        }
        if membership.admitted.contains(peer) {
            peers.push((*peer, *addr));
        } else {
            info!(target: "sequencer", peer = %peer.0, "[[peers]] entry is neither in the sequencer set nor whitelisted yet; linked once it is");
        }
    }
    Ok(peers)
}

fn wal_bench(args: &BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let dir = tempfile_dir(&args.dir)?;
    let policy = args.fsync.policy(Duration::from_millis(args.tick_ms));
    let (wal, _) = Wal::open(&WalConfig::new(&dir, policy))?;
    let acked = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(parking_lot::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
    ));
    let started = std::time::Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut offered = 0u64;
    while std::time::Instant::now() < until {
        if args.rate > 0 {
            let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
            if offered >= due {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
        }
        if !wal.has_room() {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        offered += 1;
        let mut bytes = vec![0u8; args.move_bytes];
        bytes[..8.min(args.move_bytes)]
            .copy_from_slice(&offered.to_be_bytes()[..8.min(args.move_bytes)]);
        let hash = primitives::keccak256(&bytes);
        let (acked, latencies) = (acked.clone(), latencies.clone());
        let submitted = std::time::Instant::now();
        wal.append(
            hash,
            bytes,
            Box::new(move || {
                let micros = u64::try_from(submitted.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.lock().saturating_record(micros);
                acked.fetch_add(1, Ordering::Relaxed);
            }),
        )?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acked_in_time = acked.load(Ordering::Relaxed);
    let fsyncs = wal.stats().fsyncs.load(Ordering::Relaxed);
    wal.sync()?;
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    let latencies = latencies.lock();
    println!(
        "wal-bench policy {:?} move_bytes {} offered_rate {} seconds {:.1}",
        policy,
        args.move_bytes,
        if args.rate == 0 {
            "max".to_string()
        } else {
            args.rate.to_string()
        },
        elapsed
    );
    println!(
        "acked_per_second {:.0} fsyncs_per_second {:.0} moves_per_fsync {:.1}",
        acked_in_time as f64 / elapsed,
        fsyncs as f64 / elapsed,
        acked_in_time as f64 / (fsyncs.max(1)) as f64
    );
    println!(
        "ack_latency_us p50 {} p99 {} p999 {} max {}",
        latencies.value_at_quantile(0.5),
        latencies.value_at_quantile(0.99),
        latencies.value_at_quantile(0.999),
        latencies.max()
    );
    Ok(())
}

/// A fresh folder under `parent` for one bench run.
fn tempfile_dir(parent: &Path) -> anyhow::Result<PathBuf> {
    let mut suffix = [0u8; 6];
    rand::rng().fill_bytes(&mut suffix);
    let dir = parent.join(format!(
        "wal-bench-{}",
        alloy_primitives::hex::encode(suffix)
    ));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The body exchange with the peers ([`sequencer::bodies`]), if `body_listen` is set: a server
/// bound there with a certificate bound to the operator key, and pulls from the `[[peers]]`
/// that name a `body` endpoint.
fn body_exchange(
    config: &SequencerFileConfig,
    key: &primitives::AccountKey,
) -> anyhow::Result<Option<sequencer::node::Bodies>> {
    let Some(listen) = config.body_listen else {
        return Ok(None);
    };
    let cache = Arc::new(sequencer::bodies::BodyCache::default());
    let server = sequencer::bodies::BodyServer::bind(listen, key, cache.clone())
        .with_context(|| format!("body listen {listen}"))?;
    let bind = if listen.is_ipv4() {
        std::net::SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let origins =
        sequencer::bodies::Origins::new(bind, config.body_peers.iter().copied().collect())
            .context("body client endpoint")?;
    info!(target: "sequencer", listen = %server.local_addr(), peers = config.body_peers.len(), "serving block bodies over QUIC");
    Ok(Some(sequencer::node::Bodies {
        cache,
        server,
        origins: Arc::new(origins),
    }))
}
