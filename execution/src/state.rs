//! World state of some set of addresses, in memory.
//!
//! The canonical form stores no zero-valued slot and no empty account (EIP-161 semantics), so
//! that a value set to zero and a value never written commit to the same root.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256};
use primitives::SpaceAccessList;

use crate::{
    diff::StateDiff,
    slice::{AccountSlice, StateSlice},
};

/// Domain of the state commitment, so that it can never pass for another blake3 hash.
const STATE_ROOT_DOMAIN: &str = "tickrate execution state root v0";

/// One account of the world state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    /// Balance in wei.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Runtime code; empty for an externally owned account.
    pub code: Bytes,
    /// Non-zero storage slots.
    pub storage: BTreeMap<B256, U256>,
}

impl AccountState {
    /// Whether the account holds nothing at all, so that the canonical state drops it.
    pub fn is_empty(&self) -> bool {
        self.balance.is_zero() && self.nonce == 0 && self.code.is_empty() && self.storage.is_empty()
    }
}

/// The world state of some set of addresses (a group's own, or a whole devnet's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InMemoryState {
    accounts: BTreeMap<Address, AccountState>,
}

impl InMemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an account wholesale, for genesis. Zero slots are dropped, and an empty account
    /// removes the entry.
    pub fn insert_account(&mut self, address: Address, mut account: AccountState) {
        account.storage.retain(|_, value| !value.is_zero());
        if account.is_empty() {
            self.accounts.remove(&address);
        } else {
            self.accounts.insert(address, account);
        }
    }

    /// The account at `address`, if it is not empty.
    pub fn account(&self, address: &Address) -> Option<&AccountState> {
        self.accounts.get(address)
    }

    /// The value of one slot (zero if never written).
    pub fn storage(&self, address: &Address, slot: &B256) -> U256 {
        self.accounts
            .get(address)
            .and_then(|account| account.storage.get(slot))
            .copied()
            .unwrap_or_default()
    }

    /// The non-empty accounts, in address order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &AccountState)> {
        self.accounts.iter()
    }

    /// The authenticated (trie) root of the whole state: what a [`crate::DurableState`] holding
    /// the same items reports, computed from scratch.
    pub fn authenticated_root(&self) -> B256 {
        crate::trie::root_of(&crate::proof::account_leaves(&self.accounts))
    }

    /// The authenticated root of the accounts whose addresses start with the first `bits` bits
    /// of `prefix` (see [`crate::trie`]), computed from scratch.
    pub fn authenticated_prefix_root(&self, prefix: &Address, bits: usize) -> B256 {
        let under = self.accounts.iter().filter(|(address, _)| {
            (0..bits).all(|index| {
                crate::trie::bit(address.as_slice(), index)
                    == crate::trie::bit(prefix.as_slice(), index)
            })
        });
        crate::trie::prefix_root_of(&crate::proof::account_leaves(under), bits)
    }

    /// Number of non-empty accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether no account holds anything.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The values of exactly the items `access_list` names.
    pub fn slice(&self, access_list: &SpaceAccessList) -> StateSlice {
        // Inserted one by one: a list holds a few accounts and slots, and collecting them would
        // buffer, sort and deduplicate what the list already keeps sorted and unique, once per
        // move.
        let mut accounts = BTreeMap::new();
        for access in access_list.accounts() {
            let account = self.accounts.get(&access.address);
            let mut storage = BTreeMap::new();
            for slot in &access.storage {
                let value = account
                    .and_then(|account| account.storage.get(&slot.slot))
                    .copied()
                    .unwrap_or_default();
                storage.insert(slot.slot, value);
            }
            let slice = AccountSlice {
                balance: account.map(|a| a.balance).unwrap_or_default(),
                nonce: account.map(|a| a.nonce).unwrap_or_default(),
                code: account.map(|a| a.code.clone()).unwrap_or_default(),
                storage,
            };
            accounts.insert(access.address, slice);
        }
        StateSlice { accounts }
    }

    /// Applies a move's changes.
    pub fn apply(&mut self, diff: &StateDiff) {
        for (address, change) in &diff.accounts {
            let account = self.accounts.entry(*address).or_default();
            if let Some(balance) = change.balance {
                account.balance = balance;
            }
            if let Some(nonce) = change.nonce {
                account.nonce = nonce;
            }
            if let Some(code) = &change.code {
                account.code = code.clone();
            }
            for (slot, value) in &change.storage {
                if value.is_zero() {
                    account.storage.remove(slot);
                } else {
                    account.storage.insert(*slot, *value);
                }
            }
            if account.is_empty() {
                self.accounts.remove(address);
            }
        }
    }

    /// A deterministic blake3 commitment to every item of the selected addresses, so that a
    /// group commits to exactly its own addresses. Accounts go in address order, slots in slot
    /// order; every field is fixed-width or length-prefixed, so no two states share an encoding.
    /// A Merkle trie by address bits will replace this behind the same signature.
    pub fn root_where(&self, mut select: impl FnMut(&Address) -> bool) -> B256 {
        let mut hasher = blake3::Hasher::new_derive_key(STATE_ROOT_DOMAIN);
        for (address, account) in self.accounts.iter().filter(|(address, _)| select(address)) {
            hasher.update(address.as_slice());
            hasher.update(&account.balance.to_be_bytes::<32>());
            hasher.update(&account.nonce.to_be_bytes());
            hasher.update(&(account.code.len() as u64).to_be_bytes());
            hasher.update(&account.code);
            hasher.update(&(account.storage.len() as u64).to_be_bytes());
            for (slot, value) in &account.storage {
                hasher.update(slot.as_slice());
                hasher.update(&value.to_be_bytes::<32>());
            }
        }
        B256::from(*hasher.finalize().as_bytes())
    }
}
