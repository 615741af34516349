//! State transfer: a replica cut off while the others decide more than its window catches up
//! from a peer's certified decided entries, without trusting that peer.

use consensus::{
    Decided, DecidedEntry, Message, RejectReason, ReplicaInput,
    constants::SEQUENCE_WINDOW,
    harness::{Cluster, node_id},
};
use primitives::{B256, Encode, machine::Origin};

use crate::value;

const CUT_OFF: usize = 3;

/// Proposes `count` values from `first` on, delivering everything after each.
fn decide(cluster: &mut Cluster<B256>, first: u64, count: u64) {
    for index in first..first + count {
        cluster.propose(value(index)).expect("the primary takes it");
        cluster.deliver_all();
    }
}

#[test]
fn a_replica_behind_its_window_catches_up_by_fetching() {
    let mut cluster = Cluster::<B256>::new(4, 5);
    cluster.isolate(CUT_OFF);
    let behind = SEQUENCE_WINDOW + 16;
    decide(&mut cluster, 1, behind);
    assert_eq!(cluster.replica(0).last_committed(), behind);
    assert_eq!(cluster.replica(CUT_OFF).last_committed(), 0);
    cluster.heal();
    // The next checkpoint shows the cut-off replica three peers beyond its window.
    decide(&mut cluster, behind + 1, 16);
    let last = behind + 16;
    for index in 0..4 {
        assert_eq!(
            cluster.replica(index).last_committed(),
            last,
            "replica {index}"
        );
    }
    let stats = cluster.replica(CUT_OFF).stats();
    assert!(stats.fetches_sent >= 2, "one answer holds at most a window");
    assert_eq!(stats.entries_fetched, last);
    // It took the peers' stable checkpoint once it reached it.
    assert_eq!(cluster.replica(CUT_OFF).low_watermark(), last);
    cluster.check_agreement();
}

#[test]
fn a_forged_decided_entry_is_refused_whole() {
    let mut cluster = Cluster::<B256>::new(4, 6);
    decide(&mut cluster, 1, 2);
    // Replica 0's answer to a fetch from 1, with the second entry's value swapped.
    let mut entries: Vec<DecidedEntry<B256>> = cluster
        .committed(0)
        .iter()
        .map(|decided| DecidedEntry {
            sequence: decided.sequence,
            view: decided.view,
            value: decided.value,
            certificate: decided.certificate.clone(),
        })
        .collect();
    let mut fresh = Cluster::<B256>::new(4, 7);
    entries[1].value = Some(value(99));
    let forged = Message::Decided(Decided {
        stable_proof: Vec::new(),
        entries,
    });
    let before = fresh.replica(1).fingerprint();
    assert_eq!(
        fresh.input(
            1,
            Origin::Peer(node_id(0)),
            ReplicaInput::Message(forged.to_bytes())
        ),
        Err(RejectReason::BadCertificate { sequence: 2 })
    );
    // Nothing was delivered, not even the good first entry.
    assert_eq!(fresh.replica(1).fingerprint(), before);
    assert!(fresh.committed(1).is_empty());
}
