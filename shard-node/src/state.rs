//! The state one node holds: its addresses in an [`execution::DurableState`] on RocksDB, the
//! writes of the batch being executed on top, and the roots and proofs of its groups.
//!
//! **Reads** see the stored state as of the last batch with this batch's writes so far over it.
//! **Writes** of a move go to an overlay; [`NodeState::commit`] writes the batch's overlay as one
//! atomic RocksDB batch at the batch's number, so a reopened node is at the end of some batch
//! and resumes at the next one without re-executing anything.
//!
//! **A group's root** is the root of the account trie that holds exactly the group's addresses:
//! the same trie (compact sparse Merkle trie by address bits, [`execution::trie`]) that a store
//! holding only those accounts would have, so anyone can recompute it from the group's accounts
//! alone, and it does not depend on which other groups the node also serves. It is computed from
//! the node's own trie, whose keys are the raw address bits: descending from the top, a subtree
//! under a prefix whose every address belongs to the group ([`GroupMap::constant_over`]) is taken
//! whole (its stored root), one whose every address belongs to other groups counts as empty, a
//! single leaf counts if its own address is the group's, and only subtrees mixing groups are
//! descended. Subtree summaries and group roots are cached and forgotten along the paths of the
//! addresses a batch writes, so the work per batch grows with what the batch changed.
//!
//! **A shipped slice** (the items of a move's list held by another group) is the stored values as
//! of the last batch with a [`SliceProof`] against the group's root: the node's own proof of each
//! account with its path above the group's whole subtrees replaced by the path in the group's
//! trie. It verifies with [`SliceProof::verify`] against the group's root.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use execution::{
    AccountDiff, AccountSlice, DurableState, SliceProof, StateDiff, StateError, StateSlice,
    trie::{EMPTY, ProofEnd, TrieProof, branch_hash, leaf_hash},
};
use primitives::{AccountAccess, Address, B256, Bytes, SlotAccess, SpaceAccessList, U256};

use crate::groups::{ADDRESS_BITS, Group, GroupMap, Prefix, bit};

/// Why a node's state could not be read, written or proven.
#[derive(Debug, thiserror::Error)]
pub enum NodeStateError {
    /// The store's directory could not be created.
    #[error("state directory: {0}")]
    Io(#[from] std::io::Error),
    /// The store failed or holds a damaged record.
    #[error(transparent)]
    Store(#[from] StateError),
    /// The stored trie contradicts itself (a summary and a proof of the same state disagree).
    #[error("inconsistent account trie at a {depth}-bit prefix: {what}")]
    Inconsistent {
        /// The prefix length.
        depth: usize,
        /// What disagreed.
        what: &'static str,
    },
}

/// The account trie's subtree under some prefix, as far as a parent needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subtree {
    /// No account under the prefix.
    Empty,
    /// Exactly one account: its key and value hash.
    Leaf {
        /// The address bytes.
        key: [u8; 20],
        /// The value hash of its record.
        value: B256,
    },
    /// Two or more accounts: the subtree's hash.
    Many(B256),
}

impl Subtree {
    /// The subtree's hash.
    pub fn hash(&self) -> B256 {
        match self {
            Subtree::Empty => EMPTY,
            Subtree::Leaf { key, value } => leaf_hash(key, value),
            Subtree::Many(hash) => *hash,
        }
    }

    /// The subtree of a prefix from those of its two halves.
    fn join(left: Subtree, right: Subtree) -> Subtree {
        match (left, right) {
            (Subtree::Empty, Subtree::Empty) => Subtree::Empty,
            (leaf @ Subtree::Leaf { .. }, Subtree::Empty)
            | (Subtree::Empty, leaf @ Subtree::Leaf { .. }) => leaf,
            (left, right) => Subtree::Many(branch_hash(&left.hash(), &right.hash())),
        }
    }
}

/// One node of a group's trie, as its root computation found it.
#[derive(Clone, Debug)]
struct ViewNode {
    subtree: Subtree,
    /// Every address under the prefix is the group's: below it the group's trie is the node's.
    whole: bool,
}

/// A group's trie over the node's stored one: the non-empty subtrees its root was built from.
#[derive(Clone, Debug, Default)]
struct GroupView {
    nodes: HashMap<Prefix, ViewNode>,
}

impl GroupView {
    fn root(&self) -> B256 {
        self.nodes
            .get(&Prefix::ROOT)
            .map_or(EMPTY, |node| node.subtree.hash())
    }
}

/// The state one node holds (see the module documentation).
pub struct NodeState {
    dir: PathBuf,
    durable: DurableState,
    /// This batch's writes, merged by address, not yet stored.
    pending: BTreeMap<Address, AccountDiff>,
    /// Code by hash (code never changes under a hash).
    code: HashMap<B256, Bytes>,
    /// Summaries of the stored account trie by prefix, as of the last batch.
    subtrees: HashMap<Prefix, Subtree>,
    /// Group tries by group ID, as of the last batch.
    views: HashMap<B256, GroupView>,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("dir", &self.dir)
            .field("height", &self.durable.height())
            .field("root", &self.durable.root())
            .finish_non_exhaustive()
    }
}

/// Code entries cached at most per node; past it the cache starts over.
const CODE_CACHE_MAX: usize = 4_096;
/// Trie summaries cached at most per node; past it the cache starts over.
const SUBTREE_CACHE_MAX: usize = 1 << 18;

impl NodeState {
    /// Opens the node's store in `dir`, creating an empty one if there is none.
    pub fn open(dir: impl AsRef<Path>) -> Result<NodeState, NodeStateError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(NodeStateError::Io)?;
        let durable = DurableState::open(&dir)?;
        Ok(NodeState {
            dir,
            durable,
            pending: BTreeMap::new(),
            code: HashMap::new(),
            subtrees: HashMap::new(),
            views: HashMap::new(),
        })
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last batch stored (0 for genesis), or `None` before genesis.
    pub fn height(&self) -> Option<u64> {
        self.durable.height()
    }

    /// The root of everything the node stores (all its groups' addresses), as of the last batch.
    pub fn root(&self) -> B256 {
        self.durable.root()
    }

    /// Whether writes are waiting for [`NodeState::commit`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Applies one move's writes to the addresses of `diff` (all of which the node holds).
    pub fn apply(&mut self, diff: &StateDiff) {
        for (address, change) in &diff.accounts {
            merge_change(self.pending.entry(*address).or_default(), change);
        }
    }

    /// Drops the writes not yet stored (a batch that did not finish).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Stores this batch's writes as batch `number` (every batch is stored, written to or not, so
    /// the height follows the batches), and forgets the summaries and group tries they changed.
    pub fn commit(&mut self, number: u64, groups: &mut GroupMap) -> Result<B256, NodeStateError> {
        let diff = StateDiff {
            accounts: std::mem::take(&mut self.pending),
        };
        let root = match self.durable.apply(number, [&diff]) {
            Ok(root) => root,
            Err(error) => {
                self.pending = diff.accounts;
                return Err(error.into());
            }
        };
        for address in diff.accounts.keys() {
            for len in 0..=ADDRESS_BITS {
                self.subtrees.remove(&Prefix::of(&address.0.0, len));
            }
            self.views.remove(&groups.group_of(address).id);
        }
        Ok(root)
    }

    /// Every address the node stores an account for, as of the last batch.
    pub fn addresses(&self) -> Result<Vec<Address>, NodeStateError> {
        Ok(self.durable.addresses()?)
    }

    /// The access that reads every slot the node stores for `address`: what a member ships to
    /// a node taking the account over.
    pub fn whole_access(&self, address: &Address) -> Result<AccountAccess, NodeStateError> {
        let account = self.durable.account_state(address)?;
        Ok(AccountAccess {
            storage: account
                .storage
                .keys()
                .map(|slot| SlotAccess {
                    slot: *slot,
                    write: None,
                })
                .collect(),
            ..AccountAccess::read(*address)
        })
    }

    /// The storage root of the account at `address` as of the last batch.
    pub fn storage_root(&self, address: &Address) -> Result<B256, NodeStateError> {
        Ok(self
            .durable
            .account(address)?
            .map_or(EMPTY, |record| record.storage_root))
    }

    /// Stores accounts this node takes over from other members, whole, and drops the accounts
    /// it no longer holds (`released`), as part of batch `at` (the batch it is at, or starts at
    /// if its store is empty); forgets every summary.
    pub fn import(
        &mut self,
        at: u64,
        accounts: &BTreeMap<Address, AccountSlice>,
        released: &[Address],
    ) -> Result<B256, NodeStateError> {
        if self.has_pending() {
            return Err(NodeStateError::Inconsistent {
                depth: 0,
                what: "an import while a batch's writes are pending",
            });
        }
        let mut diff = StateDiff::default();
        for address in released {
            // Every field zero and every slot cleared: the store deletes the account.
            let held = self.durable.account_state(address)?;
            let change = AccountDiff {
                balance: Some(U256::ZERO),
                nonce: Some(0),
                code: Some(Bytes::new()),
                storage: held
                    .storage
                    .keys()
                    .map(|slot| (*slot, U256::ZERO))
                    .collect(),
            };
            diff.accounts.insert(*address, change);
        }
        for (address, account) in accounts {
            let held = self.durable.account_state(address)?;
            // Slots the node still holds from an earlier spell in this account's group, and
            // the shipment does not name, are zero now.
            let mut storage: BTreeMap<B256, U256> = held
                .storage
                .keys()
                .map(|slot| (*slot, U256::ZERO))
                .collect();
            storage.extend(account.storage.iter().map(|(slot, value)| (*slot, *value)));
            let change = AccountDiff {
                balance: Some(account.balance),
                nonce: Some(account.nonce),
                code: Some(account.code.clone()),
                storage,
            };
            diff.accounts.insert(*address, change);
        }
        let root = self.durable.import(at, &diff)?;
        self.forget_groups();
        Ok(root)
    }

    /// Forgets the group tries and trie summaries: the groups changed (a new registry epoch).
    pub fn forget_groups(&mut self) {
        self.views.clear();
        self.subtrees.clear();
    }

    /// The items of `access` as the node holds them now: stored values with this batch's
    /// writes over them.
    pub fn account_slice(
        &mut self,
        access: &AccountAccess,
    ) -> Result<AccountSlice, NodeStateError> {
        let mut slice = self.stored_slice(access)?;
        if let Some(change) = self.pending.get(&access.address) {
            overlay(&mut slice, change);
        }
        Ok(slice)
    }

    /// The items of `access` as of the last batch.
    fn stored_slice(&mut self, access: &AccountAccess) -> Result<AccountSlice, NodeStateError> {
        let record = self.durable.account(&access.address)?.unwrap_or_default();
        let code = match self.code.get(&record.code_hash) {
            Some(code) => code.clone(),
            None => {
                let code = self.durable.code(&record.code_hash)?;
                if self.code.len() >= CODE_CACHE_MAX {
                    self.code.clear();
                }
                self.code.insert(record.code_hash, code.clone());
                code
            }
        };
        let mut storage = BTreeMap::new();
        for slot in &access.storage {
            storage.insert(
                slot.slot,
                self.durable.storage(&access.address, &slot.slot)?,
            );
        }
        Ok(AccountSlice {
            balance: record.balance,
            nonce: record.nonce,
            code,
            storage,
        })
    }

    /// A storage slot as the node holds it now.
    pub fn storage(&self, address: &Address, slot: &B256) -> Result<U256, NodeStateError> {
        if let Some(value) = self
            .pending
            .get(address)
            .and_then(|change| change.storage.get(slot))
        {
            return Ok(*value);
        }
        Ok(self.durable.storage(address, slot)?)
    }

    /// An account's nonce as the node holds it now.
    pub fn nonce(&self, address: &Address) -> Result<u64, NodeStateError> {
        if let Some(nonce) = self.pending.get(address).and_then(|change| change.nonce) {
            return Ok(nonce);
        }
        Ok(self
            .durable
            .account(address)?
            .map_or(0, |record| record.nonce))
    }

    /// The root of `group`'s addresses as of the last batch (see the module documentation).
    pub fn group_root(
        &mut self,
        group: &Group,
        groups: &mut GroupMap,
    ) -> Result<B256, NodeStateError> {
        Ok(self.view(group, groups)?.root())
    }

    fn view(&mut self, group: &Group, groups: &mut GroupMap) -> Result<&GroupView, NodeStateError> {
        if !self.views.contains_key(&group.id) {
            let mut view = GroupView::default();
            self.restricted(Prefix::ROOT, group, groups, &mut view)?;
            self.views.insert(group.id, view);
        }
        Ok(&self.views[&group.id])
    }

    /// The subtree of `group`'s trie under `prefix`; records the non-empty ones in `view`.
    fn restricted(
        &mut self,
        prefix: Prefix,
        group: &Group,
        groups: &mut GroupMap,
        view: &mut GroupView,
    ) -> Result<Subtree, NodeStateError> {
        let stored = self.subtree(&prefix)?;
        let (subtree, whole) = match stored {
            Subtree::Empty => (Subtree::Empty, false),
            Subtree::Leaf { key, .. } => {
                if groups.group_of(&Address::from(key)).id == group.id {
                    (stored, true)
                } else {
                    (Subtree::Empty, false)
                }
            }
            Subtree::Many(_) => match groups.constant_over(&prefix) {
                Some(holder) if holder.id == group.id => (stored, true),
                Some(_) => (Subtree::Empty, false),
                None => {
                    let (Some(low), Some(high)) = (prefix.child(0), prefix.child(1)) else {
                        return Err(NodeStateError::Inconsistent {
                            depth: prefix.len(),
                            what: "two accounts under a whole address",
                        });
                    };
                    let left = self.restricted(low, group, groups, view)?;
                    let right = self.restricted(high, group, groups, view)?;
                    (Subtree::join(left, right), false)
                }
            },
        };
        if subtree != Subtree::Empty {
            view.nodes.insert(
                prefix,
                ViewNode {
                    subtree: subtree.clone(),
                    whole,
                },
            );
        }
        Ok(subtree)
    }

    /// The stored account trie's subtree under `prefix`, as of the last batch: read from the
    /// proof of the prefix's lowest address, which passes through it.
    fn subtree(&mut self, prefix: &Prefix) -> Result<Subtree, NodeStateError> {
        if let Some(subtree) = self.subtrees.get(prefix) {
            return Ok(subtree.clone());
        }
        let probe = prefix.start();
        let proof = self
            .durable
            .prove(&SpaceAccessList::new([AccountAccess::read(probe)]))?
            .accounts
            .into_iter()
            .next()
            .ok_or(NodeStateError::Inconsistent {
                depth: prefix.len(),
                what: "a proof without its account",
            })?
            .account;
        let depth = prefix.len();
        let subtree = if proof.siblings.len() > depth {
            // The path passes a branch at the prefix: fold the proof up to it.
            let mut hash = match &proof.end {
                ProofEnd::Empty => EMPTY,
                ProofEnd::Leaf { key, value } => leaf_hash(key, value),
            };
            for (index, sibling) in proof.siblings.iter().enumerate().skip(depth).rev() {
                hash = if bit(probe.as_slice(), index) == 0 {
                    branch_hash(&hash, sibling)
                } else {
                    branch_hash(sibling, &hash)
                };
            }
            Subtree::Many(hash)
        } else {
            match proof.end {
                ProofEnd::Leaf { key, value } if prefix.contains(&key) => {
                    Subtree::Leaf { key, value }
                }
                _ => Subtree::Empty,
            }
        };
        if self.subtrees.len() >= SUBTREE_CACHE_MAX {
            self.subtrees.clear();
        }
        self.subtrees.insert(*prefix, subtree.clone());
        Ok(subtree)
    }

    /// The items of `access` as of the last batch, with the proof that `group`'s root (as of the
    /// last batch) commits to them. The node must hold `access.address` in `group`.
    pub fn ship(
        &mut self,
        access: &AccountAccess,
        group: &Group,
        groups: &mut GroupMap,
    ) -> Result<(StateSlice, SliceProof), NodeStateError> {
        let list = SpaceAccessList::new([access.clone()]);
        let account = self.stored_slice(access)?;
        let mut proof = self.durable.prove(&list)?;
        let view = self.view(group, groups)?;
        for account in &mut proof.accounts {
            account.account = restrict(view, &account.address, &account.account)?;
        }
        let slice = StateSlice {
            accounts: BTreeMap::from([(access.address, account)]),
        };
        Ok((slice, proof))
    }
}

/// The proof of `address` in a group's trie, from its proof in the node's trie.
fn restrict(
    view: &GroupView,
    address: &Address,
    stored: &TrieProof<20>,
) -> Result<TrieProof<20>, NodeStateError> {
    let key = address.0.0;
    let mut prefix = Prefix::ROOT;
    let mut siblings = Vec::new();
    loop {
        let end = match view.nodes.get(&prefix) {
            None => ProofEnd::Empty,
            Some(ViewNode {
                subtree: Subtree::Leaf { key, value },
                ..
            }) => ProofEnd::Leaf {
                key: *key,
                value: *value,
            },
            Some(ViewNode {
                subtree: Subtree::Many(_),
                whole: true,
            }) => {
                // Below here the group's trie is the node's: the stored proof's lower part.
                if stored.siblings.len() <= prefix.len() {
                    return Err(NodeStateError::Inconsistent {
                        depth: prefix.len(),
                        what: "a proof ending above a branch",
                    });
                }
                siblings.extend_from_slice(&stored.siblings[prefix.len()..]);
                return Ok(TrieProof {
                    siblings,
                    end: stored.end.clone(),
                });
            }
            Some(_) => {
                let side = bit(&key, prefix.len());
                let (Some(next), Some(other)) = (prefix.child(side), prefix.child(1 - side)) else {
                    return Err(NodeStateError::Inconsistent {
                        depth: prefix.len(),
                        what: "a branch under a whole address",
                    });
                };
                siblings.push(
                    view.nodes
                        .get(&other)
                        .map_or(EMPTY, |node| node.subtree.hash()),
                );
                prefix = next;
                continue;
            }
        };
        return Ok(TrieProof { siblings, end });
    }
}

/// Merges a later change of one account over an earlier one.
pub fn merge_change(into: &mut AccountDiff, change: &AccountDiff) {
    if let Some(balance) = change.balance {
        into.balance = Some(balance);
    }
    if let Some(nonce) = change.nonce {
        into.nonce = Some(nonce);
    }
    if let Some(code) = &change.code {
        into.code = Some(code.clone());
    }
    into.storage
        .extend(change.storage.iter().map(|(slot, value)| (*slot, *value)));
}

/// Puts this batch's writes over stored values.
fn overlay(slice: &mut AccountSlice, change: &AccountDiff) {
    if let Some(balance) = change.balance {
        slice.balance = balance;
    }
    if let Some(nonce) = change.nonce {
        slice.nonce = nonce;
    }
    if let Some(code) = &change.code {
        slice.code = code.clone();
    }
    for (slot, value) in slice.storage.iter_mut() {
        if let Some(written) = change.storage.get(slot) {
            *value = *written;
        }
    }
}

/// Puts `writes` (this batch's so far) over the stored values of a shipped slice.
pub fn overlay_writes(slice: &mut StateSlice, writes: &BTreeMap<Address, AccountDiff>) {
    for (address, account) in slice.accounts.iter_mut() {
        if let Some(change) = writes.get(address) {
            overlay(account, change);
        }
    }
}

#[cfg(test)]
mod tests;
