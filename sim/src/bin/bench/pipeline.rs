//! `pipeline`: the devnet under game load; submit → pending ack, finalized and executed
//! latency percentiles and executed moves/s, held to the budget of DESIGN.md.

use std::time::Duration;

use anyhow::Context;
use sim::{
    devnet::{Devnet, DevnetConfig},
    load::{self, LoadConfig},
    report::{BenchReport, Op},
};

use crate::Args;

pub async fn run(args: &Args) -> anyhow::Result<BenchReport> {
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .context("starting the devnet")?;
    let started = std::time::Instant::now();
    let (stats, senders) = load::start(
        &devnet,
        LoadConfig {
            players: args.players,
            moves_per_second: args.rate,
            moves_per_player: None,
            duration: Some(Duration::from_secs(args.seconds)),
            seed: 7,
        },
    )
    .await?;
    senders.await?;
    let sending = started.elapsed().as_secs_f64();
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.in_flight() > 0 && tokio::time::Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = stats.snapshot();
    let mut report = BenchReport::new("pipeline");
    report.figure("offered_moves_per_s", args.rate);
    report.figure(
        "executed_moves_per_s",
        snapshot.moves_executed as f64 / sending,
    );
    report.figure("moves_submitted", snapshot.moves_submitted as f64);
    report.figure("moves_executed", snapshot.moves_executed as f64);
    report.figure("moves_failed", snapshot.moves_failed as f64);
    report.figure("moves_unfinished", stats.in_flight() as f64);
    report.figure("pending_ack_p50_ms", snapshot.pending_ack_ms.p50);
    report.figure("pending_ack_p99_ms", snapshot.pending_ack_ms.p99);
    report.figure("finalized_p50_ms", snapshot.finalized_ms.p50);
    report.figure("finalized_p99_ms", snapshot.finalized_ms.p99);
    report.figure("executed_p50_ms", snapshot.executed_ms.p50);
    report.figure("executed_p99_ms", snapshot.executed_ms.p99);
    report.target("pending_ack_p99_ms", Op::AtMost, 2.0);
    report.target("finalized_p99_ms", Op::AtMost, 50.0);
    report.target("executed_p99_ms", Op::AtMost, 100.0);
    report.target("moves_unfinished", Op::AtMost, 0.0);
    Ok(report)
}
