//! `finality`: PBFT batch commit latency among 4 and 7 sequencers joined by netstack KCP
//! sessions on loopback, at a 10 ms tick, under game load; and what consensus costs on the
//! wire per batch.
//!
//! Latency is the primary's, from proposing a batch to committing it (pre-prepare, prepare and
//! commit rounds, BLS signing and checking), merged over every primary of the run. Messages and
//! bytes are the consensus messages every sequencer sent, divided by the batches committed.
//!
//! Each size runs twice: with the sequencers alone in the process (`commit_*`, what the target
//! is about: in a network each sequencer has its machine to itself), and beside the devnet's 16
//! shard nodes executing every batch and running their group rounds on the same two cores
//! (`with_execution_commit_*`). Each run has its own runtime, dropped before the next starts,
//! so no devnet's tasks outlive its measurement.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use sim::{
    devnet::{Devnet, DevnetConfig, MeshKind},
    load::{self, LoadConfig},
    report::{BenchReport, Op},
};

use crate::Args;

/// The sequencer counts measured, each in its own devnet.
const SIZES: [usize; 2] = [4, 7];
/// The tick the target is stated for.
const TICK: Duration = Duration::from_millis(10);

pub async fn run(args: &Args) -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("finality");
    for execution in [false, true] {
        for sequencers in SIZES {
            let prefix = if execution { "with_execution_" } else { "" };
            let args = args.clone();
            report = tokio::task::spawn_blocking(move || {
                let runtime = tokio::runtime::Runtime::new()?;
                let measured =
                    runtime.block_on(measure(&args, sequencers, execution, prefix, &mut report));
                runtime.shutdown_timeout(Duration::from_secs(2));
                measured.map(|()| report)
            })
            .await??;
        }
    }
    report.target("commit_4_p99_ms", Op::AtMost, 20.0);
    Ok(report)
}

async fn measure(
    args: &Args,
    sequencers: usize,
    execution: bool,
    prefix: &str,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    let devnet = Devnet::start(DevnetConfig {
        sequencers,
        execution,
        tick: TICK,
        mesh: MeshKind::Kcp,
        ..DevnetConfig::default()
    })
    .await
    .with_context(|| format!("starting a devnet of {sequencers} sequencers"))?;
    // Let the links open and the first views settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = totals(&devnet);
    for handle in &devnet.sequencers {
        handle.stats.commit_latency_us.lock().reset();
    }
    let (_stats, senders) = load::start(
        &devnet,
        LoadConfig {
            players: args.players,
            moves_per_second: args.rate,
            moves_per_player: None,
            duration: Some(Duration::from_secs(args.seconds)),
            seed: 17,
        },
    )
    .await?;
    senders.await?;
    let after = totals(&devnet);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for handle in &devnet.sequencers {
        latency.add(&*handle.stats.commit_latency_us.lock())?;
    }
    let batches = after.batches.saturating_sub(before.batches).max(1) as f64;
    let ms = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1_000.0;
    let name = |figure: &str| format!("{prefix}commit_{sequencers}_{figure}");
    report.figure(&name("batches"), batches);
    report.figure(&name("p50_ms"), ms(0.50));
    report.figure(&name("p99_ms"), ms(0.99));
    report.figure(&name("max_ms"), latency.max() as f64 / 1_000.0);
    report.figure(
        &name("messages_per_batch"),
        (after.messages - before.messages) as f64 / batches,
    );
    report.figure(
        &name("kib_per_batch"),
        (after.bytes - before.bytes) as f64 / batches / 1024.0,
    );
    Ok(())
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    /// Batches committed (by the first sequencer: every one commits each).
    batches: u64,
    /// Consensus messages sent by all sequencers.
    messages: u64,
    /// Their bytes.
    bytes: u64,
}

fn totals(devnet: &Devnet) -> Totals {
    use std::sync::atomic::Ordering::Relaxed;
    let mut totals = Totals {
        batches: devnet.sequencers[0].stats.batches_committed.load(Relaxed),
        ..Totals::default()
    };
    for handle in &devnet.sequencers {
        totals.messages += handle.stats.consensus_messages_sent.load(Relaxed);
        totals.bytes += handle.stats.consensus_bytes_sent.load(Relaxed);
    }
    totals
}
