//! The parallel schedule of a batch: which moves may run at once, and running them so that the
//! result is exactly that of running the batch in order.
//!
//! **Conflicts.** From its Space Access List each move reads, writes or adds a delta to items
//! (balance, nonce and slots of every listed account; the sender's nonce is always written).
//! Two moves conflict when they touch one item and at least one of them writes it, except that
//! two deltas on one item never conflict: deltas commute.
//!
//! **Waves.** Moves are placed in waves in batch order: a move goes after every earlier move it
//! conflicts with, and no earlier than any earlier move that adds a delta to an item it also
//! adds to. So within a wave no move reads or writes what another changes, except through
//! deltas, and a delta item sees the deltas of earlier moves of the batch either in an earlier
//! wave or, in batch order, in its own.
//!
//! **Deltas within a wave.** A move's result is a function of its slice. For a delta item, the
//! value it would see in batch order is the value at the start of the wave plus the deltas of the
//! earlier moves of the wave that succeed, and a successful move changes the item by exactly its
//! declared delta (the engine enforces it). So each move runs on a slice predicted by assuming
//! every earlier move of the wave succeeds. A prediction is checked afterwards in batch order;
//! a move whose prediction was wrong (an earlier move failed) runs again on the corrected slice.
//! Each round settles at least the first unsettled move, so the wave ends; with no failures it
//! takes one round. Results are then applied in batch order, which makes the final state and
//! every per-move outcome equal to sequential execution.

use std::collections::HashMap;

use alloy_primitives::U256;
use primitives::{DeclaredWrite, VerifiedTransaction, finality::StateItem};
use rayon::prelude::*;

use crate::{
    engine::{ExecutionEnv, MoveOutcome, execute},
    slice::StateSlice,
    state::InMemoryState,
};

/// How a move touches one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only.
    Read,
    /// Writes an exact value (or, for the sender's nonce, the implied increment).
    Write,
    /// Adds a delta.
    Delta,
}

/// Every item a move touches and how, from its Space Access List.
pub fn accesses(tx: &VerifiedTransaction) -> Vec<(StateItem, Access)> {
    let kind = |write: Option<DeclaredWrite>| match write {
        None => Access::Read,
        Some(DeclaredWrite::Exact(_)) => Access::Write,
        Some(DeclaredWrite::Delta(_)) => Access::Delta,
    };
    let mut items = Vec::new();
    for account in tx.tx().access_list.accounts() {
        let address = account.address;
        items.push((StateItem::Balance(address), kind(account.balance)));
        let nonce_written = account.nonce.is_some() || address == tx.sender;
        let nonce = if nonce_written {
            Access::Write
        } else {
            Access::Read
        };
        items.push((StateItem::Nonce(address), nonce));
        // Code never changes (the engine fails a move that would change it), so reading it
        // conflicts with nothing and it is left out.
        for slot in &account.storage {
            items.push((StateItem::Storage(address, slot.slot), kind(slot.write)));
        }
    }
    items
}

/// The waves of a batch: indices into the batch, each wave in batch order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Moves that may run at once, wave after wave.
    pub waves: Vec<Vec<usize>>,
}

/// The latest wave (plus one, zero for none) in which earlier moves touched an item, by kind.
#[derive(Clone, Copy, Default)]
struct ItemLevels {
    read: usize,
    write: usize,
    delta: usize,
}

impl Schedule {
    /// Places every move of `batch` in the earliest wave its conflicts allow.
    pub fn new(batch: &[VerifiedTransaction]) -> Self {
        let mut levels: HashMap<StateItem, ItemLevels> = HashMap::new();
        let mut waves: Vec<Vec<usize>> = Vec::new();
        let mut move_accesses = Vec::new();
        for (index, tx) in batch.iter().enumerate() {
            move_accesses.clear();
            move_accesses.extend(accesses(tx));
            // Waves are numbered from 1 here, so that 0 in `ItemLevels` means "nobody".
            let mut wave = 1;
            for (item, access) in &move_accesses {
                let Some(seen) = levels.get(item) else {
                    continue;
                };
                let after = match access {
                    Access::Read => seen.write.max(seen.delta) + 1,
                    Access::Write => seen.write.max(seen.delta).max(seen.read) + 1,
                    Access::Delta => (seen.write.max(seen.read) + 1).max(seen.delta),
                };
                wave = wave.max(after);
            }
            for (item, access) in &move_accesses {
                let seen = levels.entry(*item).or_default();
                let level = match access {
                    Access::Read => &mut seen.read,
                    Access::Write => &mut seen.write,
                    Access::Delta => &mut seen.delta,
                };
                *level = (*level).max(wave);
            }
            if waves.len() < wave {
                waves.resize_with(wave, Vec::new);
            }
            waves[wave - 1].push(index);
        }
        Schedule { waves }
    }
}

/// Runs `batch` in order against `state`, applying each move's diff before the next runs.
pub fn execute_sequential(
    env: &ExecutionEnv,
    batch: &[VerifiedTransaction],
    state: &mut InMemoryState,
) -> Vec<MoveOutcome> {
    batch
        .iter()
        .map(|tx| {
            let slice = state.slice(&tx.tx().access_list);
            let outcome = execute(env, tx, &slice).expect("a slice of the state matches its list");
            state.apply(&outcome.diff);
            outcome
        })
        .collect()
}

/// Runs `batch` wave by wave, each wave's moves in parallel on rayon's pool, and applies the
/// results in batch order. Final state and outcomes equal [`execute_sequential`]'s.
pub fn execute_parallel(
    env: &ExecutionEnv,
    batch: &[VerifiedTransaction],
    state: &mut InMemoryState,
) -> Vec<MoveOutcome> {
    let schedule = Schedule::new(batch);
    let mut outcomes: Vec<Option<MoveOutcome>> = vec![None; batch.len()];
    for wave in &schedule.waves {
        let members: Vec<&VerifiedTransaction> = wave.iter().map(|index| &batch[*index]).collect();
        let wave_outcomes = execute_wave(env, &members, state);
        // Members are in batch order, so applying in this order is applying in batch order.
        for (index, outcome) in wave.iter().zip(wave_outcomes) {
            state.apply(&outcome.diff);
            outcomes[*index] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every move is in one wave"))
        .collect()
}

/// One move's delta items and declared amounts (as raw wrapping words).
fn delta_items(tx: &VerifiedTransaction) -> Vec<(StateItem, U256)> {
    let mut items = Vec::new();
    for account in tx.tx().access_list.accounts() {
        if let Some(DeclaredWrite::Delta(amount)) = account.balance {
            items.push((StateItem::Balance(account.address), amount.into_raw()));
        }
        for slot in &account.storage {
            if let Some(DeclaredWrite::Delta(amount)) = slot.write {
                items.push((
                    StateItem::Storage(account.address, slot.slot),
                    amount.into_raw(),
                ));
            }
        }
    }
    items
}

/// Adds `offsets` (one per delta item, same order) to the slice's values of those items.
fn offset_slice(
    mut slice: StateSlice,
    items: &[(StateItem, U256)],
    offsets: &[U256],
) -> StateSlice {
    for ((item, _), offset) in items.iter().zip(offsets) {
        match item {
            StateItem::Balance(address) => {
                let account = slice.accounts.get_mut(address).expect("listed account");
                account.balance = account.balance.wrapping_add(*offset);
            }
            StateItem::Storage(address, slot) => {
                let account = slice.accounts.get_mut(address).expect("listed account");
                let value = account.storage.get_mut(slot).expect("listed slot");
                *value = value.wrapping_add(*offset);
            }
            StateItem::Nonce(_) | StateItem::Code(_) => {
                unreachable!("only balances and slots take deltas")
            }
        }
    }
    slice
}

/// A member's latest run: the offsets its slice had, and what came of it.
struct Run {
    offsets: Vec<U256>,
    outcome: MoveOutcome,
}

/// Runs one wave (members in batch order, pairwise conflict-free) against the state at its
/// start, settling delta predictions as the module doc says.
fn execute_wave(
    env: &ExecutionEnv,
    members: &[&VerifiedTransaction],
    state: &InMemoryState,
) -> Vec<MoveOutcome> {
    let deltas: Vec<Vec<(StateItem, U256)>> = members.iter().map(|tx| delta_items(tx)).collect();
    let mut runs: Vec<Option<Run>> = (0..members.len()).map(|_| None).collect();
    // A bound, not a guess: each round settles at least one more member.
    for _round in 0..=members.len() {
        let stale = predictions(&deltas, &runs);
        if stale.is_empty() {
            break;
        }
        let fresh: Vec<(usize, Run)> = stale
            .into_par_iter()
            .map(|(position, offsets)| {
                let tx = members[position];
                let slice = offset_slice(
                    state.slice(&tx.tx().access_list),
                    &deltas[position],
                    &offsets,
                );
                let outcome =
                    execute(env, tx, &slice).expect("a slice of the state matches its list");
                (position, Run { offsets, outcome })
            })
            .collect();
        for (position, run) in fresh {
            runs[position] = Some(run);
        }
    }
    runs.into_iter()
        .map(|run| {
            run.expect("every member settles within members + 1 rounds")
                .outcome
        })
        .collect()
}

/// Walks the members in batch order and returns those whose latest run (if any) used other
/// offsets than the ones earlier members' results now give, with the offsets to use. A member
/// not yet run, or whose run is stale, is assumed to succeed for the members after it.
fn predictions(deltas: &[Vec<(StateItem, U256)>], runs: &[Option<Run>]) -> Vec<(usize, Vec<U256>)> {
    let mut sums: HashMap<StateItem, U256> = HashMap::new();
    let mut stale = Vec::new();
    for (position, items) in deltas.iter().enumerate() {
        if items.is_empty() && runs[position].is_some() {
            continue;
        }
        let offsets: Vec<U256> = items
            .iter()
            .map(|(item, _)| sums.get(item).copied().unwrap_or_default())
            .collect();
        let succeeds = match &runs[position] {
            Some(run) if run.offsets == offsets => run.outcome.is_success(),
            _ => {
                stale.push((position, offsets));
                true
            }
        };
        if succeeds {
            for (item, amount) in items {
                let sum = sums.entry(*item).or_default();
                *sum = sum.wrapping_add(*amount);
            }
        }
    }
    stale
}

#[cfg(test)]
mod tests;
