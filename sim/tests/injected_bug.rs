//! The campaign finds a deliberately injected bug: built with the feature `injected-bug`, the
//! sequencer leaves a failed move's declared writes in pending state, and the world's
//! convergence checker must catch it within a few seeds (the campaign's bar is 1,000).
//! `cargo test -p sim --features injected-bug --test injected_bug` (a build of its own: the
//! feature must never reach the workspace's test build).
#![cfg(feature = "injected-bug")]

use sim::world::{Violation, WorldConfig, replay_prefix_command, run_seed, shrink};

#[test]
fn the_campaign_catches_a_failed_move_left_in_pending_state() {
    let found = (0..20).find_map(|seed| {
        let report = run_seed(WorldConfig::campaign(), seed);
        report
            .violations
            .iter()
            .any(|violation| matches!(violation, Violation::Diverged { .. }))
            .then_some(report)
    });
    let report = found.expect("the injected bug is caught within 20 seeds");
    eprintln!("seed {} caught it: {:?}", report.seed, report.violations);

    // The failure shrinks: the bug needs no network fault at all, only a move that fails.
    let config = WorldConfig::campaign();
    let shrunk = shrink(config, report.seed, &report).expect("a shorter prefix fails too");
    assert!(shrunk.heal_us < config.faulty_us, "{shrunk:?}");
    assert!(
        shrunk
            .report
            .violations
            .iter()
            .any(|violation| matches!(violation, Violation::Diverged { .. })),
        "{shrunk:?}"
    );
    eprintln!(
        "shrunk to faults cut at {} µs: {}",
        shrunk.heal_us,
        replay_prefix_command(report.seed, shrunk.heal_us)
    );
}
