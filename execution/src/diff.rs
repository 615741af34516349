//! What a move changed: only the values that differ from the state it ran against.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256};

/// The changed values of one account. `None` (or an absent slot) means unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountDiff {
    /// The new balance.
    pub balance: Option<U256>,
    /// The new nonce.
    pub nonce: Option<u64>,
    /// The new code.
    pub code: Option<Bytes>,
    /// The new values of changed slots (zero means cleared).
    pub storage: BTreeMap<B256, U256>,
}

impl AccountDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.balance.is_none()
            && self.nonce.is_none()
            && self.code.is_none()
            && self.storage.is_empty()
    }
}

/// Every value a move changed, sorted by address (and slot), so that two executions of the same
/// move compare equal and apply in the same order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDiff {
    /// Changed accounts; none of them is empty.
    pub accounts: BTreeMap<Address, AccountDiff>,
}

impl StateDiff {
    /// The diff of a failed move: it consumes its sender's nonce and nothing else.
    pub fn nonce_only(sender: Address, nonce_after: u64) -> Self {
        let account = AccountDiff {
            nonce: Some(nonce_after),
            ..AccountDiff::default()
        };
        StateDiff {
            accounts: BTreeMap::from([(sender, account)]),
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The changes to `address`.
    pub fn account(&self, address: &Address) -> Option<&AccountDiff> {
        self.accounts.get(address)
    }
}
