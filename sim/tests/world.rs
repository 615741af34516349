//! The whole-path world over many seeds (see `sim::world`): `TICKRATE_SEEDS=<n>` runs seeds
//! `0..n` (default 6: each opens 16 RocksDB stores and runs ten simulated seconds in a debug
//! build), `TICKRATE_SEED=<n>` replays one seed exactly. The `campaign` binary runs thousands.

use sim::world::{RunReport, WorldConfig, replay_command, run_seed};

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("TICKRATE_SEED") {
        return vec![seed.parse().expect("TICKRATE_SEED is a number")];
    }
    let count = std::env::var("TICKRATE_SEEDS").map_or(6, |count| {
        count.parse().expect("TICKRATE_SEEDS is a number")
    });
    (0..count).collect()
}

fn check(report: &RunReport) {
    assert!(
        report.violations.is_empty(),
        "seed {}: {:?}\nreplay: {}\n{report:?}",
        report.seed,
        report.violations,
        replay_command(report.seed)
    );
}

#[test]
fn every_seed_keeps_every_invariant() {
    for seed in seeds() {
        let report = run_seed(WorldConfig::campaign(), seed);
        eprintln!("{report:?}");
        check(&report);
        // The checkers had something to check.
        assert!(
            report.acked > 0 && report.executed > 0 && report.batches > 0,
            "{report:?}"
        );
    }
}
