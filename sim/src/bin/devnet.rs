//! Starts the whole Tickrate network in one process with the demo game and simulated players,
//! prints live figures once a second, and with `--duration` stops by itself and writes a report.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use sim::{
    devnet::{Devnet, DevnetConfig},
    load::{self, LoadConfig, LoadSnapshot},
};

/// The Tickrate devnet.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Run this many seconds, then drain and exit (runs until Ctrl-C otherwise).
    #[arg(long)]
    duration: Option<u64>,
    /// Write the final figures as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Simulated players.
    #[arg(long, default_value_t = 50)]
    players: usize,
    /// Moves per second, summed over all players.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Sequencers (PBFT replicas).
    #[arg(long, default_value_t = 4)]
    sequencers: usize,
    /// Shard nodes registered on the upper chain.
    #[arg(long, default_value_t = 16)]
    shard_nodes: usize,
    /// Block interval in milliseconds.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Seed of the players' keys and moves.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds to wait after the last move for every move to reach a final level.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
    /// Serve the devnet's upper chain to other processes here (`shard-node register` and
    /// `status` reach it as `tickrate://ADDR`).
    #[arg(long)]
    chain_listen: Option<std::net::SocketAddr>,
    /// Serve the first sequencer's Web3-compatible JSON-RPC (HTTP and WebSocket) here.
    #[arg(long)]
    rpc_listen: Option<std::net::SocketAddr>,
    /// Keep everything here (a fresh directory): the upper chain, weak DA, the shard nodes'
    /// stores and their accounting (`DIR/accounting/<node id>/usage.jsonl`, read by
    /// `tickrate-accounting report --usage-dir DIR/accounting --chain DIR/upper-chain`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shard node `i` serves its operator metrics at this address's port + `i` (`/metrics`).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Strong-DA nodes (in process, QUIC on loopback): every finalized batch and every batch's
    /// execution record is erasure-coded across them, its commitment on the upper chain. 0: none.
    #[arg(long, default_value_t = 4)]
    da_nodes: usize,
    /// Batches in an accounting epoch (each shard node signs its usage once per epoch).
    #[arg(long, default_value_t = shard_node::network::service::USAGE_EPOCH_BATCHES)]
    usage_epoch_batches: u64,
    /// The rate file the shard nodes price their epochs with (default: the crate's example).
    #[arg(long)]
    rates: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Report {
    duration_s: f64,
    players: usize,
    target_rate: f64,
    sequencers: usize,
    shard_nodes: usize,
    executed_per_s: f64,
    #[serde(flatten)]
    figures: LoadSnapshot,
}

fn line(snapshot: &LoadSnapshot, previous_executed: u64) -> String {
    format!(
        "moves/s {:>6} | submitted {:>7} executed {:>7} failed {:>4} refused {:>4} | ack p50 {:>6.2} p99 {:>6.2} ms | finalized p99 {:>7.2} ms | executed p99 {:>7.2} ms",
        snapshot.moves_executed - previous_executed,
        snapshot.moves_submitted,
        snapshot.moves_executed,
        snapshot.moves_failed,
        snapshot.moves_refused,
        snapshot.pending_ack_ms.p50,
        snapshot.pending_ack_ms.p99,
        snapshot.finalized_ms.p99,
        snapshot.executed_ms.p99,
    )
}

/// mimalloc, as every node binary: see the workspace's Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let rates = match &args.rates {
        Some(path) => accounting::Rates::load(path)?,
        None => accounting::Rates::example(),
    };
    let devnet = Devnet::start(DevnetConfig {
        sequencers: args.sequencers,
        shard_nodes: args.shard_nodes,
        tick: Duration::from_millis(args.tick_ms),
        rpc_listen: args.rpc_listen,
        data_dir: args.data_dir.clone(),
        metrics_listen: args.metrics_listen,
        usage_epoch_batches: args.usage_epoch_batches,
        rates,
        da_nodes: args.da_nodes,
        ..DevnetConfig::default()
    })
    .await
    .context("starting the devnet")?;
    if let Some(addr) = args.chain_listen {
        let server = upper_chain::ChainServer::bind(
            addr,
            devnet.chain.clone(),
            upper_chain::ServerConfig::new(devnet.chain_id),
        )
        .await
        .with_context(|| format!("serving the upper chain on {addr}"))?;
        let served = server.local_addr()?;
        tokio::spawn(server.run());
        println!(
            "upper chain served at tickrate://{served} (chain id {})",
            devnet.chain_id
        );
    }
    for (node, addr) in &devnet.metrics {
        println!("shard node {} metrics at http://{addr}/metrics", node.0);
    }
    if let Some(rpc) = &devnet.rpc {
        println!("JSON-RPC at {} and {}", rpc.http_url(), rpc.ws_url());
    }
    if let Some(params) = devnet.strong_da_params() {
        // What `shard-node verify --da` takes (certificates under the data directory).
        let nodes = args
            .data_dir
            .as_ref()
            .map(|dir| dir.join("strong-da").join("nodes"));
        println!(
            "strong DA: {} nodes, any {} rebuild a batch; {}",
            params.total_chunks,
            params.data_chunks,
            match nodes {
                Some(path) => format!("nodes for `shard-node verify --da` in {}", path.display()),
                None => devnet
                    .strong_da_nodes()
                    .iter()
                    .map(|node| node.address.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        );
    }
    println!(
        "SAL estimation (shard nodes, KCP) at {}",
        devnet.estimator.local_addr()
    );
    println!(
        "devnet up: {} sequencers ({}), {} shard nodes, tick {} ms; {} players at {} moves/s",
        args.sequencers,
        devnet
            .sequencers
            .iter()
            .map(|s| s.client_addr.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.shard_nodes,
        args.tick_ms,
        args.players,
        args.rate
    );
    let started = std::time::Instant::now();
    let (stats, senders) = load::start(
        &devnet,
        LoadConfig {
            players: args.players,
            moves_per_second: args.rate,
            moves_per_player: None,
            duration: args.duration.map(Duration::from_secs),
            seed: args.seed,
        },
    )
    .await
    .context("connecting the players")?;

    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut previous_executed = 0;
    let mut senders = Some(senders);
    let mut drain_deadline = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let snapshot = stats.snapshot();
                println!("{}", line(&snapshot, previous_executed));
                previous_executed = snapshot.moves_executed;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = async { senders.as_mut().expect("checked").await }, if senders.is_some() => {
                senders = None;
                drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(args.drain_secs));
            }
        }
        if let Some(deadline) = drain_deadline
            && (stats.in_flight() == 0 || tokio::time::Instant::now() >= deadline)
        {
            break;
        }
    }
    let signed = devnet
        .close_accounting()
        .await
        .context("closing the shard nodes' accounting")?;
    let last_epoch = signed.iter().map(|usage| usage.report.epoch).max();
    println!(
        "shard nodes' usage signed up to epoch {} in {}",
        last_epoch.map_or("-".to_string(), |epoch| epoch.to_string()),
        devnet.accounting_dir().display()
    );
    let snapshot = stats.snapshot();
    let elapsed = started.elapsed().as_secs_f64();
    println!("final: {}", line(&snapshot, 0));
    if stats.in_flight() > 0 {
        println!(
            "{} moves had not reached a final level when the devnet stopped",
            stats.in_flight()
        );
    }
    if let Some(path) = args.report {
        let report = Report {
            duration_s: elapsed,
            players: args.players,
            target_rate: args.rate,
            sequencers: args.sequencers,
            shard_nodes: args.shard_nodes,
            executed_per_s: snapshot.moves_executed as f64 / elapsed.max(f64::EPSILON),
            figures: snapshot.clone(),
        };
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    anyhow::ensure!(
        snapshot.moves_executed > 0 || args.duration.is_none(),
        "no move was executed"
    );
    Ok(())
}
