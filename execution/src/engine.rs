//! Runs one move with revm over its state slice and holds the result to its Space Access List.
//!
//! The order of checks, which every group follows so that all reach the same reason:
//! 1. the slice must hold exactly the listed items, or the caller gets an [`ExecutionError`]
//!    (not the move's fault, so no verdict on the move);
//! 2. the move's nonce must be the sender's: otherwise [`FailureReason::BadNonce`] and an empty
//!    diff (the nonce is not consumed: it was never the sender's to consume);
//! 3. revm runs the call (`transact`, never commit) over [`SliceDatabase`]: a read outside the
//!    list fails the move with [`FailureReason::OutOfAccessList`]; a revert or a halt fails it;
//!    a sender who cannot cover `value + gas_limit * gas_price` fails with
//!    [`FailureReason::InsufficientFunds`]; any other transaction-level refusal by revm (gas
//!    limit under the intrinsic cost or over the EIP-7825 cap, wrong chain id) is
//!    [`FailureReason::Halted`];
//! 4. every changed item, in address then balance / nonce / code / slot order, must be listed
//!    ([`FailureReason::OutOfAccessList`]) and declared ([`FailureReason::UndeclaredWrite`]);
//!    the sender's nonce increment is implied. Code can never be declared: only a creation (a
//!    move signed as an Ethereum transaction with no `to`, whose `to` is then the created
//!    address) may write code, at its `to`, implied like the sender's nonce; any other move
//!    that deploys or destroys code fails;
//! 5. every declared write, in list order, must have come true, whether or not execution
//!    touched the item: an exact write must equal the value after execution
//!    ([`FailureReason::WrongPostValue`]); a delta must equal the value after minus the value
//!    before, wrapping modulo 2^256 ([`FailureReason::WrongDelta`]). A delta of zero on an
//!    untouched item is therefore satisfied.
//!
//! A move failing in steps 3 to 5 consumes its nonce and nothing else: its diff is the sender's
//! nonce + 1, and it pays no fee.
//!
//! Session keys (see `primitives::session`): a call to the session registry (a grant or a
//! revocation) is carried out natively after step 2, without revm: it writes the sender's own
//! storage exactly as verification found it declared, or fails with
//! [`FailureReason::Session`]. A move signed by a session key is held, after step 2, to the
//! session rule against the executed values of its grant and scope slots (the move's batch
//! number is the clock of expiry); if it passes, the charge to the grant slot joins the move's
//! diff before step 4, so the declared delta must come true like any other.
//!
//! Fees: revm charges `gas_used * gas_price` to the sender, so with a non-zero gas price the
//! sender's balance changes and must be declared (for a plain transfer, `gas_used` is 21,000).
//! Fees are zero in the devnet. The fee revm credits to an unlisted block beneficiary is
//! burned: no group holds that account for this move, so nobody could apply the credit (any
//! other change to it still fails the move). The
//! move's `sponsor` is not charged here; a sponsored move is expected to carry a zero gas price.

use alloy_primitives::{Address, B256, Bytes, Log, U256};
use primitives::{
    Authority, DeclaredWrite, FailureReason, MoveSignature, SESSION_REGISTRY, SessionCall,
    SpaceAccessList, Transaction, TxHash, VerifiedTransaction,
    codec::Decode,
    ethereum::EthereumAccessList,
    finality::StateItem,
    session::{self, SessionRefusal},
};
use revm::{
    Database, ExecuteEvm,
    context::{BlockEnv, Evm, TxEnv},
    context_interface::{
        local::FrameStack,
        result::{EVMError, ExecutionResult, InvalidTransaction},
    },
    handler::{
        EthFrame, EthPrecompiles, MainnetContext, MainnetEvm, instructions::EthInstructions,
    },
    interpreter::interpreter::EthInterpreter,
    primitives::TxKind,
    state::{Account, EvmState},
};
use tracing::trace;

use crate::{
    constants::{BLOCK_BENEFICIARY, EVM_SPEC},
    database::SliceDatabase,
    diff::{AccountDiff, StateDiff},
    error::{AccessError, ExecutionError},
    slice::{AccountSlice, StateSlice},
};

/// The block-level context a move runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutionEnv {
    /// The Tickrate network's chain id (the `CHAINID` opcode).
    pub chain_id: u64,
    /// The number `NUMBER` returns.
    pub block_number: u64,
    /// The time `TIMESTAMP` returns, in seconds.
    pub timestamp: u64,
}

/// What one move did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveOutcome {
    /// The move.
    pub hash: TxHash,
    /// `Ok` if the move took effect, otherwise why it failed.
    pub status: Result<(), FailureReason>,
    /// Gas revm reports, also for a failed move (which pays nothing); zero if revm refused the
    /// move before running it.
    pub gas_used: u64,
    /// Logs of a successful move; empty for a failed one.
    pub logs: Vec<Log>,
    /// Every changed value of a successful move (sender nonce + 1 included); only the nonce
    /// + 1 of a failed one; nothing for a bad nonce.
    pub diff: StateDiff,
}

impl MoveOutcome {
    /// Whether the move took effect.
    pub fn is_success(&self) -> bool {
        self.status.is_ok()
    }
}

/// Runs `tx` against `slice`, which must hold exactly the items of the move's Space Access List.
pub fn execute(
    env: &ExecutionEnv,
    tx: &VerifiedTransaction,
    slice: &StateSlice,
) -> Result<MoveOutcome, ExecutionError> {
    let body = tx.tx();
    slice.check_matches(&body.access_list)?;

    let sender_nonce = slice.account(&tx.sender).map_or(0, |account| account.nonce);
    // A sender at u64::MAX can send no more moves (EIP-2681), and its nonce cannot be consumed.
    let Some(nonce_after) = sender_nonce
        .checked_add(1)
        .filter(|_| body.nonce == sender_nonce)
    else {
        let outcome = MoveOutcome {
            hash: tx.hash,
            status: Err(FailureReason::BadNonce {
                expected: sender_nonce,
                got: body.nonce,
            }),
            gas_used: 0,
            logs: Vec::new(),
            diff: StateDiff::default(),
        };
        trace!(target: "execution::engine", hash = ?tx.hash, status = ?outcome.status, "move refused");
        return Ok(outcome);
    };

    let failed = |reason: FailureReason, gas_used: u64| MoveOutcome {
        hash: tx.hash,
        status: Err(reason),
        gas_used,
        logs: Vec::new(),
        diff: StateDiff::nonce_only(tx.sender, nonce_after),
    };

    if body.to == SESSION_REGISTRY {
        let outcome = match session_call(tx, slice, nonce_after) {
            Ok(diff) => MoveOutcome {
                hash: tx.hash,
                status: Ok(()),
                gas_used: 0,
                logs: Vec::new(),
                diff,
            },
            Err(reason) => failed(reason, 0),
        };
        trace!(target: "execution::engine", hash = ?tx.hash, status = ?outcome.status, "session registry call");
        return Ok(outcome);
    }
    let session_charge = match session_charge(env, tx, slice) {
        Ok(charge) => charge,
        Err(reason) => {
            let outcome = failed(reason, 0);
            trace!(target: "execution::engine", hash = ?tx.hash, status = ?outcome.status, "session key refused");
            return Ok(outcome);
        }
    };

    let database = SliceDatabase::new(slice, BLOCK_BENEFICIARY);
    let created = tx.signed.is_create().then_some(body.to);
    let access_list = ethereum_access_list(&tx.signed);
    let outcome = match run_revm(
        env,
        tx.sender,
        body,
        (kind_of(&tx.signed), access_list),
        database,
    ) {
        Err(error) => failed(failure_from_revm(error), 0),
        Ok((ExecutionResult::Revert { gas, .. }, _)) => {
            failed(FailureReason::Reverted, gas.tx_gas_used())
        }
        Ok((ExecutionResult::Halt { gas, .. }, _)) => {
            failed(FailureReason::Halted, gas.tx_gas_used())
        }
        Ok((ExecutionResult::Success { gas, logs, .. }, state)) => {
            let credit = U256::from(body.gas_price) * U256::from(gas.tx_gas_used());
            let mut diff = collect_diff(state, slice, credit);
            if let Some((slot, value)) = session_charge {
                diff.accounts
                    .entry(tx.sender)
                    .or_default()
                    .storage
                    .insert(slot, value);
            }
            let checked = check_against_access_list(
                &diff,
                &body.access_list,
                slice,
                (tx.sender, nonce_after),
                created,
            );
            match checked {
                Ok(()) => MoveOutcome {
                    hash: tx.hash,
                    status: Ok(()),
                    gas_used: gas.tx_gas_used(),
                    logs,
                    diff,
                },
                Err(reason) => failed(reason, gas.tx_gas_used()),
            }
        }
    };
    trace!(
        target: "execution::engine",
        hash = ?tx.hash,
        status = ?outcome.status,
        gas_used = outcome.gas_used,
        "move executed"
    );
    Ok(outcome)
}

/// The value of a listed storage slot in the slice (zero if the account is absent).
fn slot_value(slice: &StateSlice, address: &Address, slot: &B256) -> U256 {
    slice
        .account(address)
        .and_then(|account| account.storage.get(slot))
        .copied()
        .unwrap_or_default()
}

/// A grant or revocation, carried out natively: it writes only the sender's own storage, as
/// its list declares (verification checked the declaration against the call).
fn session_call(
    tx: &VerifiedTransaction,
    slice: &StateSlice,
    nonce_after: u64,
) -> Result<StateDiff, FailureReason> {
    if tx.authority != Authority::Account {
        return Err(FailureReason::Session(SessionRefusal::NotAccountKey));
    }
    let call = SessionCall::from_bytes(&tx.tx().data)
        .map_err(|_| FailureReason::Session(SessionRefusal::BadGrant))?;
    call.check().map_err(FailureReason::Session)?;
    let current = slot_value(slice, &tx.sender, &session::grant_slot(call.key()));
    call.check_against(current)
        .map_err(FailureReason::Session)?;
    let mut diff = StateDiff::nonce_only(tx.sender, nonce_after);
    let account = diff.accounts.entry(tx.sender).or_default();
    for (slot, value) in call.writes() {
        if slot_value(slice, &tx.sender, &slot) != value {
            account.storage.insert(slot, value);
        }
    }
    Ok(diff)
}

/// For a session move, the session rule against the executed state, and the grant slot's
/// value after the move's charge; `None` for a move signed by the account key.
fn session_charge(
    env: &ExecutionEnv,
    tx: &VerifiedTransaction,
    slice: &StateSlice,
) -> Result<Option<(B256, U256)>, FailureReason> {
    let Authority::Session(key) = tx.authority else {
        return Ok(None);
    };
    let body = tx.tx();
    let declaration =
        session::check_declaration(body, &tx.sender, &key).map_err(FailureReason::Session)?;
    let grant = slot_value(slice, &tx.sender, &declaration.grant_slot);
    let scope = slot_value(slice, &tx.sender, &declaration.scope_slot);
    session::check_session(grant, scope, declaration.cost, env.block_number)
        .map_err(FailureReason::Session)?;
    Ok(Some((
        declaration.grant_slot,
        DeclaredWrite::Delta(session::charge(declaration.cost)).apply(grant),
    )))
}

pub(crate) type RevmOutput = (ExecutionResult, EvmState);

/// Whether revm calls the move's `to` or creates a contract there (the address revm derives
/// from sender and nonce, which verification checked is the move's `to`).
pub(crate) fn kind_of(signed: &primitives::SignedTransaction) -> TxKind {
    if signed.is_create() {
        TxKind::Create
    } else {
        TxKind::Call(signed.tx.to)
    }
}

/// The EIP-2930 access list a move signed as an Ethereum transaction carries (empty for any
/// other move). Verification checked that its items are in the Space Access List.
pub(crate) fn ethereum_access_list(signed: &primitives::SignedTransaction) -> &EthereumAccessList {
    static NONE: EthereumAccessList = EthereumAccessList(Vec::new());
    match &signed.signature {
        MoveSignature::Ethereum(signature) => &signature.access_list,
        MoveSignature::Account(_) | MoveSignature::Session { .. } => &NONE,
    }
}

/// One `transact` (no commit: the database is read-only and the diff is ours to build) of the
/// move `body` sent by `sender`, over any database that fails with [`AccessError`]. `kind` says
/// whether it calls or creates; a non-empty Ethereum access list runs it as an EIP-2930
/// transaction, as Ethereum would: the listed items start warm and their intrinsic gas is
/// charged (revm warms them without loading them, so an unused listed item reads nothing).
pub(crate) fn run_revm<DB: Database<Error = AccessError>>(
    env: &ExecutionEnv,
    sender: Address,
    body: &Transaction,
    (kind, access_list): (TxKind, &EthereumAccessList),
    database: DB,
) -> Result<RevmOutput, EVMError<AccessError>> {
    let block = BlockEnv {
        number: U256::from(env.block_number),
        beneficiary: BLOCK_BENEFICIARY,
        timestamp: U256::from(env.timestamp),
        basefee: 0,
        ..BlockEnv::default()
    };
    // A legacy (type 0) transaction, or EIP-2930 (type 1) to carry an access list: either way
    // its gas price is paid in full, with no priority fee to split. revm's nonce check stays
    // on; it agrees with ours, which ran first.
    let transaction = TxEnv {
        tx_type: u8::from(!access_list.0.is_empty()),
        caller: sender,
        gas_limit: body.gas_limit,
        gas_price: body.gas_price,
        kind,
        value: body.value,
        data: body.data.clone(),
        nonce: body.nonce,
        chain_id: Some(body.chain_id),
        access_list: access_list.clone(),
        gas_priority_fee: None,
        blob_hashes: Vec::new(),
        max_fee_per_blob_gas: 0,
        authorization_list: Vec::new(),
    };
    let ctx = MainnetContext::new(database, EVM_SPEC)
        .modify_cfg_chained(|cfg| cfg.chain_id = env.chain_id)
        .with_block(block);
    // Built field by field rather than by `build_mainnet`, which makes eight fresh call frames
    // for every EVM (each a 32 KiB stack, and a clone of revm's one global empty bytecode, whose
    // reference count every core then fights over). The frames of this thread's previous move
    // are taken instead: revm re-initialises a frame before each use, as it does between the
    // transactions of one long-lived EVM.
    let mut evm: MainnetEvm<_> = Evm {
        ctx,
        inspector: (),
        instruction: EthInstructions::new_mainnet_with_spec(EVM_SPEC),
        precompiles: EthPrecompiles::new(EVM_SPEC),
        frame_stack: CALL_FRAMES.with(std::cell::Cell::take),
    };
    let output = evm.transact(transaction);
    CALL_FRAMES.with(|frames| frames.set(std::mem::take(&mut evm.frame_stack)));
    let output = output?;
    Ok((output.result, output.state))
}

thread_local! {
    /// The call frames of the last EVM this thread ran (see [`run_revm`]).
    static CALL_FRAMES: std::cell::Cell<FrameStack<EthFrame<EthInterpreter>>> =
        std::cell::Cell::new(FrameStack::new());
}

/// The failure reason of a move revm refused or aborted.
pub(crate) fn failure_from_revm(error: EVMError<AccessError>) -> FailureReason {
    match error {
        EVMError::Database(access) => access.failure_reason(),
        EVMError::Transaction(
            InvalidTransaction::LackOfFundForMaxFee { .. }
            | InvalidTransaction::OverflowPaymentInTransaction,
        ) => FailureReason::InsufficientFunds,
        EVMError::Transaction(_)
        | EVMError::Header(_)
        | EVMError::Custom(_)
        | EVMError::CustomAny(_) => FailureReason::Halted,
    }
}

/// Every value revm's output state changed relative to the slice, sorted. Unlisted (exempt)
/// accounts are compared with the empty account, and their changes kept so that the SAL check
/// rejects them, except the fee credited to an unlisted beneficiary (`beneficiary_credit`,
/// `gas_price * gas_used`), which is burned. Only that exact credit is dropped: value a move
/// sends to the unlisted beneficiary on top of it is a write outside the list.
pub(crate) fn collect_diff(
    state: EvmState,
    slice: &StateSlice,
    beneficiary_credit: U256,
) -> StateDiff {
    let empty = AccountSlice::default();
    let mut diff = StateDiff::default();
    for (address, account) in state {
        let listed = slice.account(&address);
        let mut change = account_diff(&account, listed.unwrap_or(&empty));
        if listed.is_none()
            && address == BLOCK_BENEFICIARY
            && change.balance == Some(beneficiary_credit)
        {
            change.balance = None;
        }
        if !change.is_empty() {
            diff.accounts.insert(address, change);
        }
    }
    diff
}

/// What changed in one account. A self-destructed account (only possible for one created in
/// this move, EIP-6780) ends empty, storage included.
fn account_diff(account: &Account, before: &AccountSlice) -> AccountDiff {
    let destroyed = account.is_selfdestructed();
    let mut change = AccountDiff::default();

    let balance = if destroyed {
        U256::ZERO
    } else {
        account.info.balance
    };
    if balance != before.balance {
        change.balance = Some(balance);
    }
    let nonce = if destroyed { 0 } else { account.info.nonce };
    if nonce != before.nonce {
        change.nonce = Some(nonce);
    }
    // Only a creation in this move can have given an account code (revm is never handed an
    // EIP-7702 authorization), and only a self-destruct of such an account can take it away:
    // the code of any other account is the slice's, and comparing it byte by byte for every
    // account of every move would cost more than the rest of this diff.
    match (&account.info.code, destroyed) {
        (_, true) => {
            if !before.code.is_empty() {
                change.code = Some(Bytes::new());
            }
        }
        (Some(code), false) if account.is_created() => {
            if code.original_byte_slice() != before.code.as_ref() {
                change.code = Some(code.original_bytes());
            }
        }
        (_, false) => {}
    }

    for (key, slot) in &account.storage {
        let slot_key = B256::from(*key);
        let value = if destroyed {
            U256::ZERO
        } else {
            slot.present_value
        };
        // An unlisted slot was never read from the slice (that fails the move), so it belongs
        // to an account created in this move, and revm's original value is the reference.
        let value_before = before
            .storage
            .get(&slot_key)
            .copied()
            .unwrap_or(slot.original_value);
        if value != value_before {
            change.storage.insert(slot_key, value);
        }
    }
    if destroyed {
        for (slot, value) in &before.storage {
            if !value.is_zero() {
                change.storage.insert(*slot, U256::ZERO);
            }
        }
    }
    change
}

/// Holds the value after a move to its declaration: an exact write must produce its value, a
/// delta must take the value before to the value before plus the amount (wrapping).
fn check_declared(
    write: DeclaredWrite,
    before: U256,
    after: U256,
    item: StateItem,
) -> Result<(), FailureReason> {
    if after == write.apply(before) {
        return Ok(());
    }
    Err(match write {
        DeclaredWrite::Exact(_) => FailureReason::WrongPostValue(item),
        DeclaredWrite::Delta(_) => FailureReason::WrongDelta(item),
    })
}

/// Holds a successful run's diff to the move's Space Access List (steps 4 and 5 of the module
/// doc).
fn check_against_access_list(
    diff: &StateDiff,
    access_list: &SpaceAccessList,
    slice: &StateSlice,
    (sender, sender_nonce_after): (Address, u64),
    created: Option<Address>,
) -> Result<(), FailureReason> {
    for (address, change) in &diff.accounts {
        check_changed_account(*address, change, access_list, sender, sender_nonce_after).or_else(
            |reason| match reason {
                // A creation's code at its target is implied, as the sender's nonce is.
                FailureReason::UndeclaredWrite(StateItem::Code(at)) if Some(at) == created => {
                    let without_code = AccountDiff {
                        code: None,
                        ..change.clone()
                    };
                    check_changed_account(
                        at,
                        &without_code,
                        access_list,
                        sender,
                        sender_nonce_after,
                    )
                }
                other => Err(other),
            },
        )?;
    }
    let empty = AccountSlice::default();
    for access in access_list.accounts() {
        let address = access.address;
        let before = slice.account(&address).unwrap_or(&empty);
        let change = diff.account(&address);
        if let Some(write) = access.balance {
            let after = change.and_then(|c| c.balance).unwrap_or(before.balance);
            check_declared(write, before.balance, after, StateItem::Balance(address))?;
        }
        if let Some(declared) = access.nonce {
            let after = change.and_then(|c| c.nonce).unwrap_or(before.nonce);
            if after != declared {
                return Err(FailureReason::WrongPostValue(StateItem::Nonce(address)));
            }
        }
        for slot in &access.storage {
            let Some(write) = slot.write else { continue };
            let value_before = before.storage.get(&slot.slot).copied().unwrap_or_default();
            let after = change
                .and_then(|c| c.storage.get(&slot.slot).copied())
                .unwrap_or(value_before);
            check_declared(
                write,
                value_before,
                after,
                StateItem::Storage(address, slot.slot),
            )?;
        }
    }
    Ok(())
}

/// Step 4 for one changed account: every changed item is listed and declared.
fn check_changed_account(
    address: Address,
    change: &AccountDiff,
    access_list: &SpaceAccessList,
    sender: Address,
    sender_nonce_after: u64,
) -> Result<(), FailureReason> {
    let Some(access) = access_list.account(&address) else {
        return Err(FailureReason::OutOfAccessList(first_changed_item(
            address, change,
        )));
    };
    if change.balance.is_some() && access.balance.is_none() {
        return Err(FailureReason::UndeclaredWrite(StateItem::Balance(address)));
    }
    if let Some(nonce) = change.nonce {
        if address == sender {
            // The increment is implied; anything else would be revm breaking its own rules.
            if nonce != sender_nonce_after {
                return Err(FailureReason::WrongPostValue(StateItem::Nonce(address)));
            }
        } else if access.nonce.is_none() {
            return Err(FailureReason::UndeclaredWrite(StateItem::Nonce(address)));
        }
    }
    if change.code.is_some() {
        return Err(FailureReason::UndeclaredWrite(StateItem::Code(address)));
    }
    for slot in change.storage.keys() {
        match access.slot(slot) {
            None => {
                return Err(FailureReason::OutOfAccessList(StateItem::Storage(
                    address, *slot,
                )));
            }
            Some(declaration) if declaration.write.is_none() => {
                return Err(FailureReason::UndeclaredWrite(StateItem::Storage(
                    address, *slot,
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The item that names an unlisted account's change, in the same order as the other checks.
fn first_changed_item(address: Address, change: &AccountDiff) -> StateItem {
    if change.balance.is_some() {
        StateItem::Balance(address)
    } else if change.nonce.is_some() {
        StateItem::Nonce(address)
    } else if change.code.is_some() {
        StateItem::Code(address)
    } else {
        match change.storage.keys().next() {
            Some(slot) => StateItem::Storage(address, *slot),
            // `collect_diff` keeps only non-empty changes.
            None => StateItem::Balance(address),
        }
    }
}

#[cfg(test)]
mod tests;
