//! Votes are verified in aggregate: held unverified, checked once per quorum, one by one only
//! when the aggregate fails, and a badly signed vote never counts.

use consensus::{
    Message, ReplicaInput, ReplicaStats, Vote,
    harness::{Cluster, node_id, operator_key, secret_key},
};
use primitives::{B256, Encode, machine::Origin};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::value;

fn total(cluster: &Cluster<B256>, field: impl Fn(&ReplicaStats) -> u64) -> u64 {
    (0..cluster.n())
        .map(|index| field(&cluster.replica(index).stats()))
        .sum()
}

/// Signature checks and pairing checks per committed sequence, all replicas together, and what
/// verifying every vote on arrival would have cost.
fn checks_per_sequence(n: usize, sequences: u64) -> (u64, u64, u64) {
    let mut cluster = Cluster::<B256>::new(n, 60);
    for sequence in 0..sequences {
        cluster.propose(value(sequence)).expect("proposal");
        cluster.deliver_all();
    }
    for index in 0..n {
        assert_eq!(cluster.committed(index).len() as u64, sequences);
    }
    let checks = total(&cluster, |stats| stats.signature_checks);
    let pairings = total(&cluster, |stats| stats.signature_checks_aggregate);
    let pre_prepares = total(&cluster, |stats| stats.pre_prepares_accepted);
    let eager = total(&cluster, |stats| stats.votes_held) + pre_prepares;
    assert_eq!(total(&cluster, |stats| stats.rejected.total()), 0);
    (checks / sequences, pairings / sequences, eager / sequences)
}

#[test]
fn a_commit_quorum_costs_one_pairing_check() {
    // Each backup recovers the signers of the pre-prepare and of the prepares it needs beside
    // its own (quorum - 2), and checks the other commits of its quorum in one aggregate; the
    // primary recovers the quorum - 1 prepares it needs and checks the commits likewise. One
    // pairing per replica and sequence; votes past a quorum are never checked.
    for (n, sequences) in [(4, 10), (8, 4)] {
        let quorum = Cluster::<B256>::new(n, 60).validators().quorum() as u64;
        let backup = 1 + (quorum - 2) + 1;
        let primary = (quorum - 1) + 1;
        let (checks, pairings, eager) = checks_per_sequence(n, sequences);
        eprintln!(
            "n = {n}: {checks} signature checks ({pairings} pairings) per sequence, {eager} \
             verifying every vote"
        );
        assert_eq!(checks, (n as u64 - 1) * backup + primary);
        assert_eq!(pairings, n as u64);
        // Every replica but the primary receives the pre-prepare, and every prepare and commit
        // reaches the n - 1 others.
        let n = n as u64;
        assert_eq!(eager, (n - 1) + (n - 1) * (n - 1) + n * (n - 1));
    }
}

#[test]
fn reordering_keeps_it_to_three_checks_per_replica_and_sequence() {
    for seed in 0..4 {
        let mut cluster = Cluster::<B256>::new(4, seed);
        cluster.reorder(true);
        cluster.duplicate(0.3);
        let sequences = 8;
        for sequence in 0..sequences {
            cluster.propose(value(sequence)).expect("proposal");
        }
        cluster.deliver_all();
        for index in 0..4 {
            assert_eq!(cluster.committed(index).len() as u64, sequences);
            let stats = cluster.replica(index).stats();
            assert!(
                stats.signature_checks <= 3 * sequences,
                "seed {seed}: replica {index} made {} checks",
                stats.signature_checks
            );
        }
    }
}

fn bad_vote(commit: bool, voter: usize, sequence: u64, digest: B256) -> ReplicaInput<B256> {
    // Signed by a key that is not the voter's.
    let voter_index = u16::try_from(voter).expect("small cluster");
    let message = if commit {
        Message::<B256>::Commit(Vote::commit(
            &secret_key(voter + 1),
            0,
            sequence,
            digest,
            voter_index,
        ))
    } else {
        Message::Prepare(Vote::prepare(
            &operator_key(voter + 1),
            0,
            sequence,
            digest,
            voter_index,
        ))
    };
    ReplicaInput::Message(message.to_bytes())
}

#[test]
fn a_bad_vote_held_early_is_refused_when_a_quorum_would_count_it() {
    let mut cluster = Cluster::<B256>::new(4, 61);
    // Replica 1 holds replica 2's badly signed prepare before it sees the pre-prepare: there is
    // no quorum yet, so nothing is checked.
    let before = cluster.replica(1).stats();
    assert_eq!(
        cluster.input(1, Origin::Peer(node_id(2)), bad_vote(false, 2, 1, value(1))),
        Ok(())
    );
    assert_eq!(
        cluster.replica(1).stats().signature_checks,
        before.signature_checks
    );
    // The pre-prepare arrives; with its own prepare, replica 1 would be prepared if it counted
    // the bad one. It checks it instead, drops it, counts it, and does not commit.
    cluster.propose(value(1)).expect("proposal");
    cluster.deliver_where(|envelope| envelope.from == 0 && envelope.to == 1);
    let stats = cluster.replica(1).stats();
    assert_eq!(stats.rejected.bad_signature, 1);
    assert_eq!(stats.commits_sent, 0);
    // Replica 2's real prepare takes the bad one's place, and everyone commits.
    cluster.deliver_all();
    for index in 0..4 {
        assert_eq!(cluster.committed(index).len(), 1, "replica {index}");
    }
    cluster.check_agreement();
    assert_eq!(cluster.replica(1).stats().rejected.bad_signature, 1);
}

#[test]
fn a_failed_aggregate_finds_the_bad_vote_and_waits_for_a_good_one() {
    let mut cluster = Cluster::<B256>::new(4, 62);
    // Replica 1 holds a bad commit from replica 0 for the value about to be proposed.
    assert_eq!(
        cluster.input(1, Origin::Peer(node_id(0)), bad_vote(true, 0, 1, value(1))),
        Ok(())
    );
    cluster.propose(value(1)).expect("proposal");
    cluster.deliver_all();
    let stats = cluster.replica(1).stats();
    assert_eq!(stats.rejected.bad_signature, 1);
    assert!(
        stats.signature_checks_aggregate >= 1,
        "the first quorum was checked in aggregate and failed"
    );
    // Replica 0's real commit is refused as a duplicate if it came while the bad one was held;
    // either way replica 1 decides, on good votes only.
    assert_eq!(cluster.committed(1)[0].value, Some(value(1)));
    cluster.check_agreement();
}

/// Badly signed votes scattered over a run never count: every certificate verifies, every
/// replica commits everything, and only the bad votes are refused for their signature.
#[test]
fn scattered_bad_votes_never_count() {
    for seed in 0..12u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = if seed % 2 == 0 { 4 } else { 8 };
        let mut cluster = Cluster::<B256>::new(n, seed);
        cluster.reorder(true);
        let sequences = 4u64;
        let mut injected = 0;
        for sequence in 1..=sequences {
            // At most one bad vote per replica, kind and slot, so that the real vote it shadows
            // is the only one missing and a quorum remains.
            let target = rng.random_range(1..n);
            let voter = (target + rng.random_range(1..n)) % n;
            let commit = rng.random_bool(0.5);
            if commit || voter != 0 {
                let input = bad_vote(commit, voter, sequence, value(sequence));
                let _ = cluster.input(target, Origin::Peer(node_id(voter)), input);
                injected += 1;
            }
            cluster.propose(value(sequence)).expect("proposal");
        }
        cluster.deliver_all();
        cluster.check_agreement();
        let refused = total(&cluster, |stats| stats.rejected.bad_signature);
        assert!(refused <= injected, "seed {seed}");
        for index in 0..n {
            assert_eq!(
                cluster.committed(index).len() as u64,
                sequences,
                "seed {seed}: replica {index}"
            );
        }
    }
}
