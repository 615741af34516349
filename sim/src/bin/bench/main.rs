//! Benchmarks, one report shape for all (see `sim::report`):
//! `cargo run --release -p sim --bin bench -- NAME [--json FILE]`.
//!
//! Implemented so far:
//! - `pipeline`: the devnet under game load, submit → pending ack / finalized / executed
//!   latency percentiles and executed moves/s, held to the budget of DESIGN.md for a 10 ms tick.
//! - `execution`: SAL-enforced vs plain revm, and parallel vs sequential batches (transfers and
//!   a storage-writing game move; conflict-free, 10 % conflict and hot-slot delta batches).
//! - `dht`: Kademlia lookup hops and success rate for 1,000 and 10,000 simulated nodes, with and
//!   without 20 % churn, in one seeded run.
//! - `da`: weak-DA put/get latency (local directory and a real S3 server), strong-DA coding
//!   throughput, and end-to-end certify latency of 1 MiB batches across 6 DA nodes over QUIC.
//! - `finality`: PBFT batch commit latency p50/p99 with 4 and 7 sequencers over KCP sessions on
//!   loopback at a 10 ms tick, and consensus messages and bytes per batch.
//! - `kcp-vs-tcp`: KCP sessions against kernel TCP (nodelay) on one packet-level emulated link
//!   (network namespaces, TUN devices, a seeded forwarder; needs root) at 20 ms RTT and 0, 1, 5
//!   and 10 % loss: 60 Hz 64-byte message round trips (mean, p99, max), bytes on the wire, and
//!   a bulk stream. `--seed` replays the link's decisions.
//! - `ingest`: moves/s one sequencer's ingress accepts (account-key and session-key moves)
//!   against the raw secp256k1 recovery and ed25519 batch verification rates, on every core.
//! - `ack-latency`: submit → pending ack over KCP sessions on loopback with the write-ahead log
//!   on, at 5k, 20k and 50k moves/s (p50, p99, p999).
//! - `assets`: Groth16 transfer proofs of the UTXO engine: constraints per transfer, proving
//!   time per transfer and per batch of 16, proof size, native verify time.
//!
//! - `groups`: execution as shard nodes are added (8 to 64 nodes, 0 / 10 / 50 % cross-group
//!   moves): throughput with one core per node and its scaling against linear, Executed
//!   latency after Finalized, group traffic per batch, simulated from each node's counted
//!   work priced by costs measured in the same run.
//!
//! - `sim`: the whole-path deterministic world's speed: simulated seconds per wall second on
//!   the campaign's network and the large one, and campaign seeds per hour.
//!
//! - `realtime`: latency as the player feels it, measured at the client through the SDK:
//!   submit → ack on loopback at 20,000 moves/s and over the emulated link at 20 ms RTT and
//!   5 % loss (needs root), retraction delivery after an execution result reaches the
//!   sequencer, and the SDK's prediction accuracy beside the run's failure rate, on a devnet.

mod ack_latency;
mod assets;
mod da;
mod dht;
mod execution;
mod finality;
mod groups;
mod ingest;
mod kcp_vs_tcp;
mod pipeline;
mod realtime;
mod world;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;

/// Tickrate benchmarks. Each benchmark is a module of this binary with
/// `async fn run(args: &Args) -> anyhow::Result<sim::report::BenchReport>`.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Args {
    /// Which benchmark.
    name: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Moves per second, summed over all players.
    #[arg(long, default_value_t = 2_000.0)]
    rate: f64,
    /// Simulated players.
    #[arg(long, default_value_t = 200)]
    players: usize,
    /// Seed of every random choice, for benchmarks that take one (`kcp-vs-tcp`, `realtime`;
    /// below 2^53).
    #[arg(long)]
    seed: Option<u64>,
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
    let report = match args.name.as_str() {
        "pipeline" => pipeline::run(&args).await?,
        "execution" => execution::run(&args).await?,
        "dht" => dht::run(&args).await?,
        "da" => da::run(&args).await?,
        "finality" => finality::run(&args).await?,
        "kcp-vs-tcp" => kcp_vs_tcp::run(&args).await?,
        "ingest" => ingest::run(&args).await?,
        "ack-latency" => ack_latency::run(&args).await?,
        "assets" => assets::run(&args).await?,
        "groups" => groups::run(&args).await?,
        "sim" => world::run(&args).await?,
        "realtime" => realtime::run(&args).await?,
        name => {
            bail!(
                "unknown benchmark {name}; available: pipeline, dht, execution, da, finality, kcp-vs-tcp, ingest, ack-latency, assets, groups, sim, realtime"
            )
        }
    };
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
