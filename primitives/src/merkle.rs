//! The blake3 Merkle tree over a block's moves (and over any list of byte strings).
//!
//! Leaves and inner nodes are domain-separated (`0x00 || leaf`, `0x01 || left || right`) so a
//! leaf can never pass for a node. An odd node at the end of a level is carried up unchanged
//! rather than paired with itself, so no two different lists share a root (Bitcoin's duplicated
//! last leaf, CVE-2012-2459, is the flaw this avoids).

use alloy_primitives::B256;

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode, put_list},
    constants::MERKLE_PROOF_DEPTH_MAX,
};

/// Root of the tree over no leaves.
pub fn empty_root() -> B256 {
    B256::from(*blake3::hash(&[0x02]).as_bytes())
}

/// The hash of one leaf.
pub fn leaf_hash(leaf: &[u8]) -> B256 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x00]);
    hasher.update(leaf);
    B256::from(*hasher.finalize().as_bytes())
}

fn node_hash(left: &B256, right: &B256) -> B256 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x01]);
    hasher.update(left.as_slice());
    hasher.update(right.as_slice());
    B256::from(*hasher.finalize().as_bytes())
}

/// A whole tree, kept to hand out proofs.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// `levels[0]` are the leaf hashes, the last level is the root alone.
    levels: Vec<Vec<B256>>,
}

impl MerkleTree {
    /// Builds the tree over leaf byte strings.
    pub fn from_leaves<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> Self {
        Self::from_leaf_hashes(leaves.into_iter().map(leaf_hash).collect())
    }

    /// Builds the tree over already hashed leaves.
    pub fn from_leaf_hashes(leaf_hashes: Vec<B256>) -> Self {
        let mut levels = vec![leaf_hashes];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = levels.last().expect("loop condition");
            let above: Vec<B256> = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        MerkleTree { levels }
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> usize {
        self.levels[0].len()
    }

    /// The root ([`empty_root`] for no leaves).
    pub fn root(&self) -> B256 {
        match self.levels.last().and_then(|level| level.first()) {
            Some(root) if self.leaf_count() > 0 => *root,
            _ => empty_root(),
        }
    }

    /// The inclusion proof of leaf `index`, or `None` if there is no such leaf.
    pub fn proof(&self, index: usize) -> Option<MerkleProof> {
        if index >= self.leaf_count() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut position = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = position ^ 1;
            if sibling < level.len() {
                siblings.push(level[sibling]);
            }
            position /= 2;
        }
        Some(MerkleProof {
            index: index as u32,
            leaf_count: self.leaf_count() as u32,
            siblings,
        })
    }
}

/// Root over leaf byte strings, without keeping the tree.
pub fn merkle_root<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> B256 {
    MerkleTree::from_leaves(leaves).root()
}

/// Proof that a leaf sits at `index` in a tree of `leaf_count` leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleProof {
    /// Position of the leaf.
    pub index: u32,
    /// Leaves in the tree.
    pub leaf_count: u32,
    /// Sibling hashes from the leaf level up; carried-up levels have none.
    pub siblings: Vec<B256>,
}

impl MerkleProof {
    /// Whether `leaf` at this proof's index hashes up to `root`.
    pub fn verify(&self, leaf: &[u8], root: &B256) -> bool {
        self.verify_hash(leaf_hash(leaf), root)
    }

    /// Whether a leaf with hash `leaf` at this proof's index hashes up to `root`.
    pub fn verify_hash(&self, leaf: B256, root: &B256) -> bool {
        self.root_of_hash(leaf) == Some(*root)
    }

    /// The root a leaf with hash `leaf` at this proof's index hashes up to, or `None` if the
    /// proof does not fit its tree (index out of range, too many or too few siblings).
    pub fn root_of_hash(&self, leaf: B256) -> Option<B256> {
        if self.index >= self.leaf_count || self.siblings.len() > MERKLE_PROOF_DEPTH_MAX {
            return None;
        }
        let mut current = leaf;
        let mut position = self.index;
        let mut width = self.leaf_count;
        let mut siblings = self.siblings.iter();
        while width > 1 {
            let carried_up = position == width - 1 && width % 2 == 1;
            if !carried_up {
                let sibling = siblings.next()?;
                current = if position.is_multiple_of(2) {
                    node_hash(&current, sibling)
                } else {
                    node_hash(sibling, &current)
                };
            }
            position /= 2;
            width = width.div_ceil(2);
        }
        siblings.next().is_none().then_some(current)
    }
}

impl Encode for MerkleProof {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.leaf_count.to_be_bytes());
        put_list(out, &self.siblings);
    }
}

impl Decode for MerkleProof {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(MerkleProof {
            index: decoder.u32()?,
            leaf_count: decoder.u32()?,
            siblings: decoder.list("merkle proof siblings", MERKLE_PROOF_DEPTH_MAX)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn distinct_lists_have_distinct_roots() {
        let a: Vec<&[u8]> = vec![b"a", b"b", b"c"];
        let b: Vec<&[u8]> = vec![b"a", b"b", b"c", b"c"];
        assert_ne!(merkle_root(a), merkle_root(b));
        assert_eq!(merkle_root(Vec::<&[u8]>::new()), empty_root());
        assert_eq!(merkle_root(vec![&b"a"[..]]), leaf_hash(b"a"));
    }

    proptest! {
        #[test]
        fn every_leaf_proves_and_tampering_fails(
            leaves in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..70),
            flip in any::<prop::sample::Index>(),
        ) {
            let tree = MerkleTree::from_leaves(leaves.iter().map(Vec::as_slice));
            let root = tree.root();
            for (index, leaf) in leaves.iter().enumerate() {
                let proof = tree.proof(index).expect("leaf exists");
                prop_assert!(proof.verify(leaf, &root));
                let decoded = MerkleProof::from_bytes(&proof.to_bytes()).expect("round trip");
                prop_assert_eq!(&decoded, &proof);

                let mut other_leaf = leaf.clone();
                other_leaf.push(1);
                prop_assert!(!proof.verify(&other_leaf, &root));

                if !proof.siblings.is_empty() {
                    let mut tampered = proof.clone();
                    let which = flip.index(tampered.siblings.len());
                    tampered.siblings[which].0[0] ^= 1;
                    prop_assert!(!tampered.verify(leaf, &root));
                }
                if leaves.len() > 1 {
                    let mut moved = proof.clone();
                    moved.index = (moved.index + 1) % moved.leaf_count;
                    prop_assert!(!moved.verify(leaf, &root) || leaves[moved.index as usize] == *leaf);
                }
            }
        }
    }
}
