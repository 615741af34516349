//! The fault campaign: many seeds of the timed world (`consensus::world`), each a run with its
//! own faults (lossy, duplicating, reordering links; partitions; crashes and restarts; up to `f`
//! byzantine replicas: silent, equivocating primary, conflicting votes, replay), then a heal.
//! Checkers: safety (correct replicas never commit different values at one sequence, every
//! certificate verifies, evidence only names byzantine replicas) and liveness (values proposed
//! after the heal are committed by every correct replica within `RECOVERY_BOUND_US` of simulated
//! time).
//!
//! `cargo test` runs `TICKRATE_SEEDS` seeds per size (default [`SEEDS`], 1,000), in shards the
//! test harness runs side by side; `TICKRATE_SEED=<n>` replays one seed of both sizes exactly,
//! and a failing seed names itself.

use consensus::world::{Behaviour, RunReport, Scenario, World, run_seed};

/// Seeds per size. A seed costs about 0.2 s (n = 4) and 0.6 s (n = 8) of mostly BLS work in a
/// debug build; `TICKRATE_SEEDS=16` is a quick local run.
const SEEDS: u64 = 1_000;

/// Below this many seeds a shard does not insist on having seen view changes and state
/// transfer.
const SEEDS_FOR_COVERAGE: usize = 16;

/// The seeds of shard `shard` of `shards`: a slice of `0..TICKRATE_SEEDS`, or the one seed
/// `TICKRATE_SEED` names (in shard 0 only).
fn seeds(shard: u64, shards: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("TICKRATE_SEED") {
        let seed = seed.parse().expect("TICKRATE_SEED is a number");
        return if shard == 0 { vec![seed] } else { Vec::new() };
    }
    let count = std::env::var("TICKRATE_SEEDS").map_or(SEEDS, |count| {
        count.parse().expect("TICKRATE_SEEDS is a number")
    });
    (0..count).filter(|seed| seed % shards == shard).collect()
}

fn campaign(n: usize, shard: u64, shards: u64) {
    let seeds = seeds(shard, shards);
    let mut reports: Vec<RunReport> = Vec::with_capacity(seeds.len());
    for &seed in &seeds {
        let run = std::panic::catch_unwind(|| run_seed(n, seed));
        match run {
            Ok(report) => reports.push(report),
            Err(panic) => {
                eprintln!(
                    "n = {n}, seed {seed} failed; replay it with \
                     TICKRATE_SEED={seed} cargo test -p consensus --test it world"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    let view_changes = reports.iter().filter(|report| report.views > 0).count();
    let fetched = reports.iter().filter(|report| report.fetches > 0).count();
    let worst = reports.iter().map(|report| report.recovery_us).max();
    let restarts: u64 = reports.iter().map(|report| report.restarts).sum();
    let torn: u64 = reports.iter().map(|report| report.torn_tails).sum();
    eprintln!(
        "n = {n}, shard {shard}/{shards}: {} seeds safe and live; {view_changes} changed views, \
         {fetched} caught up by fetching; {restarts} restarts from the log ({torn} with a torn \
         tail); slowest recovery {:?} µs",
        reports.len(),
        worst
    );
    if seeds.len() >= SEEDS_FOR_COVERAGE {
        // The campaign must exercise what it claims to: view changes and state transfer.
        assert!(view_changes > 0, "no seed changed views");
        assert!(fetched > 0, "no seed caught up by fetching");
        assert!(restarts > 0, "no replica restarted from its log");
        assert!(torn > 0, "no restart cut off a torn tail");
    }
}

#[test]
fn four_replicas_stay_safe_and_live_under_faults_0() {
    campaign(4, 0, 2);
}

#[test]
fn four_replicas_stay_safe_and_live_under_faults_1() {
    campaign(4, 1, 2);
}

#[test]
fn eight_replicas_stay_safe_and_live_under_faults_0() {
    campaign(8, 0, 4);
}

#[test]
fn eight_replicas_stay_safe_and_live_under_faults_1() {
    campaign(8, 1, 4);
}

#[test]
fn eight_replicas_stay_safe_and_live_under_faults_2() {
    campaign(8, 2, 4);
}

#[test]
fn eight_replicas_stay_safe_and_live_under_faults_3() {
    campaign(8, 3, 4);
}

/// The primary of view 0 sends one value to `quorum - 1` backups and another to the rest. The
/// first value prepares but cannot gather a quorum of commits (the primary backs the other), so
/// the correct replicas time out and change view, and the new primary carries on; the view
/// changes' prepared proofs show the others a pre-prepare that contradicts theirs, and the
/// evidence names the primary.
#[test]
fn an_equivocating_primary_is_replaced_and_reported() {
    for n in [4, 8] {
        let mut behaviours = vec![Behaviour::Correct; n];
        behaviours[0] = Behaviour::EquivocatingPrimary;
        let scenario = Scenario {
            n,
            behaviours,
            crashes: Vec::new(),
            partition: None,
            drop_ratio: 0.0,
            duplicate_ratio: 0.0,
            latency_us: (500, 2_000),
            faulty_us: 1_000_000,
            values: 4,
            epoch_change: None,
        };
        let mut world = World::new(7, scenario);
        let report = world.run();
        let evidence = world.correct_evidence();
        assert!(report.views >= 1, "n = {n}: the primary was replaced");
        assert!(
            report.decided >= 4,
            "n = {n}: progress after the view change"
        );
        assert!(
            !evidence.is_empty(),
            "n = {n}: the equivocation left evidence"
        );
        for piece in &evidence {
            assert_eq!(piece.offender, 0, "n = {n}: evidence names the primary");
            assert_eq!(piece.view, 0);
        }
    }
}

/// Every replica crashes in turn while values are in flight, and restarts from its log (the
/// primary of view 0 first, with proposals it sent not yet decided). Restarted from their logs,
/// none signs a second value where it signed one (the world checks every pre-prepare, prepare
/// and commit a replica's own code sends), and the run stays safe and live. A primary that
/// forgot its proposals would propose again at a sequence it had used.
#[test]
fn replicas_restarted_from_their_logs_keep_their_promises() {
    for n in [4, 8] {
        let crashes = (0..n)
            .map(|index| {
                let at = 25_000 + 150_000 * index as u64;
                (index, at, at + 40_000)
            })
            .collect();
        let scenario = Scenario {
            n,
            behaviours: vec![Behaviour::Correct; n],
            crashes,
            partition: None,
            drop_ratio: 0.0,
            duplicate_ratio: 0.0,
            latency_us: (5_000, 20_000),
            faulty_us: 1_500_000,
            values: 60,
            epoch_change: None,
        };
        let mut world = World::new(11, scenario);
        let report = world.run();
        assert_eq!(
            report.restarts, n as u64,
            "n = {n}: every replica restarted"
        );
        assert!(
            report.decided >= 60,
            "n = {n}: every value decided ({report:?})"
        );
    }
}
