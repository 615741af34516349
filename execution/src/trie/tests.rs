#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn value(byte: u8) -> B256 {
    B256::repeat_byte(byte)
}

/// Applies `changes` in any order and with repeats (the last write of a key wins), as a caller
/// merging a batch's diffs would.
fn sorted(changes: &[([u8; 2], Option<B256>)]) -> Vec<Change<2>> {
    let merged: BTreeMap<[u8; 2], Option<B256>> = changes.iter().copied().collect();
    merged.into_iter().collect()
}

/// The same trie built from scratch, in one update from empty.
fn fresh<const N: usize>(model: &BTreeMap<[u8; N], B256>) -> MemoryTrie<N> {
    let changes: Vec<Change<N>> = model
        .iter()
        .map(|(key, value)| (*key, Some(*value)))
        .collect();
    let mut trie = MemoryTrie::new();
    trie.apply(&changes);
    trie
}

fn change_strategy() -> impl Strategy<Value = ([u8; 2], Option<B256>)> {
    // Two-byte keys drawn from a small set, so that batches collide, share long prefixes and
    // delete what they wrote.
    (
        prop::array::uniform2(prop::sample::select(vec![0x00u8, 0x01, 0x80, 0x81, 0xff])),
        prop::option::weighted(0.7, any::<u8>().prop_map(value)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the batches, the stored trie has the root of its leaves computed from scratch,
    /// and exactly the nodes a trie built in one go would have: updates leave no stale node.
    #[test]
    fn incremental_updates_equal_the_definition(
        batches in prop::collection::vec(prop::collection::vec(change_strategy(), 0..12), 1..8)
    ) {
        let mut trie = MemoryTrie::<2>::new();
        let mut model = BTreeMap::new();
        for batch in &batches {
            let changes = sorted(batch);
            for (key, value) in &changes {
                match value {
                    Some(value) => model.insert(*key, *value),
                    None => model.remove(key),
                };
            }
            let root = trie.apply(&changes);
            prop_assert_eq!(root, root_of(&model));
        }
        let rebuilt = fresh(&model);
        prop_assert_eq!(&trie.nodes, &rebuilt.nodes);
    }

    /// Every key, present or not, has a proof that verifies to its value or to its absence, and
    /// every prefix root is the root of the leaves under the prefix.
    #[test]
    fn proofs_and_prefix_roots_hold(
        batch in prop::collection::vec(change_strategy(), 0..24),
        probe in prop::array::uniform2(any::<u8>()),
        bits in 0usize..=16,
    ) {
        let mut trie = MemoryTrie::<2>::new();
        let changes = sorted(&batch);
        trie.apply(&changes);
        let model: BTreeMap<[u8; 2], B256> = changes
            .iter()
            .filter_map(|(key, value)| value.map(|value| (*key, value)))
            .collect();
        for key in model.keys().copied().chain([probe]) {
            let proof = trie.prove(&key);
            prop_assert_eq!(proof.verify(&trie.root(), &key), Ok(model.get(&key).copied()));
        }
        let under: BTreeMap<[u8; 2], B256> = model
            .iter()
            .filter(|(key, _)| (0..bits).all(|index| bit(*key, index) == bit(&probe, index)))
            .map(|(key, value)| (*key, *value))
            .collect();
        prop_assert_eq!(trie.prefix_root(&probe, bits), prefix_root_of(&under, bits));
    }
}

#[test]
fn an_empty_trie_has_the_empty_root_and_proves_absence() {
    let trie = MemoryTrie::<20>::new();
    assert_eq!(trie.root(), EMPTY);
    let key = [7u8; 20];
    assert_eq!(trie.prove(&key).verify(&EMPTY, &key), Ok(None));
}

#[test]
fn removing_every_key_empties_the_store() {
    let mut trie = MemoryTrie::<20>::new();
    let keys: Vec<[u8; 20]> = (0u8..40)
        .map(|index| [index.wrapping_mul(37); 20])
        .collect();
    let mut changes: Vec<Change<20>> = keys.iter().map(|key| (*key, Some(value(1)))).collect();
    changes.sort();
    changes.dedup_by_key(|(key, _)| *key);
    trie.apply(&changes);
    assert!(trie.node_count() > changes.len());
    let removals: Vec<Change<20>> = changes.iter().map(|(key, _)| (*key, None)).collect();
    assert_eq!(trie.apply(&removals), EMPTY);
    assert_eq!(trie.node_count(), 0);
}

#[test]
fn a_proof_fails_for_another_value_key_or_root() {
    let mut trie = MemoryTrie::<2>::new();
    trie.apply(&[
        ([0x00, 0x01], Some(value(1))),
        ([0x00, 0x02], Some(value(2))),
        ([0x80, 0x00], Some(value(3))),
    ]);
    let key = [0x00, 0x02];
    let proof = trie.prove(&key);
    assert_eq!(proof.verify(&trie.root(), &key), Ok(Some(value(2))));
    assert!(proof.verify(&trie.root(), &[0x00, 0x01]).is_err());
    assert_eq!(proof.verify(&value(9), &key), Err(ProofError::RootMismatch));
    let mut forged = proof.clone();
    forged.end = ProofEnd::Leaf {
        key,
        value: value(9),
    };
    assert_eq!(
        forged.verify(&trie.root(), &key),
        Err(ProofError::RootMismatch)
    );
    // Cutting the path short to end on the sibling's leaf is off the key's path.
    let mut short = proof.clone();
    short.siblings.pop();
    short.end = ProofEnd::Leaf {
        key: [0x80, 0x00],
        value: value(3),
    };
    assert_eq!(
        short.verify(&trie.root(), &key),
        Err(ProofError::LeafOffPath)
    );
}

#[test]
fn proofs_round_trip_through_the_codec_and_any_changed_byte_breaks_them() {
    let mut trie = MemoryTrie::<20>::new();
    let mut changes: Vec<Change<20>> = (0u8..16)
        .map(|index| ([index.wrapping_mul(29); 20], Some(value(index))))
        .collect();
    changes.sort();
    trie.apply(&changes);
    let key = changes[5].0;
    let proof = trie.prove(&key);
    let bytes = proof.to_bytes();
    assert_eq!(TrieProof::<20>::from_bytes(&bytes), Ok(proof.clone()));
    for index in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[index] ^= 0x01;
        if let Ok(decoded) = TrieProof::<20>::from_bytes(&tampered) {
            assert_ne!(
                decoded.verify(&trie.root(), &key),
                Ok(Some(value(5))),
                "flipping byte {index} still proves the value"
            );
        }
    }
}

#[test]
fn stored_nodes_decode_and_bad_tags_are_refused() {
    let leaf = Node::<2>::Leaf {
        key: [1, 2],
        value: value(3),
    };
    assert_eq!(Node::<2>::from_bytes(&leaf.to_bytes()), Ok(leaf));
    assert!(matches!(
        Node::<2>::from_bytes(&[9, 0, 0]),
        Err(DecodeError::UnknownTag { .. })
    ));
    assert!(Node::<2>::from_bytes(&[NODE_BRANCH, 0]).is_err());
}
