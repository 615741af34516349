//! Hostile bytes: decoding never panics, and a replica refuses them without changing.

use consensus::{
    Message, RejectReason, ReplicaInput, Vote,
    harness::{Cluster, node_id, operator_key, secret_key},
};
use primitives::{B256, Batch, Encode, machine::Origin};
use proptest::prelude::*;

use crate::value;

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Message::<B256>::from_wire(&bytes);
        let _ = Message::<Batch>::from_wire(&bytes);
        // With a valid header, so the fuzzing reaches the bodies.
        for tag in 0u8..4 {
            let mut framed = vec![2, tag];
            framed.extend_from_slice(&bytes);
            let _ = Message::<B256>::from_wire(&framed);
            let _ = Message::<Batch>::from_wire(&framed);
        }
    }

    #[test]
    fn random_bytes_are_refused_and_change_nothing(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut cluster = Cluster::<B256>::new(4, 31);
        let before = cluster.replica(1).fingerprint();
        let result = cluster.input(1, Origin::Peer(node_id(2)), ReplicaInput::Message(bytes));
        prop_assert!(result.is_err());
        prop_assert_eq!(cluster.replica(1).fingerprint(), before);
        prop_assert_eq!(cluster.replica(1).stats().rejected.total(), 1);
    }
}

proptest! {
    // Each case checks a BLS signature; a few dozen cases cover every field of a vote.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_mutated_prepare_is_always_refused(position in 0usize..155, flip in 1u8..=255) {
        let mut cluster = Cluster::<B256>::new(4, 32);
        cluster.propose(value(1)).expect("proposal");
        cluster.deliver_where(|envelope| envelope.to == 1 && envelope.from == 0);
        let vote = Vote::prepare(&operator_key(2), 0, 1, value(1), 2);
        let mut bytes = Message::<B256>::Prepare(vote).to_bytes();
        prop_assert_eq!(bytes.len(), 1 + 1 + 8 + 8 + 32 + 2 + 65);
        let position = position % bytes.len();
        bytes[position] ^= flip;
        let before = cluster.replica(1).fingerprint();
        let result = cluster.input(1, Origin::Peer(node_id(2)), ReplicaInput::Message(bytes.clone()));
        prop_assert_ne!(&result, &Err(RejectReason::Duplicate { what: "prepare", sequence: 1 }));
        if result.is_err() {
            prop_assert_eq!(cluster.replica(1).fingerprint(), before);
        } else {
            // Votes are held unverified until a quorum would count them. Replica 1 holds the
            // pre-prepare and its own prepare, so a prepare for (1, value(1)) would make that
            // quorum and be checked at once: an accepted mutant names another slot or digest,
            // which no quorum of this slot counts.
            let Ok(Message::Prepare(mutant)) = Message::<B256>::from_wire(&bytes) else {
                return Err(TestCaseError::fail("only a prepare can be held"));
            };
            prop_assert!((mutant.sequence, mutant.digest) != (1, value(1)));
            prop_assert_eq!(cluster.replica(1).stats().commits_sent, 0);
        }
    }
}

#[test]
fn evidence_round_trips_and_verifies_only_against_its_facts() {
    use consensus::{
        Evidence, EvidenceError, EvidenceKind, PbftSignature, PrePrepare, Signed,
        harness::{Cluster, operator_key},
        verify_evidence,
    };
    use primitives::Decode;
    let cluster = Cluster::<B256>::new(4, 33);
    let validators = cluster.validators();
    let signed = |signer: usize, view: u64, digest: B256| Signed {
        digest,
        signature: PbftSignature::Operator(
            PrePrepare::new(&operator_key(signer), view, 3, digest).signature,
        ),
    };
    let evidence = Evidence::new(
        EvidenceKind::PrePrepare,
        1,
        1,
        3,
        signed(1, 1, value(9)),
        signed(1, 1, value(2)),
    );
    // Canonical: the lower digest first, whatever order it was found in.
    assert!(evidence.first.digest < evidence.second.digest);
    assert_eq!(verify_evidence(&evidence, validators), Ok(()));
    let decoded = Evidence::from_bytes(&evidence.to_bytes());
    assert_eq!(decoded.as_ref(), Ok(&evidence));
    // Another view's primary, another sequence, a stranger, a swapped pair, another signer.
    let mut other = evidence.clone();
    other.view = 2;
    assert_eq!(
        verify_evidence(&other, validators),
        Err(EvidenceError::NotPrimary {
            offender: 1,
            view: 2
        })
    );
    let mut other = evidence.clone();
    other.sequence = 4;
    assert_eq!(
        verify_evidence(&other, validators),
        Err(EvidenceError::BadSignature)
    );
    let mut other = evidence.clone();
    other.offender = 9;
    assert_eq!(
        verify_evidence(&other, validators),
        Err(EvidenceError::UnknownOffender { offender: 9 })
    );
    let mut other = evidence.clone();
    std::mem::swap(&mut other.first, &mut other.second);
    assert_eq!(
        verify_evidence(&other, validators),
        Err(EvidenceError::NotCanonical)
    );
    let mut other = evidence.clone();
    other.second = signed(2, 1, other.second.digest);
    assert_eq!(
        verify_evidence(&other, validators),
        Err(EvidenceError::BadSignature)
    );
    // Two commits in one view, in whichever order they were seen.
    let commit = |digest| {
        let vote = Vote::commit(&secret_key(2), 7, 3, digest, 2);
        Signed {
            digest,
            signature: vote.signature,
        }
    };
    let commits = Evidence::new(
        EvidenceKind::Commit,
        2,
        7,
        3,
        commit(value(1)),
        commit(value(2)),
    );
    assert_eq!(commits.view, 7);
    assert_eq!(verify_evidence(&commits, validators), Ok(()));
}
