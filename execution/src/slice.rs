//! The state a move runs against: the values of exactly the items its Space Access List names.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256};
use primitives::{SpaceAccessList, finality::StateItem};

use crate::error::ExecutionError;

/// One listed account's values. A missing account is the empty account (zero balance and
/// nonce, no code).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountSlice {
    /// Balance in wei.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Runtime code; empty for an externally owned account.
    pub code: Bytes,
    /// Exactly the listed slots, zero-valued ones included: a key's presence is what makes the
    /// slot readable.
    pub storage: BTreeMap<B256, U256>,
}

impl AccountSlice {
    /// Whether the account is empty in the EIP-161 sense (no balance, nonce or code). Its storage
    /// does not count.
    pub fn is_empty(&self) -> bool {
        self.balance.is_zero() && self.nonce == 0 && self.code.is_empty()
    }
}

/// The values of exactly the items of one move's Space Access List, built by whoever holds the
/// state (the executing group, or a group that ships its part).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateSlice {
    /// One entry per listed account.
    pub accounts: BTreeMap<Address, AccountSlice>,
}

impl StateSlice {
    /// The listed account at `address`.
    pub fn account(&self, address: &Address) -> Option<&AccountSlice> {
        self.accounts.get(address)
    }

    /// Checks that the slice holds exactly the accounts and slots `access_list` names, neither
    /// fewer (execution would fail a valid move) nor more (execution could read outside the
    /// list). A slice shipped by another group is peer input, so this is an error, not an assert.
    pub fn check_matches(&self, access_list: &SpaceAccessList) -> Result<(), ExecutionError> {
        for access in access_list.accounts() {
            let address = access.address;
            let Some(account) = self.accounts.get(&address) else {
                return Err(ExecutionError::SliceMissingItem {
                    item: StateItem::Balance(address),
                });
            };
            if let Some(missing) = access
                .storage
                .iter()
                .find(|slot| !account.storage.contains_key(&slot.slot))
            {
                return Err(ExecutionError::SliceMissingItem {
                    item: StateItem::Storage(address, missing.slot),
                });
            }
            // Every listed slot is present, so any surplus key is one the list does not name.
            if account.storage.len() != access.storage.len()
                && let Some(extra) = account
                    .storage
                    .keys()
                    .find(|slot| access.slot(slot).is_none())
            {
                return Err(ExecutionError::SliceExtraItem {
                    item: StateItem::Storage(address, *extra),
                });
            }
        }
        if let Some(extra) = self
            .accounts
            .keys()
            .find(|address| !access_list.contains(address))
        {
            return Err(ExecutionError::SliceExtraItem {
                item: StateItem::Balance(*extra),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountAccess, SlotAccess};

    use super::*;

    fn slot(n: u64) -> B256 {
        B256::from(U256::from(n))
    }

    #[test]
    fn check_matches_wants_exactly_the_listed_items() {
        let address = Address::repeat_byte(7);
        let access_list = SpaceAccessList::new([AccountAccess {
            storage: vec![SlotAccess {
                slot: slot(1),
                write: None,
            }],
            ..AccountAccess::read(address)
        }]);

        let mut slice = StateSlice::default();
        assert_eq!(
            slice.check_matches(&access_list),
            Err(ExecutionError::SliceMissingItem {
                item: StateItem::Balance(address)
            })
        );

        slice.accounts.insert(address, AccountSlice::default());
        assert_eq!(
            slice.check_matches(&access_list),
            Err(ExecutionError::SliceMissingItem {
                item: StateItem::Storage(address, slot(1))
            })
        );

        let account = slice.accounts.entry(address).or_default();
        account.storage.insert(slot(1), U256::ZERO);
        assert_eq!(slice.check_matches(&access_list), Ok(()));

        let account = slice.accounts.entry(address).or_default();
        account.storage.insert(slot(2), U256::ZERO);
        assert_eq!(
            slice.check_matches(&access_list),
            Err(ExecutionError::SliceExtraItem {
                item: StateItem::Storage(address, slot(2))
            })
        );

        let account = slice.accounts.entry(address).or_default();
        account.storage.remove(&slot(2));
        let stranger = Address::repeat_byte(8);
        slice.accounts.insert(stranger, AccountSlice::default());
        assert_eq!(
            slice.check_matches(&access_list),
            Err(ExecutionError::SliceExtraItem {
                item: StateItem::Balance(stranger)
            })
        );
    }
}
