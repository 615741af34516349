//! A compact sparse Merkle trie over fixed-length keys, split by key bits, hashed with blake3.
//!
//! The trie is defined by its leaves alone, so two states with the same items have the same root
//! whatever order they were written in. The hash of the subtree under a key prefix is:
//! - [`EMPTY`] when no leaf is under it;
//! - the leaf's hash when exactly one is (a leaf sits at the shallowest depth where it is alone);
//! - otherwise the hash of the pair (left subtree, right subtree), split on the next key bit.
//!
//! So the root of any key prefix is defined, and is what [`prefix_root`] returns: the account
//! trie is keyed by raw address bits, so the addresses an address state group holds, a union of
//! prefix subtrees under the XOR metric, commit to a handful of prefix roots.
//!
//! Nodes are stored by their path (depth and prefix bits), behind [`NodeSource`]: an update reads
//! only the nodes on the paths of the changed keys and writes only those, so its cost grows with
//! the items changed and the depth (about log2 of the leaves), never with the size of the state.
//! Leaf and branch hashes are domain-separated, so a proof can never pass one off as the other.

use std::{collections::BTreeMap, sync::LazyLock};

use alloy_primitives::B256;
use primitives::{Decode, DecodeError, Decoder, Encode};

/// The hash of an empty subtree.
pub const EMPTY: B256 = B256::ZERO;

static LEAF_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key("tickrate state trie leaf v1"));
static BRANCH_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key("tickrate state trie branch v1"));

/// The hash of a leaf: its whole key and the hash of its value.
pub fn leaf_hash<const N: usize>(key: &[u8; N], value: &B256) -> B256 {
    let mut hasher = LEAF_HASHER.clone();
    hasher.update(key);
    hasher.update(value.as_slice());
    B256::from(*hasher.finalize().as_bytes())
}

/// The hash of a branch from its two subtrees' hashes.
pub fn branch_hash(left: &B256, right: &B256) -> B256 {
    let mut hasher = BRANCH_HASHER.clone();
    hasher.update(left.as_slice());
    hasher.update(right.as_slice());
    B256::from(*hasher.finalize().as_bytes())
}

/// Bit `index` of `key`, most significant bit of the first byte first.
pub fn bit(key: &[u8], index: usize) -> u8 {
    (key[index / 8] >> (7 - index % 8)) & 1
}

/// Where a node sits: the first `depth` bits shared by every key below it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodePath {
    depth: u16,
    /// The prefix bits, packed, with every bit past `depth` zero.
    bits: Vec<u8>,
}

impl NodePath {
    /// The root's path.
    pub fn root() -> Self {
        NodePath {
            depth: 0,
            bits: Vec::new(),
        }
    }

    /// How many key bits the path fixes.
    pub fn depth(&self) -> usize {
        usize::from(self.depth)
    }

    /// The path one bit deeper, towards `side` (0 or 1).
    pub fn child(&self, side: u8) -> Self {
        let depth = self.depth();
        let mut bits = self.bits.clone();
        if depth.is_multiple_of(8) {
            bits.push(0);
        }
        if side == 1 {
            bits[depth / 8] |= 0x80 >> (depth % 8);
        }
        NodePath {
            depth: self.depth + 1,
            bits,
        }
    }

    /// The bytes a store keys the node by: the depth, then the packed prefix.
    pub fn store_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.depth.to_be_bytes());
        out.extend_from_slice(&self.bits);
    }
}

/// A stored node. Empty subtrees are not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node<const N: usize> {
    /// The one leaf of its subtree.
    Leaf {
        /// The leaf's whole key.
        key: [u8; N],
        /// The hash of its value.
        value: B256,
    },
    /// Two or more leaves below, or one branch below and nothing on the other side.
    Branch {
        /// The hash of the subtree whose next bit is 0.
        left: B256,
        /// The hash of the subtree whose next bit is 1.
        right: B256,
    },
}

const NODE_LEAF: u8 = 0;
const NODE_BRANCH: u8 = 1;

impl<const N: usize> Node<N> {
    /// The node's hash.
    pub fn hash(&self) -> B256 {
        match self {
            Node::Leaf { key, value } => leaf_hash(key, value),
            Node::Branch { left, right } => branch_hash(left, right),
        }
    }
}

impl<const N: usize> Encode for Node<N> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Node::Leaf { key, value } => {
                out.push(NODE_LEAF);
                out.extend_from_slice(key);
                out.extend_from_slice(value.as_slice());
            }
            Node::Branch { left, right } => {
                out.push(NODE_BRANCH);
                out.extend_from_slice(left.as_slice());
                out.extend_from_slice(right.as_slice());
            }
        }
    }
}

impl<const N: usize> Decode for Node<N> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match decoder.u8()? {
            NODE_LEAF => Ok(Node::Leaf {
                key: decoder.array()?,
                value: decoder.b256()?,
            }),
            NODE_BRANCH => Ok(Node::Branch {
                left: decoder.b256()?,
                right: decoder.b256()?,
            }),
            tag => Err(DecodeError::UnknownTag {
                what: "trie node",
                tag,
            }),
        }
    }
}

/// Where a trie's nodes are read from.
pub trait NodeSource<const N: usize> {
    /// Why a node could not be read.
    type Error;

    /// The node at `path`, or `None` if the subtree there is empty.
    fn node(&self, path: &NodePath) -> Result<Option<Node<N>>, Self::Error>;
}

/// The node writes an update makes: `None` deletes the node at that path.
pub type NodeWrites<const N: usize> = BTreeMap<NodePath, Option<Node<N>>>;

/// One key's change: its new value hash, or `None` to remove it.
pub type Change<const N: usize> = ([u8; N], Option<B256>);

/// Applies `changes` (sorted by key, no key twice) to the trie in `source` and returns the new
/// root hash and the node writes that take the store there. Reads only the nodes on the changed
/// keys' paths.
pub fn update<const N: usize, S: NodeSource<N>>(
    source: &S,
    changes: &[Change<N>],
) -> Result<(B256, NodeWrites<N>), S::Error> {
    debug_assert!(changes.windows(2).all(|pair| pair[0].0 < pair[1].0));
    let mut updater = Updater {
        source,
        writes: NodeWrites::new(),
    };
    let root_path = NodePath::root();
    let current = source.node(&root_path)?;
    let root = updater.update_at(&root_path, current, changes)?;
    let root_hash = root.as_ref().map_or(EMPTY, Node::hash);
    updater.writes.insert(root_path, root);
    Ok((root_hash, updater.writes))
}

struct Updater<'a, const N: usize, S> {
    source: &'a S,
    writes: NodeWrites<N>,
}

impl<const N: usize, S: NodeSource<N>> Updater<'_, N, S> {
    /// The node now at `path`, which held `current`, once `changes` (every key under `path`)
    /// are applied. Writes every changed node below `path`; the caller writes the one at it.
    fn update_at(
        &mut self,
        path: &NodePath,
        current: Option<Node<N>>,
        changes: &[Change<N>],
    ) -> Result<Option<Node<N>>, S::Error> {
        if changes.is_empty() {
            return Ok(current);
        }
        let (left_hash, right_hash) = match current {
            Some(Node::Branch { left, right }) => (left, right),
            Some(Node::Leaf { key, value }) => {
                // Nothing is stored below a leaf: rebuild the subtree from its leaves.
                let mut leaves: Vec<([u8; N], B256)> = changes
                    .iter()
                    .filter_map(|(key, value)| value.map(|value| (*key, value)))
                    .collect();
                if changes
                    .binary_search_by(|(changed, _)| changed.cmp(&key))
                    .is_err()
                {
                    let at = leaves.partition_point(|(other, _)| *other < key);
                    leaves.insert(at, (key, value));
                }
                return Ok(self.build(path, &leaves));
            }
            None => {
                let leaves: Vec<([u8; N], B256)> = changes
                    .iter()
                    .filter_map(|(key, value)| value.map(|value| (*key, value)))
                    .collect();
                return Ok(self.build(path, &leaves));
            }
        };
        let depth = path.depth();
        let split = changes.partition_point(|(key, _)| bit(key, depth) == 0);
        let (left_changes, right_changes) = changes.split_at(split);
        let left = self.update_child(path.child(0), left_hash, left_changes)?;
        let right = self.update_child(path.child(1), right_hash, right_changes)?;
        self.join(left, right)
    }

    /// Updates one child of a branch.
    fn update_child(
        &mut self,
        path: NodePath,
        hash: B256,
        changes: &[Change<N>],
    ) -> Result<Child<N>, S::Error> {
        if changes.is_empty() {
            return Ok(Child::Unchanged { path, hash });
        }
        let current = if hash == EMPTY {
            None
        } else {
            self.source.node(&path)?
        };
        let node = self.update_at(&path, current, changes)?;
        Ok(Child::Changed { path, node })
    }

    /// The node over two updated children: empty if both are, the leaf itself if the other side
    /// is empty (it moves up), a branch otherwise. Writes the children that stay below.
    fn join(&mut self, left: Child<N>, right: Child<N>) -> Result<Option<Node<N>>, S::Error> {
        let left_hash = left.hash();
        let right_hash = right.hash();
        let (only, empty) = match (left_hash == EMPTY, right_hash == EMPTY) {
            (true, false) => (right, left),
            (false, true) => (left, right),
            (true, true) | (false, false) => {
                left.write_into(&mut self.writes);
                right.write_into(&mut self.writes);
                return Ok((left_hash != EMPTY).then_some(Node::Branch {
                    left: left_hash,
                    right: right_hash,
                }));
            }
        };
        let node = match &only {
            Child::Changed { node, .. } => node.clone(),
            Child::Unchanged { path, .. } => self.source.node(path)?,
        };
        empty.write_into(&mut self.writes);
        if let Some(leaf @ Node::Leaf { .. }) = node {
            self.writes.insert(only.into_path(), None);
            return Ok(Some(leaf));
        }
        only.write_into(&mut self.writes);
        Ok(Some(Node::Branch {
            left: left_hash,
            right: right_hash,
        }))
    }

    /// The subtree at `path` holding exactly `leaves` (sorted), where nothing was stored below.
    fn build(&mut self, path: &NodePath, leaves: &[([u8; N], B256)]) -> Option<Node<N>> {
        match leaves {
            [] => None,
            [(key, value)] => Some(Node::Leaf {
                key: *key,
                value: *value,
            }),
            _ => {
                let depth = path.depth();
                let split = leaves.partition_point(|(key, _)| bit(key, depth) == 0);
                let (left_leaves, right_leaves) = leaves.split_at(split);
                let mut hashes = [EMPTY; 2];
                for (side, side_leaves) in [(0u8, left_leaves), (1u8, right_leaves)] {
                    let child_path = path.child(side);
                    if let Some(child) = self.build(&child_path, side_leaves) {
                        hashes[usize::from(side)] = child.hash();
                        self.writes.insert(child_path, Some(child));
                    }
                }
                Some(Node::Branch {
                    left: hashes[0],
                    right: hashes[1],
                })
            }
        }
    }
}

/// A branch's child during an update.
enum Child<const N: usize> {
    Unchanged {
        path: NodePath,
        hash: B256,
    },
    Changed {
        path: NodePath,
        node: Option<Node<N>>,
    },
}

impl<const N: usize> Child<N> {
    fn hash(&self) -> B256 {
        match self {
            Child::Unchanged { hash, .. } => *hash,
            Child::Changed { node, .. } => node.as_ref().map_or(EMPTY, Node::hash),
        }
    }

    fn write_into(self, writes: &mut NodeWrites<N>) {
        if let Child::Changed { path, node } = self {
            writes.insert(path, node);
        }
    }

    fn into_path(self) -> NodePath {
        match self {
            Child::Unchanged { path, .. } | Child::Changed { path, .. } => path,
        }
    }
}

/// The root of a trie holding exactly `leaves`, computed from scratch: the definition the
/// stored, incrementally updated trie must always agree with.
pub fn root_of<const N: usize>(leaves: &BTreeMap<[u8; N], B256>) -> B256 {
    prefix_root_of(leaves, 0)
}

/// The hash of the subtree under a `bits`-bit prefix that holds exactly `leaves` (all of which
/// start with that prefix), computed from scratch: what [`prefix_root`] must agree with.
pub fn prefix_root_of<const N: usize>(leaves: &BTreeMap<[u8; N], B256>, bits: usize) -> B256 {
    let leaves: Vec<([u8; N], B256)> = leaves.iter().map(|(key, value)| (*key, *value)).collect();
    subtree_root(&leaves, bits)
}

fn subtree_root<const N: usize>(leaves: &[([u8; N], B256)], depth: usize) -> B256 {
    match leaves {
        [] => EMPTY,
        [(key, value)] => leaf_hash(key, value),
        _ => {
            let split = leaves.partition_point(|(key, _)| bit(key, depth) == 0);
            let (left, right) = leaves.split_at(split);
            branch_hash(
                &subtree_root(left, depth + 1),
                &subtree_root(right, depth + 1),
            )
        }
    }
}

/// The hash of the subtree under the first `bits` bits of `prefix` (a key's first bytes;
/// `bits <= 8 * N`): [`EMPTY`] if no leaf is under it.
pub fn prefix_root<const N: usize, S: NodeSource<N>>(
    source: &S,
    prefix: &[u8; N],
    bits: usize,
) -> Result<B256, S::Error> {
    let bits = bits.min(8 * N);
    let mut path = NodePath::root();
    let mut node = source.node(&path)?;
    loop {
        match node {
            None => return Ok(EMPTY),
            Some(Node::Leaf { key, value }) => {
                let under =
                    (path.depth()..bits).all(|index| bit(&key, index) == bit(prefix, index));
                return Ok(if under {
                    leaf_hash(&key, &value)
                } else {
                    EMPTY
                });
            }
            Some(branch @ Node::Branch { .. }) if path.depth() == bits => return Ok(branch.hash()),
            Some(Node::Branch { left, right }) => {
                let side = bit(prefix, path.depth());
                let hash = if side == 0 { left } else { right };
                path = path.child(side);
                node = if hash == EMPTY {
                    None
                } else {
                    source.node(&path)?
                };
            }
        }
    }
}

/// What a proof ends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofEnd<const N: usize> {
    /// An empty subtree on the key's path: the key is absent.
    Empty,
    /// The one leaf of the subtree on the key's path: the key itself (present, with this value
    /// hash) or another key (the key is absent).
    Leaf {
        /// The leaf's key.
        key: [u8; N],
        /// The leaf's value hash.
        value: B256,
    },
}

/// A proof that a key holds a value, or is absent, under a root: the siblings along the key's
/// path from the root down, and what the path ends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrieProof<const N: usize> {
    /// The sibling subtree's hash at each depth, root first.
    pub siblings: Vec<B256>,
    /// What the key's path ends on.
    pub end: ProofEnd<N>,
}

/// Why a proof does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof is deeper than the key has bits.
    #[error("proof of depth {depth} for a {bits}-bit key")]
    TooDeep {
        /// The proof's depth.
        depth: usize,
        /// The key's bits.
        bits: usize,
    },
    /// The leaf it ends on is not on the key's path.
    #[error("the proof ends on a leaf off the key's path")]
    LeafOffPath,
    /// The path does not hash to the root.
    #[error("the proof does not hash to the root")]
    RootMismatch,
    /// The proof holds a value other than the one claimed.
    #[error("the proven value differs from the claimed one")]
    ValueMismatch,
}

/// Builds the proof for `key`.
pub fn prove<const N: usize, S: NodeSource<N>>(
    source: &S,
    key: &[u8; N],
) -> Result<TrieProof<N>, S::Error> {
    let mut path = NodePath::root();
    let mut node = source.node(&path)?;
    let mut siblings = Vec::new();
    loop {
        match node {
            None => {
                return Ok(TrieProof {
                    siblings,
                    end: ProofEnd::Empty,
                });
            }
            Some(Node::Leaf { key, value }) => {
                return Ok(TrieProof {
                    siblings,
                    end: ProofEnd::Leaf { key, value },
                });
            }
            Some(Node::Branch { left, right }) => {
                let side = bit(key, path.depth());
                let (next, sibling) = if side == 0 {
                    (left, right)
                } else {
                    (right, left)
                };
                siblings.push(sibling);
                path = path.child(side);
                node = if next == EMPTY {
                    None
                } else {
                    source.node(&path)?
                };
            }
        }
    }
}

impl<const N: usize> TrieProof<N> {
    /// The value hash the proof shows `key` holding under `root`, or `None` if it shows the key
    /// absent.
    pub fn verify(&self, root: &B256, key: &[u8; N]) -> Result<Option<B256>, ProofError> {
        let depth = self.siblings.len();
        if depth > 8 * N {
            return Err(ProofError::TooDeep { depth, bits: 8 * N });
        }
        let (mut hash, value) = match &self.end {
            ProofEnd::Empty => (EMPTY, None),
            ProofEnd::Leaf { key: leaf, value } => {
                if (0..depth).any(|index| bit(leaf, index) != bit(key, index)) {
                    return Err(ProofError::LeafOffPath);
                }
                (leaf_hash(leaf, value), (leaf == key).then_some(*value))
            }
        };
        for (index, sibling) in self.siblings.iter().enumerate().rev() {
            hash = if bit(key, index) == 0 {
                branch_hash(&hash, sibling)
            } else {
                branch_hash(sibling, &hash)
            };
        }
        if hash != *root {
            return Err(ProofError::RootMismatch);
        }
        Ok(value)
    }
}

const PROOF_END_EMPTY: u8 = 0;
const PROOF_END_LEAF: u8 = 1;

impl<const N: usize> Encode for TrieProof<N> {
    fn encode(&self, out: &mut Vec<u8>) {
        primitives::codec::put_list(out, &self.siblings);
        match &self.end {
            ProofEnd::Empty => out.push(PROOF_END_EMPTY),
            ProofEnd::Leaf { key, value } => {
                out.push(PROOF_END_LEAF);
                out.extend_from_slice(key);
                value.encode(out);
            }
        }
    }
}

impl<const N: usize> Decode for TrieProof<N> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let siblings = decoder.list("trie proof siblings", 8 * N)?;
        let end = match decoder.u8()? {
            PROOF_END_EMPTY => ProofEnd::Empty,
            PROOF_END_LEAF => ProofEnd::Leaf {
                key: decoder.array()?,
                value: decoder.b256()?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "trie proof end",
                    tag,
                });
            }
        };
        Ok(TrieProof { siblings, end })
    }
}

/// A trie held in memory: the node store of tests and of one-off computations.
#[derive(Clone, Debug, Default)]
pub struct MemoryTrie<const N: usize> {
    nodes: BTreeMap<NodePath, Node<N>>,
    root: B256,
}

impl<const N: usize> NodeSource<N> for MemoryTrie<N> {
    type Error = std::convert::Infallible;

    fn node(&self, path: &NodePath) -> Result<Option<Node<N>>, Self::Error> {
        Ok(self.nodes.get(path).cloned())
    }
}

impl<const N: usize> MemoryTrie<N> {
    /// An empty trie.
    pub fn new() -> Self {
        MemoryTrie {
            nodes: BTreeMap::new(),
            root: EMPTY,
        }
    }

    /// The root hash.
    pub fn root(&self) -> B256 {
        self.root
    }

    /// How many nodes are stored.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Applies sorted, distinct changes and returns the new root.
    pub fn apply(&mut self, changes: &[Change<N>]) -> B256 {
        let Ok((root, writes)) = update(self, changes);
        for (path, node) in writes {
            match node {
                Some(node) => self.nodes.insert(path, node),
                None => self.nodes.remove(&path),
            };
        }
        self.root = root;
        root
    }

    /// The proof for `key`.
    pub fn prove(&self, key: &[u8; N]) -> TrieProof<N> {
        let Ok(proof) = prove(self, key);
        proof
    }

    /// The root of the subtree under the first `bits` bits of `prefix`.
    pub fn prefix_root(&self, prefix: &[u8; N], bits: usize) -> B256 {
        let Ok(root) = prefix_root(self, prefix, bits);
        root
    }
}

#[cfg(test)]
mod tests;
