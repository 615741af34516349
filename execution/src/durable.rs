//! The authenticated world state of a node, on RocksDB.
//!
//! Column families:
//! - `accounts`: address → [`AccountRecord`] (balance, nonce, code hash, storage root);
//! - `storage`: address ‖ slot → value (non-zero values only);
//! - `code`: code hash → runtime code;
//! - `account_trie` and `storage_trie` (address ‖ path): the nodes of the [`trie`](crate::trie)s,
//!   by path;
//! - `meta`: the height (the last batch applied) and the root.
//!
//! A batch's diffs are merged, staged (new records, storage tries and the account trie updated
//! along the changed paths only) and written in one atomic RocksDB write batch together with the
//! new height, so a reopened store is always at the end of some batch and resumes from
//! [`DurableState::height`] + 1 without re-executing anything. Writes are not fsynced: a store
//! that loses its last batches to a power cut is still at a consistent height, and the node
//! re-executes those batches from strong DA.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use primitives::{Decode, DecodeError, Encode, SpaceAccessList};
use rayon::prelude::*;
use revm::primitives::KECCAK_EMPTY;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch};

use crate::{
    diff::{AccountDiff, StateDiff},
    proof::{AccountProof, AccountRecord, SliceProof, slot_key, slot_value_hash},
    slice::{AccountSlice, StateSlice},
    state::{AccountState, InMemoryState},
    trie::{self, Change, EMPTY, Node, NodePath, NodeSource, NodeWrites},
};

const CF_ACCOUNTS: &str = "accounts";
const CF_STORAGE: &str = "storage";
const CF_CODE: &str = "code";
const CF_ACCOUNT_TRIE: &str = "account_trie";
const CF_STORAGE_TRIE: &str = "storage_trie";
const CF_META: &str = "meta";
const COLUMN_FAMILIES: [&str; 6] = [
    CF_ACCOUNTS,
    CF_STORAGE,
    CF_CODE,
    CF_ACCOUNT_TRIE,
    CF_STORAGE_TRIE,
    CF_META,
];
const META_HEIGHT: &[u8] = b"height";
const META_ROOT: &[u8] = b"root";

/// Why the durable state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB failed.
    #[error("state store: {0}")]
    Store(#[from] rocksdb::Error),
    /// A stored record does not decode: the store is damaged.
    #[error("corrupt {what} in the state store: {error}")]
    Corrupt {
        /// The record.
        what: &'static str,
        /// Why it does not decode.
        error: DecodeError,
    },
    /// An account names code the store does not hold.
    #[error("code {0} is missing from the state store")]
    MissingCode(B256),
    /// The batch is not the one after the store's height.
    #[error("batch {got} applied at height {height:?}: expected batch {expected}")]
    OutOfOrder {
        /// The store's height (`None` before genesis).
        height: Option<u64>,
        /// The batch the store expects next.
        expected: u64,
        /// The batch given.
        got: u64,
    },
}

fn decode<T: Decode>(what: &'static str, bytes: &[u8]) -> Result<T, StateError> {
    T::from_bytes(bytes).map_err(|error| StateError::Corrupt { what, error })
}

/// A batch's changes, computed and ready to be written by [`DurableState::commit`].
pub struct StagedBatch {
    number: u64,
    root: B256,
    writes: WriteBatch,
    items: usize,
}

impl std::fmt::Debug for StagedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedBatch")
            .field("number", &self.number)
            .field("root", &self.root)
            .field("items", &self.items)
            .finish()
    }
}

impl StagedBatch {
    /// The batch number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The state root once the batch is written.
    pub fn root(&self) -> B256 {
        self.root
    }

    /// How many records and trie nodes the batch writes or deletes.
    pub fn items(&self) -> usize {
        self.items
    }
}

/// One account's staged change.
struct StagedAccount {
    address: Address,
    record: AccountRecord,
    code: Option<Bytes>,
    storage: Vec<(B256, U256)>,
    storage_nodes: NodeWrites<32>,
}

/// The authenticated state on RocksDB (see the module documentation).
pub struct DurableState {
    db: DB,
    height: Option<u64>,
    root: B256,
}

impl std::fmt::Debug for DurableState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableState")
            .field("height", &self.height)
            .field("root", &self.root)
            .finish()
    }
}

impl DurableState {
    /// Opens the store at `path`, creating an empty one (no genesis yet) if there is none.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = COLUMN_FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let meta = cf(&db, CF_META);
        let height = db
            .get_pinned_cf(meta, META_HEIGHT)?
            .map(|bytes| decode::<u64>("height", &bytes))
            .transpose()?;
        let root = db
            .get_pinned_cf(meta, META_ROOT)?
            .map(|bytes| decode::<B256>("root", &bytes))
            .transpose()?
            .unwrap_or(EMPTY);
        Ok(DurableState { db, height, root })
    }

    /// The number of the last batch applied (0 for genesis), or `None` before genesis.
    pub fn height(&self) -> Option<u64> {
        self.height
    }

    /// The state root.
    pub fn root(&self) -> B256 {
        self.root
    }

    /// Writes `genesis` as batch 0 of an empty store.
    pub fn apply_genesis(&mut self, genesis: &InMemoryState) -> Result<B256, StateError> {
        let diff = StateDiff {
            accounts: genesis
                .accounts()
                .map(|(address, account)| {
                    let change = AccountDiff {
                        balance: Some(account.balance),
                        nonce: Some(account.nonce),
                        code: Some(account.code.clone()),
                        storage: account.storage.clone(),
                    };
                    (*address, change)
                })
                .collect(),
        };
        self.apply(0, [&diff])
    }

    /// Writes accounts a node takes over (state sync at an epoch boundary) as part of batch
    /// `at`, the batch the store is at (or, for an empty store, starts at): the height stays
    /// `at`, the root becomes that of the store with `diff` over it.
    pub fn import(&mut self, at: u64, diff: &StateDiff) -> Result<B256, StateError> {
        if self.height.is_some_and(|height| height != at) {
            return Err(StateError::OutOfOrder {
                height: self.height,
                expected: self.height.map_or(0, |height| height + 1),
                got: at,
            });
        }
        let staged = self.stage_unchecked(at, [diff])?;
        self.db.write(staged.writes)?;
        self.height = Some(staged.number);
        self.root = staged.root;
        Ok(staged.root)
    }

    /// Every address the store holds an account for, in order.
    pub fn addresses(&self) -> Result<Vec<Address>, StateError> {
        let mut addresses = Vec::new();
        for entry in self
            .db
            .iterator_cf(self.cf(CF_ACCOUNTS), rocksdb::IteratorMode::Start)
        {
            let (key, _) = entry?;
            let raw: [u8; 20] = key.as_ref().try_into().map_err(|_| StateError::Corrupt {
                what: "account key",
                error: DecodeError::Invalid {
                    what: "account key",
                    why: "not 20 bytes",
                },
            })?;
            addresses.push(Address::from(raw));
        }
        Ok(addresses)
    }

    /// The whole account at `address`: balance, nonce, code and every non-zero slot.
    pub fn account_state(&self, address: &Address) -> Result<AccountState, StateError> {
        let record = self.account(address)?.unwrap_or_default();
        let mut storage = BTreeMap::new();
        let start = rocksdb::IteratorMode::From(address.as_slice(), rocksdb::Direction::Forward);
        for entry in self.db.iterator_cf(self.cf(CF_STORAGE), start) {
            let (key, value) = entry?;
            let Some(slot) = key.strip_prefix(address.as_slice()) else {
                break;
            };
            let slot = B256::try_from(slot).map_err(|_| StateError::Corrupt {
                what: "storage key",
                error: DecodeError::Invalid {
                    what: "storage key",
                    why: "not an address and a 32-byte slot",
                },
            })?;
            let word: B256 = decode("storage value", &value)?;
            storage.insert(slot, U256::from_be_bytes(word.0));
        }
        Ok(AccountState {
            balance: record.balance,
            nonce: record.nonce,
            code: self.code(&record.code_hash)?,
            storage,
        })
    }

    /// Stages and writes batch `number`, whose moves changed `diffs` (in batch order).
    pub fn apply<'a>(
        &mut self,
        number: u64,
        diffs: impl IntoIterator<Item = &'a StateDiff>,
    ) -> Result<B256, StateError> {
        let staged = self.stage(number, diffs)?;
        self.commit(staged)
    }

    /// Computes what batch `number` writes and the root it leads to, without writing: accounts
    /// are staged in parallel, each with its storage trie, then the account trie is updated
    /// along the changed paths.
    pub fn stage<'a>(
        &self,
        number: u64,
        diffs: impl IntoIterator<Item = &'a StateDiff>,
    ) -> Result<StagedBatch, StateError> {
        self.check_next(number)?;
        self.stage_unchecked(number, diffs)
    }

    fn stage_unchecked<'a>(
        &self,
        number: u64,
        diffs: impl IntoIterator<Item = &'a StateDiff>,
    ) -> Result<StagedBatch, StateError> {
        let merged = merge(diffs);
        let accounts: Vec<StagedAccount> = merged
            .into_par_iter()
            .map(|(address, change)| self.stage_account(address, change))
            .collect::<Result<_, _>>()?;

        // Addresses are in order (the merge is a BTreeMap), which is the account trie's key order.
        let leaves: Vec<Change<20>> = accounts
            .iter()
            .map(|staged| {
                let value = (!staged.record.is_empty()).then(|| staged.record.value_hash());
                (staged.address.0.0, value)
            })
            .collect();
        let (root, account_nodes) = trie::update(&AccountTrie { db: &self.db }, &leaves)?;

        let mut writes = WriteBatch::default();
        let mut key = Vec::with_capacity(64);
        for staged in &accounts {
            let address = staged.address.as_slice();
            if staged.record.is_empty() {
                writes.delete_cf(self.cf(CF_ACCOUNTS), address);
            } else {
                writes.put_cf(self.cf(CF_ACCOUNTS), address, staged.record.to_bytes());
            }
            if let Some(code) = &staged.code
                && !code.is_empty()
            {
                writes.put_cf(self.cf(CF_CODE), staged.record.code_hash, code);
            }
            for (slot, value) in &staged.storage {
                key.clear();
                key.extend_from_slice(address);
                key.extend_from_slice(slot.as_slice());
                if value.is_zero() {
                    writes.delete_cf(self.cf(CF_STORAGE), &key);
                } else {
                    writes.put_cf(self.cf(CF_STORAGE), &key, value.to_be_bytes::<32>());
                }
            }
            for (path, node) in &staged.storage_nodes {
                key.clear();
                key.extend_from_slice(address);
                path.store_key(&mut key);
                put_node(&mut writes, self.cf(CF_STORAGE_TRIE), &key, node.as_ref());
            }
        }
        for (path, node) in &account_nodes {
            key.clear();
            path.store_key(&mut key);
            put_node(&mut writes, self.cf(CF_ACCOUNT_TRIE), &key, node.as_ref());
        }
        let meta = self.cf(CF_META);
        writes.put_cf(meta, META_HEIGHT, number.to_bytes());
        writes.put_cf(meta, META_ROOT, root.to_bytes());
        let items = writes.len();
        Ok(StagedBatch {
            number,
            root,
            writes,
            items,
        })
    }

    /// Writes a staged batch atomically. It must still be the next batch: a batch staged against
    /// an older height is refused.
    pub fn commit(&mut self, staged: StagedBatch) -> Result<B256, StateError> {
        self.check_next(staged.number)?;
        self.db.write(staged.writes)?;
        self.height = Some(staged.number);
        self.root = staged.root;
        Ok(staged.root)
    }

    fn check_next(&self, number: u64) -> Result<(), StateError> {
        let expected = self.height.map_or(0, |height| height + 1);
        if number == expected {
            Ok(())
        } else {
            Err(StateError::OutOfOrder {
                height: self.height,
                expected,
                got: number,
            })
        }
    }

    fn stage_account(
        &self,
        address: Address,
        change: AccountDiff,
    ) -> Result<StagedAccount, StateError> {
        let mut record = self.account(&address)?.unwrap_or_default();
        if let Some(balance) = change.balance {
            record.balance = balance;
        }
        if let Some(nonce) = change.nonce {
            record.nonce = nonce;
        }
        if let Some(code) = &change.code {
            record.code_hash = if code.is_empty() {
                KECCAK_EMPTY
            } else {
                keccak256(code)
            };
        }
        let mut storage_nodes = NodeWrites::new();
        if !change.storage.is_empty() {
            let mut slots: Vec<Change<32>> = change
                .storage
                .iter()
                .map(|(slot, value)| {
                    let hash = (!value.is_zero()).then(|| slot_value_hash(value));
                    (slot_key(slot), hash)
                })
                .collect();
            slots.sort_unstable_by_key(|(key, _)| *key);
            let source = StorageTrie {
                db: &self.db,
                address,
            };
            let (storage_root, nodes) = trie::update(&source, &slots)?;
            record.storage_root = storage_root;
            storage_nodes = nodes;
        }
        Ok(StagedAccount {
            address,
            record,
            code: change.code,
            storage: change.storage.into_iter().collect(),
            storage_nodes,
        })
    }

    /// The account at `address`, if it holds anything.
    pub fn account(&self, address: &Address) -> Result<Option<AccountRecord>, StateError> {
        self.db
            .get_pinned_cf(self.cf(CF_ACCOUNTS), address)?
            .map(|bytes| decode("account record", &bytes))
            .transpose()
    }

    /// The code with `code_hash`.
    pub fn code(&self, code_hash: &B256) -> Result<Bytes, StateError> {
        if *code_hash == KECCAK_EMPTY {
            return Ok(Bytes::new());
        }
        self.db
            .get_cf(self.cf(CF_CODE), code_hash)?
            .map(Bytes::from)
            .ok_or(StateError::MissingCode(*code_hash))
    }

    /// The value of one slot (zero if never written).
    pub fn storage(&self, address: &Address, slot: &B256) -> Result<U256, StateError> {
        let mut key = [0u8; 52];
        key[..20].copy_from_slice(address.as_slice());
        key[20..].copy_from_slice(slot.as_slice());
        match self.db.get_pinned_cf(self.cf(CF_STORAGE), key)? {
            None => Ok(U256::ZERO),
            Some(bytes) => {
                let word: B256 = decode("storage value", &bytes)?;
                Ok(U256::from_be_bytes(word.0))
            }
        }
    }

    /// The values of exactly the items `access_list` names.
    pub fn slice(&self, access_list: &SpaceAccessList) -> Result<StateSlice, StateError> {
        let mut slice = StateSlice::default();
        for access in access_list.accounts() {
            let record = self.account(&access.address)?.unwrap_or_default();
            let mut account = AccountSlice {
                balance: record.balance,
                nonce: record.nonce,
                code: self.code(&record.code_hash)?,
                storage: Default::default(),
            };
            for slot in &access.storage {
                let value = self.storage(&access.address, &slot.slot)?;
                account.storage.insert(slot.slot, value);
            }
            slice.accounts.insert(access.address, account);
        }
        Ok(slice)
    }

    /// The listed items of every list in `lists`, as an in-memory state to run a whole batch on
    /// ([`crate::execute_parallel`]): every listed account, with only its listed slots.
    pub fn working_set<'a>(
        &self,
        lists: impl IntoIterator<Item = &'a SpaceAccessList>,
    ) -> Result<InMemoryState, StateError> {
        let mut listed: BTreeMap<Address, BTreeSet<B256>> = BTreeMap::new();
        for list in lists {
            for access in list.accounts() {
                listed
                    .entry(access.address)
                    .or_default()
                    .extend(access.storage.iter().map(|slot| slot.slot));
            }
        }
        let mut state = InMemoryState::new();
        for (address, slots) in listed {
            let Some(record) = self.account(&address)? else {
                continue;
            };
            let mut storage = BTreeMap::new();
            for slot in slots {
                storage.insert(slot, self.storage(&address, &slot)?);
            }
            let account = AccountState {
                balance: record.balance,
                nonce: record.nonce,
                code: self.code(&record.code_hash)?,
                storage,
            };
            state.insert_account(address, account);
        }
        Ok(state)
    }

    /// The proof that [`DurableState::slice`] of `access_list` is what [`DurableState::root`]
    /// commits to.
    pub fn prove(&self, access_list: &SpaceAccessList) -> Result<SliceProof, StateError> {
        // The list is sorted by address and each account's slots by slot: the slice's order.
        let mut proof = SliceProof::default();
        for access in access_list.accounts() {
            let address = access.address;
            let record = self.account(&address)?.unwrap_or_default();
            let storage = StorageTrie {
                db: &self.db,
                address,
            };
            let slots = access
                .storage
                .iter()
                .map(|slot| Ok((slot.slot, trie::prove(&storage, &slot_key(&slot.slot))?)))
                .collect::<Result<_, StateError>>()?;
            proof.accounts.push(AccountProof {
                address,
                account: trie::prove(&AccountTrie { db: &self.db }, &address.0.0)?,
                storage_root: record.storage_root,
                slots,
            });
        }
        Ok(proof)
    }

    /// The root of the accounts whose addresses start with the first `bits` bits of `prefix`:
    /// what an address state group commits to for each prefix subtree it holds.
    pub fn prefix_root(&self, prefix: &Address, bits: usize) -> Result<B256, StateError> {
        trie::prefix_root(&AccountTrie { db: &self.db }, &prefix.0.0, bits)
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        cf(&self.db, name)
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    // Every family is created by `open`, so a missing one is a bug in this file, not bad input.
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} is opened with the store"))
}

fn put_node<const N: usize>(
    writes: &mut WriteBatch,
    family: &ColumnFamily,
    key: &[u8],
    node: Option<&Node<N>>,
) {
    match node {
        Some(node) => writes.put_cf(family, key, node.to_bytes()),
        None => writes.delete_cf(family, key),
    }
}

/// Merges a batch's diffs, later ones over earlier ones, by address.
fn merge<'a>(diffs: impl IntoIterator<Item = &'a StateDiff>) -> BTreeMap<Address, AccountDiff> {
    let mut merged = BTreeMap::<Address, AccountDiff>::new();
    for diff in diffs {
        for (address, change) in &diff.accounts {
            let into = merged.entry(*address).or_default();
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
    }
    merged
}

struct AccountTrie<'a> {
    db: &'a DB,
}

impl NodeSource<20> for AccountTrie<'_> {
    type Error = StateError;

    fn node(&self, path: &NodePath) -> Result<Option<Node<20>>, StateError> {
        let mut key = Vec::with_capacity(24);
        path.store_key(&mut key);
        self.db
            .get_pinned_cf(cf(self.db, CF_ACCOUNT_TRIE), &key)?
            .map(|bytes| decode("account trie node", &bytes))
            .transpose()
    }
}

struct StorageTrie<'a> {
    db: &'a DB,
    address: Address,
}

impl NodeSource<32> for StorageTrie<'_> {
    type Error = StateError;

    fn node(&self, path: &NodePath) -> Result<Option<Node<32>>, StateError> {
        let mut key = Vec::with_capacity(56);
        key.extend_from_slice(self.address.as_slice());
        path.store_key(&mut key);
        self.db
            .get_pinned_cf(cf(self.db, CF_STORAGE_TRIE), &key)?
            .map(|bytes| decode("storage trie node", &bytes))
            .transpose()
    }
}

#[cfg(test)]
mod tests;
