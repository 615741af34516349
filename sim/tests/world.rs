//! The whole-path world over many seeds (see `sim::world`): `TICKRATE_SEEDS=<n>` runs seeds
//! `0..n` (default 6: each opens 16 RocksDB stores and runs ten simulated seconds in a debug
//! build), `TICKRATE_SEED=<n>` replays one seed exactly (with `TICKRATE_HEAL_US=<µs>`, the
//! prefix of its faulty phase a failure shrank to). The `campaign` binary runs thousands.

use sim::world::{
    RunReport, WorldConfig, replay_command, replay_prefix_command, run_prefix, shrink,
};

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("TICKRATE_SEED") {
        return vec![seed.parse().expect("TICKRATE_SEED is a number")];
    }
    let count = std::env::var("TICKRATE_SEEDS").map_or(6, |count| {
        count.parse().expect("TICKRATE_SEEDS is a number")
    });
    (0..count).collect()
}

/// Where `TICKRATE_HEAL_US` cuts the faulty phase (its whole length without it).
fn heal_us(config: &WorldConfig) -> u64 {
    std::env::var("TICKRATE_HEAL_US").map_or(config.faulty_us, |heal| {
        heal.parse().expect("TICKRATE_HEAL_US is a number")
    })
}

fn check(config: WorldConfig, report: &RunReport) {
    if report.violations.is_empty() {
        return;
    }
    let shrunk = shrink(config, report.seed, report).map_or_else(
        || "no shorter prefix fails".to_string(),
        |shrunk| {
            format!(
                "shortest failing prefix: faults cut at {} µs: {:?}\nreplay it: {}",
                shrunk.heal_us,
                shrunk.report.violations,
                replay_prefix_command(report.seed, shrunk.heal_us)
            )
        },
    );
    panic!(
        "seed {}: {:?}\nreplay: {}\n{shrunk}\n{report:?}",
        report.seed,
        report.violations,
        replay_command(report.seed)
    );
}

#[test]
fn every_seed_keeps_every_invariant() {
    let config = WorldConfig::campaign();
    for seed in seeds() {
        let report = run_prefix(config, seed, heal_us(&config));
        eprintln!("{report:?}");
        check(config, &report);
        // The checkers had something to check.
        assert!(
            report.acked > 0 && report.executed > 0 && report.batches > 0,
            "{report:?}"
        );
    }
}
