//! Plain revm over the whole in-memory state, with no Space Access List: the reference the
//! SAL-enforced engine is measured and tested against, and what estimation runs on.
//!
//! A move here reads whatever it likes and its changes are committed as revm reports them. The
//! block context, the gas rules and the burned fee are the engine's, so a move whose list was
//! estimated on the same state leaves the same state either way.

use alloy_primitives::{Address, B256, U256};
use primitives::{FailureReason, VerifiedTransaction};
use revm::{
    Database,
    bytecode::Bytecode,
    context_interface::result::ExecutionResult,
    primitives::{KECCAK_EMPTY, StorageKey, StorageValue},
    state::{AccountInfo, EvmState},
};

use crate::{
    constants::BLOCK_BENEFICIARY,
    database::account_info_of,
    diff::{AccountDiff, StateDiff},
    engine::{ExecutionEnv, failure_from_revm, run_revm},
    error::AccessError,
    state::InMemoryState,
};

/// A revm `Database` over the whole of an [`InMemoryState`].
#[derive(Clone, Copy, Debug)]
pub struct StateDatabase<'state> {
    state: &'state InMemoryState,
}

impl<'state> StateDatabase<'state> {
    /// A view of all of `state`.
    pub fn new(state: &'state InMemoryState) -> Self {
        StateDatabase { state }
    }
}

impl Database for StateDatabase<'_> {
    type Error = AccessError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, AccessError> {
        Ok(self
            .state
            .account(&address)
            .and_then(|account| account_info_of(account.balance, account.nonce, &account.code)))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, AccessError> {
        // `basic` hands out code with every account, so revm does not ask by hash.
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        Err(AccessError::UnknownCode(code_hash))
    }

    fn storage(
        &mut self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, AccessError> {
        Ok(self.state.storage(&address, &B256::from(index)))
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, AccessError> {
        Err(AccessError::BlockHashUnavailable { number })
    }
}

/// What a plain run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainOutcome {
    /// `Ok` if revm ran the move to success.
    pub status: Result<(), FailureReason>,
    /// Gas revm reports.
    pub gas_used: u64,
    /// What it changed (for a failed move, revm's nonce and fee changes only).
    pub diff: StateDiff,
}

/// Runs `tx` with plain revm over all of `state` and commits what it changed.
pub fn execute_plain(
    env: &ExecutionEnv,
    tx: &VerifiedTransaction,
    state: &mut InMemoryState,
) -> PlainOutcome {
    let body = tx.tx();
    let shape = (
        crate::engine::kind_of(&tx.signed),
        crate::engine::ethereum_access_list(&tx.signed),
    );
    let outcome = match run_revm(env, tx.sender, body, shape, StateDatabase::new(state)) {
        Err(error) => PlainOutcome {
            status: Err(failure_from_revm(error)),
            gas_used: 0,
            diff: StateDiff::default(),
        },
        Ok((result, evm_state)) => {
            let credit = U256::from(body.gas_price) * U256::from(result.tx_gas_used());
            let status = match result {
                ExecutionResult::Success { .. } => Ok(()),
                ExecutionResult::Revert { .. } => Err(FailureReason::Reverted),
                ExecutionResult::Halt { .. } => Err(FailureReason::Halted),
            };
            PlainOutcome {
                status,
                gas_used: result.tx_gas_used(),
                diff: committed_diff(evm_state, credit),
            }
        }
    };
    state.apply(&outcome.diff);
    outcome
}

/// revm's own account of what changed: touched accounts' info and changed slots. The fee
/// credited to the beneficiary is burned, as in the engine.
fn committed_diff(evm_state: EvmState, beneficiary_credit: U256) -> StateDiff {
    let mut diff = StateDiff::default();
    for (address, account) in evm_state {
        if !account.is_touched() {
            continue;
        }
        let original = account.original_info();
        let mut change = AccountDiff::default();
        let balance_before = original.balance;
        let mut balance = account.info.balance;
        if address == BLOCK_BENEFICIARY {
            balance = balance.wrapping_sub(beneficiary_credit);
        }
        if balance != balance_before {
            change.balance = Some(balance);
        }
        if account.info.nonce != original.nonce {
            change.nonce = Some(account.info.nonce);
        }
        for (key, slot) in &account.storage {
            if slot.is_changed() {
                change.storage.insert(B256::from(*key), slot.present_value);
            }
        }
        if !change.is_empty() {
            diff.accounts.insert(address, change);
        }
    }
    diff
}
