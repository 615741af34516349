use alloy_primitives::Address;
use primitives::{id::NodeId, time::Instant};

use super::{InsertOutcome, Lookup, RoutingTable, network::SimulatedNetwork};
use crate::constants::{DHT_ALPHA, DHT_BUCKET_SIZE, DHT_QUERY_TIMEOUT};

fn id(first: u8, last: u8) -> NodeId {
    let mut raw = [0u8; 20];
    raw[0] = first;
    raw[19] = last;
    NodeId(Address::from(raw))
}

fn at(seconds: u64) -> Instant {
    Instant::from_micros(seconds * 1_000_000)
}

#[test]
fn a_full_bucket_keeps_its_old_entries_and_caches_new_ones() {
    let mut table = RoutingTable::new(id(0, 0));
    // Every ID with the top bit set falls in bucket 159.
    for n in 0..DHT_BUCKET_SIZE as u8 {
        assert_eq!(
            table.handle_seen(at(u64::from(n)), id(0x80, n)),
            InsertOutcome::Inserted
        );
    }
    let newcomer = id(0x80, 200);
    assert_eq!(
        table.handle_seen(at(100), newcomer),
        InsertOutcome::Cached { probe: id(0x80, 0) }
    );
    assert!(!table.contains(&newcomer));
    assert_eq!(table.bucket(159).len(), DHT_BUCKET_SIZE);
    // Seeing an old entry again keeps it where it is.
    assert_eq!(
        table.handle_seen(at(101), id(0x80, 0)),
        InsertOutcome::Refreshed
    );
    assert_eq!(table.bucket(159)[0].first_seen, at(0));
    // Once an entry fails, the waiting node takes its slot.
    assert!(table.handle_failure(&id(0x80, 3)));
    assert!(table.contains(&newcomer));
    assert!(!table.contains(&id(0x80, 3)));
    assert_eq!(table.stats().promoted, 1);
    assert_eq!(table.handle_seen(at(0), id(0, 0)), InsertOutcome::Local);
}

#[test]
fn an_entry_without_replacement_leaves_only_after_repeated_failures() {
    let mut table = RoutingTable::new(id(0, 0));
    let _ = table.handle_seen(at(0), id(0x80, 1));
    assert!(!table.handle_failure(&id(0x80, 1)));
    assert!(table.contains(&id(0x80, 1)));
    assert!(table.handle_failure(&id(0x80, 1)));
    assert!(table.is_empty());
}

#[test]
fn refresh_targets_fall_in_their_bucket() {
    let table = RoutingTable::new(id(0x5a, 0x33));
    for bucket in [0usize, 1, 7, 8, 9, 100, 158, 159] {
        let target = table.refresh_target(bucket, [0xff; 20]);
        assert_eq!(table.bucket_index(&NodeId(target)), Some(bucket));
        let target = table.refresh_target(bucket, [0; 20]);
        assert_eq!(table.bucket_index(&NodeId(target)), Some(bucket));
    }
}

#[test]
fn a_lookup_keeps_alpha_queries_in_flight_and_times_them_out() {
    let seeds: Vec<NodeId> = (1..=10).map(|n| id(n, 0)).collect();
    let mut lookup = Lookup::new(id(0, 0), id(0, 0).0, &seeds);
    let queried: Vec<NodeId> = std::iter::from_fn(|| lookup.poll_query(at(0))).collect();
    assert_eq!(queried, vec![id(1, 0), id(2, 0), id(3, 0)]);
    assert_eq!(queried.len(), DHT_ALPHA);
    assert_eq!(lookup.poll_timeout(), Some(at(0) + DHT_QUERY_TIMEOUT));
    // An answer from a node never asked is ignored.
    assert!(!lookup.handle_response(&id(9, 0), &[id(0, 1)]));
    assert!(lookup.handle_response(&id(2, 0), &[id(0, 1)]));
    assert_eq!(lookup.poll_query(at(1)), Some(id(0, 1)));
    lookup.handle_timeout(at(0) + DHT_QUERY_TIMEOUT);
    // Both seeds 1 and 3 timed out; the nearer new node is still in flight.
    assert_eq!(lookup.poll_timeout(), Some(at(1) + DHT_QUERY_TIMEOUT));
    assert!(!lookup.handle_response(&id(1, 0), &[]));
    assert!(!lookup.is_finished());
}

#[test]
fn a_lookup_finishes_when_the_k_nearest_have_answered() {
    let seeds: Vec<NodeId> = (1..=12).map(|n| id(n, 0)).collect();
    let mut lookup = Lookup::new(id(0, 0), id(0, 0).0, &seeds);
    let mut answered = 0;
    while let Some(peer) = lookup.poll_query(at(0)) {
        assert!(lookup.handle_response(&peer, &[]));
        answered += 1;
    }
    assert!(lookup.is_finished());
    assert_eq!(answered, DHT_BUCKET_SIZE);
    let outcome = lookup.outcome().expect("finished");
    assert_eq!(outcome.closest, seeds[..DHT_BUCKET_SIZE].to_vec());
    assert_eq!((outcome.hops_nearest, outcome.hops_all), (1, 1));
}

fn network_of(nodes: usize, seed: u64) -> SimulatedNetwork {
    let mut network = SimulatedNetwork::new(seed);
    let first = network.random_id();
    network.join(first, None);
    for _ in 1..nodes {
        let joining = network.random_id();
        network.join(joining, Some(first));
    }
    network
}

#[test]
fn the_dht_finds_the_k_closest_nodes_in_a_200_node_network() {
    let mut network = network_of(200, 11);
    let ids = network.ids();
    for round in 0..100 {
        let from = ids[(round * 7) % ids.len()];
        let target = network.random_target();
        let outcome = network.lookup(from, target);
        assert_eq!(
            outcome.closest,
            network.true_closest(&target, &from),
            "round {round}"
        );
    }
    // Looking up an existing node finds it first.
    let outcome = network.lookup(ids[3], ids[150].0);
    assert_eq!(outcome.closest[0], ids[150]);
}

#[test]
fn the_dht_finds_the_k_closest_live_nodes_after_churn() {
    let mut network = network_of(200, 12);
    let ids = network.ids();
    for gone in ids.iter().skip(1).step_by(5) {
        network.kill(gone);
    }
    let alive = network.alive_ids();
    assert_eq!(alive.len(), 160);
    // Right after the churn, lookups still reach the nearest live node.
    for round in 0..50 {
        let from = alive[(round * 3) % alive.len()];
        let target = network.random_target();
        let outcome = network.lookup(from, target);
        assert_eq!(
            outcome.closest.first(),
            network.true_closest(&target, &from).first()
        );
        assert!(outcome.closest.iter().all(|n| alive.contains(n)));
    }
    // After one refresh round, they find exactly the k nearest live nodes.
    network.refresh_all();
    for round in 0..50 {
        let from = alive[(round * 3) % alive.len()];
        let target = network.random_target();
        let outcome = network.lookup(from, target);
        assert_eq!(
            outcome.closest,
            network.true_closest(&target, &from),
            "round {round}"
        );
        assert!(outcome.closest.iter().all(|n| alive.contains(n)));
    }
}
