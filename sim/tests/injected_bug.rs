//! The campaign finds a deliberately injected bug: built with the feature `injected-bug`, the
//! sequencer leaves a failed move's declared writes in pending state, and the world's
//! convergence checker must catch it within a few seeds (the campaign's bar is 1,000).
//! `cargo test -p sim --features injected-bug --test injected_bug` (a build of its own: the
//! feature must never reach the workspace's test build).
#![cfg(feature = "injected-bug")]

use sim::world::{Violation, WorldConfig, run_seed};

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
}
