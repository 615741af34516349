//! A revm [`Database`] over a [`StateSlice`] that enforces the Space Access List.
//!
//! The slice holds exactly the listed items (the engine checks that with
//! [`StateSlice::check_matches`] before running), so the slice itself is the list: reading an
//! account it does not hold, or a slot of a listed account it does not hold, returns
//! [`AccessError::OutOfAccessList`], which fails the move with
//! [`primitives::FailureReason::OutOfAccessList`].
//!
//! Two kinds of address are readable without being listed, as empty accounts:
//! - the block's beneficiary (coinbase): revm loads it after every move to credit fees, and
//!   warms it for every move (EIP-3651), so a move cannot avoid touching it. Fees are zero in
//!   the devnet; see the engine for what happens to a non-zero fee.
//! - the precompiles of the pinned spec, taken from revm's own set
//!   ([`revm::precompile::Precompiles`]) rather than a hand-written range: a call to one loads
//!   its (empty) account first.
//!
//! Being readable is all the exemption grants: the engine still fails a move that changes an
//! unlisted precompile, or the beneficiary beyond receiving the fee.

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use primitives::finality::StateItem;
use revm::{
    Database,
    bytecode::Bytecode,
    precompile::{PrecompileSpecId, Precompiles},
    primitives::{KECCAK_EMPTY, StorageKey, StorageValue},
    state::AccountInfo,
};

use crate::{
    constants::EVM_SPEC,
    error::AccessError,
    slice::{AccountSlice, StateSlice},
};

/// The SAL-enforcing view revm executes against.
#[derive(Debug)]
pub struct SliceDatabase<'slice> {
    slice: &'slice StateSlice,
    beneficiary: Address,
    precompiles: &'static Precompiles,
}

impl<'slice> SliceDatabase<'slice> {
    /// A view over `slice` for a block whose beneficiary is `beneficiary`.
    pub fn new(slice: &'slice StateSlice, beneficiary: Address) -> Self {
        SliceDatabase {
            slice,
            beneficiary,
            precompiles: Precompiles::new(PrecompileSpecId::from_spec_id(EVM_SPEC)),
        }
    }

    /// Whether `address` may be read as an empty account without being listed.
    pub fn is_exempt(&self, address: &Address) -> bool {
        *address == self.beneficiary || self.precompiles.contains(address)
    }
}

/// revm's view of a listed account. An empty account is reported as absent, as Ethereum does
/// after EIP-161, so that gas (new-account charges) and `EXTCODEHASH` match a chain where it was
/// never created.
fn account_info(account: &AccountSlice) -> Option<AccountInfo> {
    account_info_of(account.balance, account.nonce, &account.code)
}

/// revm's view of an account with these values; `None` for the empty account.
pub(crate) fn account_info_of(balance: U256, nonce: u64, code: &Bytes) -> Option<AccountInfo> {
    if balance.is_zero() && nonce == 0 && code.is_empty() {
        return None;
    }
    // Tickrate has no EIP-7702 delegations: all code is legacy bytecode, which also keeps
    // revm's panicking EIP-7702 decoder away from code that merely starts with 0xef01.
    let code = Bytecode::new_legacy(code.clone());
    Some(
        AccountInfo {
            balance,
            nonce,
            ..AccountInfo::default()
        }
        .with_code(code),
    )
}

impl Database for SliceDatabase<'_> {
    type Error = AccessError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, AccessError> {
        match self.slice.account(&address) {
            Some(account) => Ok(account_info(account)),
            None if self.is_exempt(&address) => Ok(None),
            None => Err(AccessError::OutOfAccessList(StateItem::Balance(address))),
        }
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, AccessError> {
        // `basic` hands out code with every account, so revm should never get here; answer
        // from the slice anyway rather than trust that.
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        self.slice
            .accounts
            .values()
            .find(|account| keccak256(&account.code) == code_hash)
            .map(|account| Bytecode::new_legacy(account.code.clone()))
            .ok_or(AccessError::UnknownCode(code_hash))
    }

    fn storage(
        &mut self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, AccessError> {
        let slot = B256::from(index);
        match self.slice.account(&address) {
            Some(account) => {
                account
                    .storage
                    .get(&slot)
                    .copied()
                    .ok_or(AccessError::OutOfAccessList(StateItem::Storage(
                        address, slot,
                    )))
            }
            // An exempt account is empty, and empty storage reads as zero.
            None if self.is_exempt(&address) => Ok(U256::ZERO),
            None => Err(AccessError::OutOfAccessList(StateItem::Storage(
                address, slot,
            ))),
        }
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, AccessError> {
        Err(AccessError::BlockHashUnavailable { number })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_outside_the_slice_are_refused_except_exemptions() {
        let listed = Address::repeat_byte(1);
        let beneficiary = Address::repeat_byte(2);
        let slot = B256::repeat_byte(3);
        let mut slice = StateSlice::default();
        slice.accounts.insert(
            listed,
            AccountSlice {
                balance: U256::from(5),
                code: Bytes::from_static(&[0x00]),
                storage: [(slot, U256::from(9))].into(),
                ..AccountSlice::default()
            },
        );
        let mut database = SliceDatabase::new(&slice, beneficiary);

        let info = database.basic(listed).expect("listed").expect("not empty");
        assert_eq!(info.balance, U256::from(5));
        assert_eq!(
            database.storage(listed, U256::from_be_bytes(slot.0)),
            Ok(U256::from(9))
        );
        assert_eq!(
            database.code_by_hash(info.code_hash),
            Ok(Bytecode::new_legacy(Bytes::from_static(&[0x00])))
        );

        let other_slot = U256::from(4);
        assert_eq!(
            database.storage(listed, other_slot),
            Err(AccessError::OutOfAccessList(StateItem::Storage(
                listed,
                B256::from(other_slot)
            )))
        );
        let stranger = Address::repeat_byte(0x77);
        assert_eq!(
            database.basic(stranger),
            Err(AccessError::OutOfAccessList(StateItem::Balance(stranger)))
        );
        assert_eq!(database.basic(beneficiary), Ok(None));
        let identity = Address::with_last_byte(4);
        assert_eq!(database.basic(identity), Ok(None));
        assert_eq!(
            database.block_hash(1),
            Err(AccessError::BlockHashUnavailable { number: 1 })
        );
    }
}
