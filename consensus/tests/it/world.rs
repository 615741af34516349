//! The fault campaign: many seeds of the timed world (`consensus::world`), each a run with its
//! own faults (lossy, duplicating, reordering links; partitions; crashes and restarts; up to `f`
//! byzantine replicas: silent, equivocating primary, conflicting votes, replay), then a heal.
//! Checkers: safety (correct replicas never commit different values at one sequence, every
//! certificate verifies, evidence only names byzantine replicas) and liveness (values proposed
//! after the heal are committed by every correct replica within `RECOVERY_BOUND_US` of simulated
//! time).
//!
//! `cargo test` runs `TICKRATE_SEEDS` seeds per size (default [`SEEDS`]; CI sets 1,000);
//! `TICKRATE_SEED=<n>` replays one seed of both sizes exactly, and a failing seed names itself.

use consensus::world::{Behaviour, RunReport, Scenario, World, run_seed};

/// Seeds per size in a plain `cargo test`. A seed costs seconds of BLS work (n = 8 most), so
/// the full campaign is a separate run: `TICKRATE_SEEDS=1000`.
const SEEDS: u64 = 16;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("TICKRATE_SEED") {
        return vec![seed.parse().expect("TICKRATE_SEED is a number")];
    }
    let count = std::env::var("TICKRATE_SEEDS").map_or(SEEDS, |count| {
        count.parse().expect("TICKRATE_SEEDS is a number")
    });
    (0..count).collect()
}

fn campaign(n: usize) {
    let seeds = seeds();
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
    eprintln!(
        "n = {n}: {} seeds safe and live; {view_changes} changed views, {fetched} caught up by \
         fetching; slowest recovery {:?} µs",
        reports.len(),
        worst
    );
    if seeds.len() as u64 >= SEEDS {
        // The campaign must exercise what it claims to: view changes and state transfer.
        assert!(view_changes > 0, "no seed changed views");
        assert!(fetched > 0, "no seed caught up by fetching");
    }
}

#[test]
fn four_replicas_stay_safe_and_live_under_faults() {
    campaign(4);
}

#[test]
fn eight_replicas_stay_safe_and_live_under_faults() {
    campaign(8);
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
