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

use std::cell::RefCell;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256, map::HashMap};
use primitives::finality::StateItem;
use revm::{
    Database,
    bytecode::{Bytecode, JumpTable},
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
    let (code_hash, code) = analysed_code(code);
    Some(AccountInfo::new(balance, nonce, code_hash, code))
}

/// Contracts' code analysed for revm, on this thread, by the buffer that holds the raw code.
/// Keeping a handle to each buffer keeps it from being freed, so its address cannot come to
/// name other code while it is a key.
type AnalysedCode = HashMap<(usize, usize), (Bytes, B256, Bytecode)>;

/// How many contracts a thread keeps analysed; past it the cache starts over. A batch calls a
/// handful of game contracts, and each entry keeps its code buffer alive (a node loads a fresh
/// buffer per batch), so a few hundred bound the memory to a few megabytes a thread.
const ANALYSED_CODE_CAPACITY: usize = 256;

thread_local! {
    static ANALYSED_CODE: RefCell<AnalysedCode> = RefCell::new(AnalysedCode::default());
    static EMPTY_CODE: Bytecode = empty_code();
}

/// An empty code of this thread's own. revm's `Bytecode::new()` clones one process-wide value,
/// so every account without code that every core loads (two or three a move) would increment
/// and decrement one shared reference count: measured, the cores then spent more time passing
/// that count's cache line between them than running transfers.
#[allow(unsafe_code)]
fn empty_code() -> Bytecode {
    // SAFETY: the components are exactly those revm gives its own empty code (one STOP byte of
    // padding, original length 0, an empty jump table), which meet `new_analyzed`'s padding
    // invariant: nothing can be decoded past the STOP byte.
    unsafe { Bytecode::new_analyzed(Bytes::from_static(&[0x00]), 0, JumpTable::default()) }
}

/// The hash and the analysed form of `code`. A contract is loaded by nearly every move that
/// calls it, so its keccak hash and its jump table are computed once per thread rather than
/// once per move.
fn analysed_code(code: &Bytes) -> (B256, Bytecode) {
    if code.is_empty() {
        return (KECCAK_EMPTY, EMPTY_CODE.with(Bytecode::clone));
    }
    let key = (code.as_ptr() as usize, code.len());
    ANALYSED_CODE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, hash, analysed)) = cache.get(&key) {
            return (*hash, analysed.clone());
        }
        // Tickrate has no EIP-7702 delegations: all code is legacy bytecode, which also keeps
        // revm's panicking EIP-7702 decoder away from code that merely starts with 0xef01.
        let analysed = Bytecode::new_legacy(code.clone());
        let hash = keccak256(code);
        if cache.len() >= ANALYSED_CODE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, (code.clone(), hash, analysed.clone()));
        (hash, analysed)
    })
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
    fn this_threads_empty_code_is_revms_empty_code() {
        let ours = empty_code();
        let revms = Bytecode::new();
        assert_eq!(ours, revms);
        assert_eq!(ours.bytecode(), revms.bytecode());
        assert_eq!(ours.original_byte_slice(), revms.original_byte_slice());
        assert_eq!(ours.hash_slow(), KECCAK_EMPTY);
        assert!(ours.is_empty());
        assert_eq!(ours.legacy_jump_table(), revms.legacy_jump_table());
    }

    #[test]
    fn a_contract_is_analysed_once_per_buffer_and_per_thread() {
        let code = Bytes::from(vec![0x60, 0x01, 0x56, 0x5b, 0x00]);
        let (hash, first) = analysed_code(&code);
        assert_eq!(hash, keccak256(&code));
        assert_eq!(first, Bytecode::new_legacy(code.clone()));
        let (_, again) = analysed_code(&code.clone());
        assert!(std::ptr::eq(first.bytecode_ptr(), again.bytecode_ptr()));
        // The same code in another buffer is analysed on its own, and comes out equal.
        let copy = Bytes::from(code.to_vec());
        let (copy_hash, other) = analysed_code(&copy);
        assert_eq!(copy_hash, hash);
        assert_eq!(other, first);
    }

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
