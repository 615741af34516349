//! Hostile bytes: decoding never panics, and a replica refuses them without changing.

use consensus::{
    Message, RejectReason, ReplicaInput, Vote,
    harness::{Cluster, node_id, secret_key},
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
            let mut framed = vec![1, tag];
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
        let vote = Vote::prepare(&secret_key(2), 0, 1, value(1), 2);
        let mut bytes = Message::<B256>::Prepare(vote).to_bytes();
        prop_assert_eq!(bytes.len(), 1 + 1 + 8 + 8 + 32 + 2 + 96);
        let position = position % bytes.len();
        bytes[position] ^= flip;
        let before = cluster.replica(1).fingerprint();
        let result = cluster.input(1, Origin::Peer(node_id(2)), ReplicaInput::Message(bytes));
        prop_assert!(result.is_err(), "byte {} flipped by {:#x} was accepted", position, flip);
        prop_assert_ne!(result, Err(RejectReason::Duplicate { what: "prepare", sequence: 1 }));
        prop_assert_eq!(cluster.replica(1).fingerprint(), before);
    }
}
