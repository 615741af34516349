//! The output tree: an append-only Merkle tree of [`TREE_DEPTH`] levels in which every branch
//! node has three children, hashed with Poseidon (domain `NODE`). Leaves are output
//! commitments; an empty leaf is zero, and an empty subtree hashes to a precomputed constant, so
//! the tree stores only the nodes that have been filled.

use std::{collections::HashMap, sync::OnceLock};

use ark_bn254::Fr;
use ark_ff::Zero;

use crate::{
    constants::{TREE_ARITY, TREE_DEPTH, TREE_LEAVES_MAX, domain},
    error::AssetsError,
    poseidon,
};

/// The hash of a branch node from its three children.
pub fn hash_node(children: &[Fr; TREE_ARITY]) -> Fr {
    poseidon::hash(domain::NODE, children)
}

/// `empty_roots()[level]` is the root of an empty subtree of height `level` (level 0 is an empty
/// leaf).
pub fn empty_roots() -> &'static [Fr; TREE_DEPTH + 1] {
    static EMPTY: OnceLock<[Fr; TREE_DEPTH + 1]> = OnceLock::new();
    EMPTY.get_or_init(|| {
        let mut empty = [Fr::zero(); TREE_DEPTH + 1];
        for level in 1..=TREE_DEPTH {
            let below = empty[level - 1];
            empty[level] = hash_node(&[below, below, below]);
        }
        empty
    })
}

/// The way from a leaf to the root: at each level, the leaf's position among its siblings
/// (0, 1 or 2) and the two other children, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerklePath {
    /// Position of the path's node among the three children, from the leaf level up.
    pub positions: [u8; TREE_DEPTH],
    /// The two other children at each level, left to right, from the leaf level up.
    pub siblings: [[Fr; 2]; TREE_DEPTH],
}

impl MerklePath {
    /// The leaf index this path encodes: its positions read as base-3 digits.
    pub fn leaf_index(&self) -> u64 {
        self.positions.iter().rev().fold(0u64, |index, position| {
            index * TREE_ARITY as u64 + u64::from(*position)
        })
    }

    /// The root reached from `leaf` along this path, or `None` if a position is not 0, 1 or 2.
    pub fn root_from(&self, leaf: Fr) -> Option<Fr> {
        let mut node = leaf;
        for (position, [first, second]) in self.positions.iter().zip(self.siblings.iter()) {
            let children = match position {
                0 => [node, *first, *second],
                1 => [*first, node, *second],
                2 => [*first, *second, node],
                _ => return None,
            };
            node = hash_node(&children);
        }
        Some(node)
    }
}

/// The append-only output tree. Holds every filled node; empty ones are implied.
#[derive(Debug, Clone)]
pub struct OutputTree {
    /// `levels[l]` holds the filled nodes of level `l`, left to right (level 0: the leaves).
    levels: Vec<Vec<Fr>>,
    root: Fr,
}

impl Default for OutputTree {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            levels: vec![Vec::new(); TREE_DEPTH],
            root: empty_roots()[TREE_DEPTH],
        }
    }

    /// The current root.
    pub fn root(&self) -> Fr {
        self.root
    }

    /// Leaves appended so far.
    pub fn len(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Whether no leaf was appended yet.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The leaf at `index`.
    pub fn leaf(&self, index: u64) -> Option<Fr> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels[0].get(i).copied())
    }

    /// Whether one more leaf fits.
    pub fn check_room(&self) -> Result<(), AssetsError> {
        if self.len() >= TREE_LEAVES_MAX {
            return Err(AssetsError::TreeFull {
                max: TREE_LEAVES_MAX,
            });
        }
        Ok(())
    }

    /// Appends `leaf` and returns its index; updates the nodes on its path.
    pub fn append(&mut self, leaf: Fr) -> Result<u64, AssetsError> {
        self.check_room()?;
        let index = self.len();
        self.levels[0].push(leaf);
        let mut node_index = index as usize;
        let mut node = leaf;
        for level in 0..TREE_DEPTH {
            let first = node_index - node_index % TREE_ARITY;
            let children = std::array::from_fn(|i| self.node(level, first + i));
            node = hash_node(&children);
            node_index /= TREE_ARITY;
            if level + 1 < TREE_DEPTH {
                let parents = &mut self.levels[level + 1];
                if node_index < parents.len() {
                    parents[node_index] = node;
                } else {
                    assert_eq!(
                        node_index,
                        parents.len(),
                        "parents are filled left to right"
                    );
                    parents.push(node);
                }
            }
        }
        self.root = node;
        Ok(index)
    }

    /// The path of the leaf at `index` to the current root.
    pub fn path(&self, index: u64) -> Result<MerklePath, AssetsError> {
        if index >= self.len() {
            return Err(AssetsError::NoSuchLeaf { index });
        }
        let mut positions = [0u8; TREE_DEPTH];
        let mut siblings = [[Fr::zero(); 2]; TREE_DEPTH];
        let mut node_index = index as usize;
        for level in 0..TREE_DEPTH {
            let position = node_index % TREE_ARITY;
            let first = node_index - position;
            let others: Vec<Fr> = (0..TREE_ARITY)
                .filter(|i| *i != position)
                .map(|i| self.node(level, first + i))
                .collect();
            positions[level] = position as u8;
            siblings[level] = [others[0], others[1]];
            node_index /= TREE_ARITY;
        }
        let path = MerklePath {
            positions,
            siblings,
        };
        debug_assert_eq!(
            path.root_from(self.levels[0][index as usize]),
            Some(self.root)
        );
        Ok(path)
    }

    /// Where `leaves` would be appended, in order, without appending them: for each, its path
    /// in the tree as it would be just before it is appended (so from an empty leaf, zero, the
    /// path reaches the root before it, and from the leaf the root after it), and the root after
    /// all of them. A zero leaf leaves the root as it is: that is how a withdraw's second
    /// output, which never enters the tree, is proven.
    pub fn append_paths(&self, leaves: &[Fr]) -> Result<(Vec<MerklePath>, Fr), AssetsError> {
        if self.len() + leaves.len() as u64 > TREE_LEAVES_MAX {
            return Err(AssetsError::TreeFull {
                max: TREE_LEAVES_MAX,
            });
        }
        let mut overlay: HashMap<(usize, usize), Fr> = HashMap::new();
        let mut paths = Vec::with_capacity(leaves.len());
        let mut root = self.root;
        for (offset, leaf) in leaves.iter().enumerate() {
            let index = self.levels[0].len() + offset;
            let node_at = |overlay: &HashMap<(usize, usize), Fr>, level: usize, at: usize| {
                overlay
                    .get(&(level, at))
                    .copied()
                    .unwrap_or_else(|| self.node(level, at))
            };
            let path = self.path_with(index, |level, at| node_at(&overlay, level, at));
            debug_assert_eq!(path.root_from(Fr::zero()), Some(root));
            overlay.insert((0, index), *leaf);
            let mut node_index = index;
            let mut node = *leaf;
            for level in 0..TREE_DEPTH {
                let first = node_index - node_index % TREE_ARITY;
                let children = std::array::from_fn(|i| node_at(&overlay, level, first + i));
                node = hash_node(&children);
                node_index /= TREE_ARITY;
                overlay.insert((level + 1, node_index), node);
            }
            root = node;
            debug_assert_eq!(path.root_from(*leaf), Some(root));
            paths.push(path);
        }
        Ok((paths, root))
    }

    /// The path of leaf `index` with nodes read through `node_at(level, index)`.
    fn path_with(&self, index: usize, node_at: impl Fn(usize, usize) -> Fr) -> MerklePath {
        let mut positions = [0u8; TREE_DEPTH];
        let mut siblings = [[Fr::zero(); 2]; TREE_DEPTH];
        let mut node_index = index;
        for level in 0..TREE_DEPTH {
            let position = node_index % TREE_ARITY;
            let first = node_index - position;
            let mut others = (0..TREE_ARITY)
                .filter(|i| *i != position)
                .map(|i| node_at(level, first + i));
            positions[level] = position as u8;
            siblings[level] = [
                others.next().expect("three children"),
                others.next().expect("three children"),
            ];
            node_index /= TREE_ARITY;
        }
        MerklePath {
            positions,
            siblings,
        }
    }

    fn node(&self, level: usize, index: usize) -> Fr {
        self.levels[level]
            .get(index)
            .copied()
            .unwrap_or(empty_roots()[level])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lead_to_the_root_and_encode_their_index() {
        let mut tree = OutputTree::new();
        assert_eq!(tree.root(), empty_roots()[TREE_DEPTH]);
        let mut roots = vec![tree.root()];
        for i in 0..11u64 {
            assert_eq!(tree.append(Fr::from(100 + i)), Ok(i));
            roots.push(tree.root());
        }
        // Each append changes the root.
        for pair in roots.windows(2) {
            assert_ne!(pair[0], pair[1]);
        }
        for i in 0..11u64 {
            let path = tree.path(i).expect("leaf exists");
            assert_eq!(path.leaf_index(), i);
            assert_eq!(path.root_from(Fr::from(100 + i)), Some(tree.root()));
            // Another leaf on the same path does not reach the root.
            assert_ne!(path.root_from(Fr::from(999)), Some(tree.root()));
        }
        assert_eq!(tree.path(11), Err(AssetsError::NoSuchLeaf { index: 11 }));
    }

    #[test]
    fn append_paths_predict_the_appends_and_change_nothing() {
        let mut tree = OutputTree::new();
        for i in 0..4u64 {
            tree.append(Fr::from(50 + i)).expect("room");
        }
        let before = tree.root();
        let leaves = [Fr::from(7u64), Fr::from(8u64)];
        let (paths, root) = tree.append_paths(&leaves).expect("room");
        assert_eq!(tree.root(), before);
        assert_eq!(paths[0].leaf_index(), 4);
        assert_eq!(paths[1].leaf_index(), 5);
        assert_eq!(paths[0].root_from(Fr::zero()), Some(before));
        let middle = paths[0].root_from(leaves[0]).expect("positions");
        assert_eq!(paths[1].root_from(Fr::zero()), Some(middle));
        assert_eq!(paths[1].root_from(leaves[1]), Some(root));
        tree.append(leaves[0]).expect("room");
        assert_eq!(tree.root(), middle);
        tree.append(leaves[1]).expect("room");
        assert_eq!(tree.root(), root);
        // A zero leaf proves nothing changed: the root stays.
        let (_, same) = tree.append_paths(&[Fr::zero()]).expect("room");
        assert_eq!(same, tree.root());
    }

    #[test]
    fn root_matches_a_tree_hashed_from_scratch() {
        let mut tree = OutputTree::new();
        let leaves: Vec<Fr> = (0..4u64).map(|i| Fr::from(7 + i)).collect();
        for leaf in &leaves {
            tree.append(*leaf).expect("room");
        }
        let empty = empty_roots();
        let level1_first = hash_node(&[leaves[0], leaves[1], leaves[2]]);
        let level1_second = hash_node(&[leaves[3], empty[0], empty[0]]);
        let mut node = hash_node(&[level1_first, level1_second, empty[1]]);
        for empty_sibling in &empty[2..TREE_DEPTH] {
            node = hash_node(&[node, *empty_sibling, *empty_sibling]);
        }
        assert_eq!(tree.root(), node);
    }
}
