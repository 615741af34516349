//! `sim`: the whole-path world's speed: simulated seconds per wall second on the campaign's
//! network (4 sequencers, 16 shard nodes, 20 players) and on the large one (32 shard nodes,
//! 200 players), and campaign seeds per hour with every core running seeds, as the `campaign`
//! binary runs them. Seeds 0.. of each; `--seconds` bounds the wall time of each half.

use std::time::{Duration, Instant};

use sim::{
    report::{BenchReport, Op},
    world::{WorldConfig, run_seed},
};

use crate::Args;

/// Seeds run one after another on one core until `budget` passes (at least one); returns
/// (seeds, simulated seconds, wall seconds, violations).
fn run_for(config: WorldConfig, budget: Duration) -> (u64, f64, f64, usize) {
    let started = Instant::now();
    let (mut seeds, mut simulated, mut violations) = (0u64, 0.0, 0);
    while seeds == 0 || started.elapsed() < budget {
        let report = run_seed(config, seeds);
        simulated += report.simulated_us as f64 / 1e6;
        violations += report.violations.len();
        seeds += 1;
    }
    (
        seeds,
        simulated,
        started.elapsed().as_secs_f64(),
        violations,
    )
}

pub async fn run(args: &Args) -> anyhow::Result<BenchReport> {
    let budget = Duration::from_secs(args.seconds);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (campaign, large) = tokio::task::spawn_blocking(move || {
        (
            run_for(WorldConfig::campaign(), budget),
            run_for(WorldConfig::large(), budget),
        )
    })
    .await?;
    let mut report = BenchReport::new("sim");
    let (seeds, simulated, wall, violations) = campaign;
    report.figure("campaign_seeds", seeds as f64);
    report.figure("campaign_simulated_s_per_wall_s", simulated / wall);
    report.figure("campaign_simulated_s_per_seed", simulated / seeds as f64);
    // Seeds are independent: the campaign runs one per core.
    report.figure(
        "campaign_seeds_per_hour",
        seeds as f64 * 3600.0 / wall * cores as f64,
    );
    report.figure("campaign_violations", violations as f64);
    let (seeds, simulated, wall, violations) = large;
    report.figure("large_seeds", seeds as f64);
    report.figure("large_simulated_s_per_wall_s", simulated / wall);
    report.figure("large_violations", violations as f64);
    report.target("campaign_seeds_per_hour", Op::AtLeast, 10_000.0);
    report.target("campaign_violations", Op::AtMost, 0.0);
    report.target("large_violations", Op::AtMost, 0.0);
    Ok(report)
}
