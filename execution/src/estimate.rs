//! Estimation: the Space Access List a move needs, found by running it against current state.
//!
//! The move runs with plain revm over the whole state (no list), and its list is read off what
//! revm loaded and changed (`eth_createAccessList` plus post-values): every account and slot it
//! loaded is listed, and every item it changed gets a declared write, an exact post-value unless
//! the caller named the item as a delta, in which case the change is declared as a delta. The
//! sender's nonce increment is implied and not declared. The block beneficiary and the
//! precompiles are listed only if the move changes them (the engine lets any move read them).
//!
//! If the state does not change before the move executes, executing it with the estimated list
//! succeeds and leaves exactly the state plain revm would have left. A delta keeps holding when
//! other moves change the item first, as long as the move does not branch on its value.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256};
use primitives::{
    AccountAccess, DeclaredWrite, FailureReason, SlotAccess, SpaceAccessList, Transaction,
    ethereum::EthereumAccessList, finality::StateItem,
};
use revm::{context_interface::result::ExecutionResult, primitives::TxKind};

use crate::{
    constants::BLOCK_BENEFICIARY,
    database::SliceDatabase,
    engine::{ExecutionEnv, collect_diff, failure_from_revm, run_revm},
    plain::StateDatabase,
    slice::{AccountSlice, StateSlice},
    state::InMemoryState,
};

/// What estimation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// The list to sign with the move.
    pub access_list: SpaceAccessList,
    /// Whether the move succeeds on the current state (a failing move still gets the list of
    /// what it touched before failing).
    pub status: Result<(), FailureReason>,
    /// Gas the move used.
    pub gas_used: u64,
    /// What the call returned (or the revert data); for a creation, the code deployed.
    pub output: Bytes,
}

/// Runs `body` (its own access list is ignored) from `sender` against `state`, and returns the
/// list it needs. Changes to the items in `deltas` (balances or slots) are declared as deltas.
pub fn estimate(
    env: &ExecutionEnv,
    sender: Address,
    body: &Transaction,
    state: &InMemoryState,
    deltas: &[StateItem],
) -> Estimate {
    estimate_move(
        env,
        sender,
        body,
        (false, &EthereumAccessList::default()),
        state,
        deltas,
    )
}

/// [`estimate()`] for a move signed as an Ethereum transaction: it calls its `to` or, if
/// `create`, creates a contract there (`body.to` must be the address the sender's nonce
/// creates), and it carries `access_list`, its signed EIP-2930 list (empty for none). The list's
/// items start warm and cost their intrinsic gas, as in execution, and every one of them is in
/// the returned list (a read, unless the move writes it), as verification demands.
pub fn estimate_move(
    env: &ExecutionEnv,
    sender: Address,
    body: &Transaction,
    (create, access_list): (bool, &EthereumAccessList),
    state: &InMemoryState,
    deltas: &[StateItem],
) -> Estimate {
    let kind = if create {
        TxKind::Create
    } else {
        TxKind::Call(body.to)
    };
    let shape = (kind, access_list);
    let (result, evm_state) = match run_revm(env, sender, body, shape, StateDatabase::new(state)) {
        Ok(output) => output,
        Err(error) => {
            return Estimate {
                access_list: SpaceAccessList::new(
                    [AccountAccess::read(sender), AccountAccess::read(body.to)]
                        .into_iter()
                        .chain(listed_reads(access_list)),
                ),
                status: Err(failure_from_revm(error)),
                gas_used: 0,
                output: Bytes::new(),
            };
        }
    };
    let nothing = StateSlice::default();
    let exempt = SliceDatabase::new(&nothing, BLOCK_BENEFICIARY);
    // The slice of everything revm loaded, with the values before the move. An exempt account
    // that holds something is listed, since the engine would read it as empty otherwise.
    let mut loaded = StateSlice::default();
    for (address, account) in &evm_state {
        if exempt.is_exempt(address) && state.account(address).is_none() {
            continue;
        }
        let slots = account.storage.keys().map(|key| (*key).into());
        loaded
            .accounts
            .insert(*address, account_slice(state, address, slots));
    }
    for required in [sender, body.to] {
        loaded
            .accounts
            .entry(required)
            .or_insert_with(|| account_slice(state, &required, std::iter::empty()));
    }
    // Every item of the Ethereum access list, used or not.
    for item in &access_list.0 {
        let account = loaded
            .accounts
            .entry(item.address)
            .or_insert_with(|| account_slice(state, &item.address, std::iter::empty()));
        for slot in &item.storage_keys {
            if !account.storage.contains_key(slot) {
                let value = state.storage(&item.address, slot);
                account.storage.insert(*slot, value);
            }
        }
    }

    let gas_used = result.tx_gas_used();
    let output = result.output().cloned().unwrap_or_default();
    let credit = U256::from(body.gas_price) * U256::from(gas_used);
    let status = match result {
        ExecutionResult::Success { .. } => Ok(()),
        ExecutionResult::Revert { .. } => Err(FailureReason::Reverted),
        ExecutionResult::Halt { .. } => Err(FailureReason::Halted),
    };
    let diff = collect_diff(evm_state, &loaded, credit);
    // A changed exempt account must be listed (its change is then held to its declaration).
    for address in diff.accounts.keys() {
        loaded.accounts.entry(*address).or_default();
    }

    let declare = |item: StateItem, before: U256, after: U256| {
        if deltas.contains(&item) {
            DeclaredWrite::Delta(DeclaredWrite::delta_between(before, after))
        } else {
            DeclaredWrite::Exact(after)
        }
    };
    let accounts = loaded.accounts.iter().map(|(address, before)| {
        let address = *address;
        let change = if status.is_ok() {
            diff.account(&address)
        } else {
            None
        };
        let balance = change
            .and_then(|c| c.balance)
            .map(|after| declare(StateItem::Balance(address), before.balance, after));
        let nonce = change.and_then(|c| c.nonce).filter(|_| address != sender);
        let storage = before
            .storage
            .iter()
            .map(|(slot, value_before)| SlotAccess {
                slot: *slot,
                write: change.and_then(|c| c.storage.get(slot)).map(|after| {
                    declare(StateItem::Storage(address, *slot), *value_before, *after)
                }),
            })
            .collect();
        AccountAccess {
            address,
            balance,
            nonce,
            storage,
        }
    });
    Estimate {
        access_list: SpaceAccessList::new(accounts),
        status,
        gas_used,
        output,
    }
}

/// The items of an Ethereum access list, as reads.
fn listed_reads(access_list: &EthereumAccessList) -> impl Iterator<Item = AccountAccess> + '_ {
    access_list.0.iter().map(|item| AccountAccess {
        storage: item
            .storage_keys
            .iter()
            .map(|slot| SlotAccess {
                slot: *slot,
                write: None,
            })
            .collect(),
        ..AccountAccess::read(item.address)
    })
}

/// The values of `address` and of its `slots` in `state`.
fn account_slice(
    state: &InMemoryState,
    address: &Address,
    slots: impl Iterator<Item = B256>,
) -> AccountSlice {
    let account = state.account(address);
    AccountSlice {
        balance: account.map(|a| a.balance).unwrap_or_default(),
        nonce: account.map(|a| a.nonce).unwrap_or_default(),
        code: account.map(|a| a.code.clone()).unwrap_or_default(),
        storage: slots
            .map(|slot| (slot, state.storage(address, &slot)))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[cfg(test)]
mod tests;
