//! Refused inputs: each has its typed reason, is counted, and changes nothing (a conflicting
//! message also yields equivocation evidence, once).
//!
//! Votes are held unverified and checked when a quorum would count them; here replica 1 holds
//! the pre-prepare and its own prepare, so one more prepare makes a quorum and a badly signed
//! one is refused by the input that brought it.

use consensus::{
    Checkpoint, EvidenceKind, Message, PrePrepare, RejectReason, ReplicaInput, Vote,
    constants::SEQUENCE_WINDOW,
    harness::{Cluster, node_id, operator_key, secret_key},
};
use primitives::{Address, B256, DecodeError, Encode, NodeId, machine::Origin};

use crate::value;

const TARGET: usize = 1;

/// A cluster of 4 where the primary has proposed `value(1)` and replica 1 has accepted it, and
/// nothing else has been delivered.
fn started() -> Cluster<B256> {
    let mut cluster = Cluster::new(4, 21);
    cluster.propose(value(1)).expect("proposal");
    cluster.deliver_where(|envelope| envelope.to == TARGET && envelope.from == 0);
    assert_eq!(cluster.replica(TARGET).stats().pre_prepares_accepted, 1);
    cluster
}

/// Feeds `input` from `from` to replica 1 and checks it is refused for `reason`, counted, and
/// changes nothing else.
fn assert_refused(
    cluster: &mut Cluster<B256>,
    from: Origin,
    input: ReplicaInput<B256>,
    reason: RejectReason,
) {
    let before = cluster.replica(TARGET).fingerprint();
    let stats_before = cluster.replica(TARGET).stats();
    let in_flight_before = cluster.in_flight().len();
    assert_eq!(cluster.input(TARGET, from, input), Err(reason.clone()));
    assert_eq!(cluster.replica(TARGET).fingerprint(), before, "{reason}");
    assert_eq!(
        cluster.in_flight().len(),
        in_flight_before,
        "{reason}: nothing sent"
    );
    let stats = cluster.replica(TARGET).stats();
    assert_eq!(stats.rejected.total(), stats_before.rejected.total() + 1);
    assert_eq!(stats.inputs, stats_before.inputs + 1);
    let mut others = stats;
    others.rejected = stats_before.rejected;
    others.inputs = stats_before.inputs;
    // Checking a signature is work, not a change of state.
    others.signature_checks = stats_before.signature_checks;
    others.signature_checks_aggregate = stats_before.signature_checks_aggregate;
    assert_eq!(
        others, stats_before,
        "{reason}: only the refusal counters move"
    );
}

/// Feeds a message conflicting with one replica 1 holds: refused as `reason`, and the first
/// time, evidence of `kind` against `offender` that verifies; the second time, nothing at all.
fn assert_conflict(
    cluster: &mut Cluster<B256>,
    from: Origin,
    input: ReplicaInput<B256>,
    reason: RejectReason,
    (kind, offender): (EvidenceKind, u16),
) {
    let evidence_before = cluster.evidence(TARGET).len();
    let rejected_before = cluster.replica(TARGET).stats().rejected.total();
    assert_eq!(
        cluster.input(TARGET, from, input.clone()),
        Err(reason.clone())
    );
    assert_eq!(
        cluster.replica(TARGET).stats().rejected.total(),
        rejected_before + 1
    );
    let evidence = cluster.evidence(TARGET);
    assert_eq!(evidence.len(), evidence_before + 1, "{reason}: evidence");
    let evidence = evidence.last().expect("just emitted").clone();
    assert_eq!((evidence.kind, evidence.offender), (kind, offender));
    assert_eq!(
        consensus::verify_evidence(&evidence, cluster.validators()),
        Ok(())
    );
    // Once is enough: the same conflict again is only refused.
    assert_refused(cluster, from, input, reason);
    assert_eq!(cluster.evidence(TARGET).len(), evidence_before + 1);
}

fn peer(index: usize) -> Origin {
    Origin::Peer(node_id(index))
}

fn prepare(
    signer: usize,
    view: u64,
    sequence: u64,
    digest: B256,
    claimed: u16,
) -> ReplicaInput<B256> {
    let vote = Vote::prepare(&operator_key(signer), view, sequence, digest, claimed);
    ReplicaInput::Message(Message::<B256>::Prepare(vote).to_bytes())
}

#[test]
fn every_refusal_is_typed_counted_and_harmless() {
    let mut cluster = started();
    let digest = value(1);

    // Undecodable bytes.
    assert_refused(
        &mut cluster,
        peer(2),
        ReplicaInput::Message(vec![2, 9]),
        RejectReason::Decode(DecodeError::UnknownTag {
            what: "consensus message",
            tag: 9,
        }),
    );
    // A prepare signed by another key than the sender's.
    assert_refused(
        &mut cluster,
        peer(2),
        prepare(3, 0, 1, digest, 2),
        RejectReason::BadSignature,
    );
    // A prepare whose signature was made for another digest.
    let mut vote = Vote::prepare(&operator_key(2), 0, 1, value(7), 2);
    vote.digest = digest;
    assert_refused(
        &mut cluster,
        peer(2),
        ReplicaInput::Decoded(Message::Prepare(vote)),
        RejectReason::BadSignature,
    );
    // A node that is not a validator.
    let stranger = NodeId(Address::repeat_byte(0x77));
    assert_refused(
        &mut cluster,
        Origin::Peer(stranger),
        prepare(2, 0, 1, digest, 2),
        RejectReason::NotValidator { from: stranger },
    );
    // A validator speaking for another.
    assert_refused(
        &mut cluster,
        peer(2),
        prepare(3, 0, 1, digest, 3),
        RejectReason::WrongSender {
            from: node_id(2),
            claimed: 3,
        },
    );
    // A view beyond the next (the next one's messages are held until the replica enters it).
    assert_refused(
        &mut cluster,
        peer(2),
        prepare(2, 2, 1, digest, 2),
        RejectReason::FutureView {
            view: 2,
            current: 0,
        },
    );
    // Outside the window, below and above.
    for sequence in [0, SEQUENCE_WINDOW + 1, u64::MAX] {
        assert_refused(
            &mut cluster,
            peer(2),
            prepare(2, 0, sequence, digest, 2),
            RejectReason::OutsideWindow {
                sequence,
                low: 0,
                high: SEQUENCE_WINDOW,
            },
        );
    }
    // A pre-prepare from a backup.
    let forged = PrePrepare::new(&operator_key(2), 0, 2, value(2));
    assert_refused(
        &mut cluster,
        peer(2),
        ReplicaInput::Decoded(Message::PrePrepare(forged)),
        RejectReason::NotPrimary { view: 0, index: 2 },
    );
    // A prepare from the primary.
    assert_refused(
        &mut cluster,
        peer(0),
        prepare(0, 0, 1, digest, 0),
        RejectReason::PrepareFromPrimary { view: 0 },
    );
    // The pre-prepare again, and a different one for the same sequence.
    let again = PrePrepare::new(&operator_key(0), 0, 1, value(1));
    assert_refused(
        &mut cluster,
        peer(0),
        ReplicaInput::Decoded(Message::PrePrepare(again)),
        RejectReason::Duplicate {
            what: "pre-prepare",
            sequence: 1,
        },
    );
    let other = PrePrepare::new(&operator_key(0), 0, 1, value(9));
    assert_conflict(
        &mut cluster,
        peer(0),
        ReplicaInput::Decoded(Message::PrePrepare(other)),
        RejectReason::Conflicting {
            what: "pre-prepare",
            sequence: 1,
        },
        (EvidenceKind::PrePrepare, 0),
    );
    // A checkpoint off the interval.
    let checkpoint = Checkpoint::new(&secret_key(2), 5, B256::ZERO, 2);
    assert_refused(
        &mut cluster,
        peer(2),
        ReplicaInput::Decoded(Message::Checkpoint(checkpoint)),
        RejectReason::NotCheckpoint { sequence: 5 },
    );
    // Local commands from a peer, peer messages as local commands, messages from itself.
    assert_refused(
        &mut cluster,
        peer(2),
        ReplicaInput::Propose(value(3)),
        RejectReason::WrongOrigin { what: "proposal" },
    );
    assert_refused(
        &mut cluster,
        peer(2),
        ReplicaInput::Verified {
            sequence: 1,
            digest,
            valid: true,
        },
        RejectReason::WrongOrigin { what: "verdict" },
    );
    assert_refused(
        &mut cluster,
        Origin::Local,
        prepare(2, 0, 1, digest, 2),
        RejectReason::WrongOrigin {
            what: "peer message",
        },
    );
    assert_refused(
        &mut cluster,
        peer(TARGET),
        prepare(TARGET, 0, 1, digest, TARGET as u16),
        RejectReason::WrongOrigin {
            what: "message from this replica itself",
        },
    );
    // A proposal given to a backup; a verdict nobody asked for.
    assert_refused(
        &mut cluster,
        Origin::Local,
        ReplicaInput::Propose(value(3)),
        RejectReason::NotPrimary {
            view: 0,
            index: TARGET as u16,
        },
    );
    assert_refused(
        &mut cluster,
        Origin::Local,
        ReplicaInput::Verified {
            sequence: 2,
            digest,
            valid: true,
        },
        RejectReason::UnexpectedVerdict { sequence: 2 },
    );

    let rejected = cluster.replica(TARGET).stats().rejected;
    assert_eq!(rejected.bad_signature, 2);
    assert_eq!(rejected.outside_window, 3);
    assert_eq!(rejected.wrong_origin, 4);
    assert_eq!(rejected.not_primary, 2);
    assert_eq!(rejected.conflicting, 2);
    assert_eq!(rejected.total(), 21);

    // None of it got in the way: the proposal still commits everywhere.
    cluster.deliver_all();
    for index in 0..4 {
        assert_eq!(cluster.committed(index).len(), 1, "replica {index}");
        assert_eq!(cluster.committed(index)[0].value, Some(value(1)));
    }
}

#[test]
fn a_second_vote_is_a_duplicate_or_a_conflict() {
    let mut cluster = started();
    let digest = value(1);
    assert_eq!(
        cluster.input(TARGET, peer(2), prepare(2, 0, 1, digest, 2)),
        Ok(())
    );
    assert_refused(
        &mut cluster,
        peer(2),
        prepare(2, 0, 1, digest, 2),
        RejectReason::Duplicate {
            what: "prepare",
            sequence: 1,
        },
    );
    assert_conflict(
        &mut cluster,
        peer(2),
        prepare(2, 0, 1, value(5), 2),
        RejectReason::Conflicting {
            what: "prepare",
            sequence: 1,
        },
        (EvidenceKind::Prepare, 2),
    );
    // Replica 1 has its own prepare and replica 2's: it is prepared and has sent its commit.
    assert_eq!(cluster.replica(TARGET).stats().commits_sent, 1);
    let commit = |digest| {
        let vote = Vote::commit(&secret_key(3), 0, 1, digest, 3);
        ReplicaInput::Message(Message::<B256>::Commit(vote).to_bytes())
    };
    assert_eq!(cluster.input(TARGET, peer(3), commit(digest)), Ok(()));
    assert_refused(
        &mut cluster,
        peer(3),
        commit(digest),
        RejectReason::Duplicate {
            what: "commit",
            sequence: 1,
        },
    );
    assert_conflict(
        &mut cluster,
        peer(3),
        commit(value(5)),
        RejectReason::Conflicting {
            what: "commit",
            sequence: 1,
        },
        (EvidenceKind::Commit, 3),
    );
    // A conflicting vote whose signature is not the voter's proves nothing: refused as such.
    let forged = Vote::commit(&secret_key(0), 0, 1, value(6), 2);
    let evidence_before = cluster.evidence(TARGET).len();
    assert_eq!(
        cluster.input(
            TARGET,
            peer(2),
            ReplicaInput::Decoded(Message::Commit(forged))
        ),
        Ok(()),
        "replica 2 has no commit held yet: the forged one is held, unverified"
    );
    // A second one conflicts with it: checking the pair finds the held one badly signed, so it
    // is dropped and counted, no evidence comes of it, and the new one is held in its place.
    let bad_before = cluster.replica(TARGET).stats().rejected.bad_signature;
    let forged_again = Vote::commit(&secret_key(0), 0, 1, value(7), 2);
    assert_eq!(
        cluster.input(
            TARGET,
            peer(2),
            ReplicaInput::Decoded(Message::Commit(forged_again))
        ),
        Ok(())
    );
    let stats = cluster.replica(TARGET).stats();
    assert_eq!(stats.rejected.bad_signature, bad_before + 1);
    assert_eq!(cluster.evidence(TARGET).len(), evidence_before);
    // Neither forged commit counts: replica 1 decides on the commits of 0, 1 and 3.
    assert_eq!(cluster.committed(TARGET).len(), 0);
    let commit_0 = Vote::commit(&secret_key(0), 0, 1, digest, 0);
    assert_eq!(
        cluster.input(
            TARGET,
            peer(0),
            ReplicaInput::Decoded(Message::Commit(commit_0))
        ),
        Ok(())
    );
    assert_eq!(cluster.committed(TARGET).len(), 1);
    assert_eq!(cluster.committed(TARGET)[0].value, Some(digest));
}
