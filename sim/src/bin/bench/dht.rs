//! `dht`: node-ID Kademlia lookups over netstack's sans-IO routing tables in one seeded,
//! deterministic in-process network: hops (median, p99) and success rate for 1,000 and 10,000
//! nodes, without and with 20 % churn (nodes gone without notice).
//!
//! A lookup succeeds when it returns exactly the k live nodes nearest to its target. Hops count
//! the sequential queries from the lookup's start to the one that reached the nearest answering
//! node (`hops`), and to the one that reached the last of the k (`hops_all`).

use netstack::dht::network::SimulatedNetwork;
use sim::report::{BenchReport, Op};

use crate::Args;

/// Every random choice of the run comes from this seed.
const SEED: u64 = 0x7d47;
/// Lookups measured per network size and churn level.
const LOOKUPS: usize = 1_000;
/// Share of nodes that leave without notice in the churn runs, in percent.
const CHURN_PERCENT: usize = 20;

pub async fn run(_args: &Args) -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("dht");
    report.figure("seed", SEED as f64);
    for nodes in [1_000usize, 10_000] {
        let mut network = build(nodes, SEED ^ nodes as u64);
        measure(&mut network, &format!("n{nodes}"), &mut report);
        let ids = network.ids();
        // Every fifth node but the bootstrap leaves: 20 % churn.
        for gone in ids.iter().skip(1).step_by(100 / CHURN_PERCENT) {
            network.kill(gone);
        }
        measure(
            &mut network,
            &format!("n{nodes}_churn{CHURN_PERCENT}"),
            &mut report,
        );
    }
    for name in ["n10000", "n10000_churn20"] {
        report.target(&format!("{name}_hops_p50"), Op::AtMost, 4.0);
        report.target(&format!("{name}_success_percent"), Op::AtLeast, 100.0);
    }
    for name in ["n1000", "n1000_churn20"] {
        report.target(&format!("{name}_success_percent"), Op::AtLeast, 100.0);
    }
    Ok(report)
}

/// `nodes` nodes, each joining through the first (self-lookup, then bucket refresh).
fn build(nodes: usize, seed: u64) -> SimulatedNetwork {
    let mut network = SimulatedNetwork::new(seed);
    let first = network.random_id();
    network.join(first, None);
    for _ in 1..nodes {
        let joining = network.random_id();
        network.join(joining, Some(first));
    }
    network
}

fn measure(network: &mut SimulatedNetwork, name: &str, report: &mut BenchReport) {
    let alive = network.alive_ids();
    let mut hops = Vec::with_capacity(LOOKUPS);
    let mut hops_all = Vec::with_capacity(LOOKUPS);
    let mut queries = 0u64;
    let mut failures = 0u64;
    let mut successes = 0usize;
    for lookup in 0..LOOKUPS {
        let from = alive[(lookup * 7_919) % alive.len()];
        let target = network.random_target();
        let outcome = network.lookup(from, target);
        if outcome.closest == network.true_closest(&target, &from) {
            successes += 1;
        }
        hops.push(outcome.hops_nearest);
        hops_all.push(outcome.hops_all);
        queries += u64::from(outcome.queries);
        failures += u64::from(outcome.failures);
    }
    report.figure(&format!("{name}_nodes_alive"), alive.len() as f64);
    report.figure(&format!("{name}_lookups"), LOOKUPS as f64);
    report.figure(
        &format!("{name}_success_percent"),
        100.0 * successes as f64 / LOOKUPS as f64,
    );
    report.figure(&format!("{name}_hops_p50"), percentile(&mut hops, 50.0));
    report.figure(&format!("{name}_hops_p99"), percentile(&mut hops, 99.0));
    report.figure(
        &format!("{name}_hops_all_p50"),
        percentile(&mut hops_all, 50.0),
    );
    report.figure(
        &format!("{name}_hops_all_p99"),
        percentile(&mut hops_all, 99.0),
    );
    report.figure(
        &format!("{name}_queries_per_lookup"),
        queries as f64 / LOOKUPS as f64,
    );
    report.figure(
        &format!("{name}_failed_queries_per_lookup"),
        failures as f64 / LOOKUPS as f64,
    );
}

/// The nearest-rank percentile of `values`.
fn percentile(values: &mut [u8], percent: f64) -> f64 {
    values.sort_unstable();
    let rank = ((percent / 100.0) * values.len() as f64).ceil() as usize;
    f64::from(values[rank.clamp(1, values.len()) - 1])
}
