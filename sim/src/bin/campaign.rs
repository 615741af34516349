//! The fault campaign: runs seeds of the whole-path world (`sim::world`) on every core and
//! writes a report (seeds run, faults injected by kind, violations with the command that
//! replays each, simulated seconds per wall second, seeds per hour).
//!
//! `cargo run --release -p sim --bin campaign -- --seeds 10000 [--from 0] [--large]
//! [--report campaign.json]`. Exits non-zero if any seed broke an invariant.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::Context;
use clap::Parser;
use serde::Serialize;
use sim::world::{RunReport, WorldConfig, replay_command, replay_prefix_command, run_seed, shrink};

#[derive(Parser, Debug)]
#[command(about = "Runs the whole-path world over many seeds")]
struct Args {
    /// Seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// The large network (32 shard nodes, 200 players) instead of the campaign's.
    #[arg(long)]
    large: bool,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write the JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Serialize)]
struct Failure {
    seed: u64,
    violations: Vec<String>,
    replay: String,
    /// The shortest prefix of its faulty phase that still fails the same way, if shorter.
    shortest_prefix: Option<Prefix>,
}

#[derive(Serialize)]
struct Prefix {
    heal_us: u64,
    violations: Vec<String>,
    replay: String,
}

/// Failures shrunk after the run (each shrink runs the seed about six more times).
const SHRUNK_FAILURES_MAX: usize = 10;

#[derive(Serialize)]
struct CampaignReport {
    network: WorldConfigReport,
    seeds_run: u64,
    seeds_failed: u64,
    wall_seconds: f64,
    simulated_seconds: f64,
    simulated_seconds_per_wall_second: f64,
    seeds_per_hour: f64,
    moves_acked: u64,
    moves_executed: u64,
    moves_failed: u64,
    batches_finalized: u64,
    roots_checked: u64,
    faults: BTreeMap<String, u64>,
    failures: Vec<Failure>,
}

#[derive(Serialize)]
struct WorldConfigReport {
    sequencers: usize,
    shard_nodes: usize,
    players: usize,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = if args.large {
        WorldConfig::large()
    } else {
        WorldConfig::campaign()
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let next = AtomicU64::new(args.from);
    let end = args.from + args.seeds;
    let reports: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let report = std::panic::catch_unwind(|| run_seed(config, seed))
                        .unwrap_or_else(|panic| {
                            let why = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            RunReport {
                                seed,
                                violations: vec![sim::world::Violation::Shard(format!(
                                    "panicked: {why}"
                                ))],
                                ..RunReport::default()
                            }
                        });
                    if !report.violations.is_empty() {
                        eprintln!(
                            "seed {seed}: {:?}\n  replay: {}",
                            report.violations,
                            replay_command(seed)
                        );
                    }
                    let mut reports = reports.lock().unwrap_or_else(|poison| poison.into_inner());
                    reports.push(report);
                    if reports.len().is_multiple_of(100) {
                        eprintln!(
                            "{} seeds in {:.0} s",
                            reports.len(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    let wall_seconds = started.elapsed().as_secs_f64();
    let mut reports = reports
        .into_inner()
        .unwrap_or_else(|poison| poison.into_inner());
    reports.sort_by_key(|report| report.seed);
    let simulated_seconds = reports
        .iter()
        .map(|report| report.simulated_us as f64 / 1e6)
        .sum::<f64>();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for report in &reports {
        for (kind, count) in &report.faults {
            *faults.entry((*kind).to_string()).or_default() += count;
        }
    }
    let failures: Vec<Failure> = reports
        .iter()
        .filter(|report| !report.violations.is_empty())
        .enumerate()
        .map(|(index, report)| {
            let shortest_prefix = (index < SHRUNK_FAILURES_MAX)
                .then(|| std::panic::catch_unwind(|| shrink(config, report.seed, report)).ok())
                .flatten()
                .flatten()
                .map(|shrunk| {
                    eprintln!(
                        "seed {}: fails with its faults cut at {} µs\n  replay: {}",
                        report.seed,
                        shrunk.heal_us,
                        replay_prefix_command(report.seed, shrunk.heal_us)
                    );
                    Prefix {
                        heal_us: shrunk.heal_us,
                        violations: shrunk
                            .report
                            .violations
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                        replay: replay_prefix_command(report.seed, shrunk.heal_us),
                    }
                });
            Failure {
                seed: report.seed,
                violations: report.violations.iter().map(ToString::to_string).collect(),
                replay: replay_command(report.seed),
                shortest_prefix,
            }
        })
        .collect();
    let summary = CampaignReport {
        network: WorldConfigReport {
            sequencers: config.sequencers,
            shard_nodes: config.shard_nodes,
            players: config.players,
        },
        seeds_run: reports.len() as u64,
        seeds_failed: failures.len() as u64,
        wall_seconds,
        simulated_seconds,
        simulated_seconds_per_wall_second: simulated_seconds / wall_seconds,
        seeds_per_hour: reports.len() as f64 * 3600.0 / wall_seconds,
        moves_acked: reports.iter().map(|report| report.acked).sum(),
        moves_executed: reports.iter().map(|report| report.executed).sum(),
        moves_failed: reports.iter().map(|report| report.failed).sum(),
        batches_finalized: reports.iter().map(|report| report.batches).sum(),
        roots_checked: reports.iter().map(|report| report.roots_checked).sum(),
        faults,
        failures,
    };
    let json = serde_json::to_string_pretty(&summary)?;
    println!("{json}");
    if let Some(path) = &args.report {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    if summary.seeds_failed > 0 {
        anyhow::bail!(
            "{} of {} seeds broke an invariant",
            summary.seeds_failed,
            summary.seeds_run
        );
    }
    Ok(())
}
