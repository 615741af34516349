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
//!
//! **Reads.** The schedule is built on one core while the other reads every move's slice from
//! the state at the batch's start: the first wave's inputs. A later wave reads its members'
//! slices when it starts, after the waves before it are applied, so their first reads were in
//! vain: a batch of long conflict chains, which gains nothing from threads anyway, pays its
//! reads twice.
//!
//! **Steps.** A wave runs in steps of a fixed number of members, settled one after the other as
//! above, each step's predictions starting from the exact deltas of the steps before it. While
//! a step runs, the settled results of the step before are applied to the state (every slice
//! of the wave was read before the first step ran), so applying results in batch order, the
//! serial part of the work, overlaps the parallel part.

use alloy_primitives::{Address, B256, U256, map::HashMap};
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

impl ItemLevels {
    /// The earliest wave (from 1) a move touching the item with `access` may take.
    fn earliest(&self, access: Access) -> usize {
        match access {
            Access::Read => self.write.max(self.delta) + 1,
            Access::Write => self.write.max(self.delta).max(self.read) + 1,
            Access::Delta => (self.write.max(self.read) + 1).max(self.delta),
        }
    }

    /// Records that a move in `wave` touches the item with `access`.
    fn record(&mut self, access: Access, wave: usize) {
        let level = match access {
            Access::Read => &mut self.read,
            Access::Write => &mut self.write,
            Access::Delta => &mut self.delta,
        };
        *level = (*level).max(wave);
    }
}

/// The levels of one account's balance and nonce; its slots are kept apart.
#[derive(Clone, Copy, Default)]
struct AccountLevels {
    balance: ItemLevels,
    nonce: ItemLevels,
}

fn access_of(write: Option<DeclaredWrite>) -> Access {
    match write {
        None => Access::Read,
        Some(DeclaredWrite::Exact(_)) => Access::Write,
        Some(DeclaredWrite::Delta(_)) => Access::Delta,
    }
}

impl Schedule {
    /// Places every move of `batch` in the earliest wave its conflicts allow.
    ///
    /// The items are those of [`accesses`], looked up once per account and once per slot: the
    /// schedule is the serial part of [`execute_parallel`], so it is kept to a few hash lookups
    /// per move.
    pub fn new(batch: &[VerifiedTransaction]) -> Self {
        // Accounts and slots are numbered on first sight; levels live in flat vectors.
        // Sized for two accounts and a slot a move, the common game move, so that the maps
        // are not rebuilt as they grow.
        let mut account_index: HashMap<Address, usize> =
            HashMap::with_capacity_and_hasher(2 * batch.len(), Default::default());
        let mut slot_index: HashMap<(usize, B256), usize> =
            HashMap::with_capacity_and_hasher(batch.len(), Default::default());
        let mut account_levels: Vec<AccountLevels> = Vec::with_capacity(2 * batch.len());
        let mut slot_levels: Vec<ItemLevels> = Vec::with_capacity(batch.len());
        let mut waves: Vec<Vec<usize>> = Vec::new();
        // This move's accounts (index, balance access, nonce access) and slots (index, access).
        let mut touched_accounts: Vec<(usize, Access, Access)> = Vec::new();
        let mut touched_slots: Vec<(usize, Access)> = Vec::new();
        for (index, tx) in batch.iter().enumerate() {
            touched_accounts.clear();
            touched_slots.clear();
            // Waves are numbered from 1 here, so that 0 in `ItemLevels` means "nobody".
            let mut wave = 1;
            for account in tx.tx().access_list.accounts() {
                let next = account_levels.len();
                let number = *account_index.entry(account.address).or_insert(next);
                if number == next {
                    account_levels.push(AccountLevels::default());
                }
                let balance = access_of(account.balance);
                let nonce = if account.nonce.is_some() || account.address == tx.sender {
                    Access::Write
                } else {
                    Access::Read
                };
                let levels = &account_levels[number];
                wave = wave
                    .max(levels.balance.earliest(balance))
                    .max(levels.nonce.earliest(nonce));
                touched_accounts.push((number, balance, nonce));
                // Code never changes (the engine fails a move that would change it), so
                // reading it conflicts with nothing and it is left out.
                for slot in &account.storage {
                    let next = slot_levels.len();
                    let slot_number = *slot_index.entry((number, slot.slot)).or_insert(next);
                    if slot_number == next {
                        slot_levels.push(ItemLevels::default());
                    }
                    let access = access_of(slot.write);
                    wave = wave.max(slot_levels[slot_number].earliest(access));
                    touched_slots.push((slot_number, access));
                }
            }
            for (number, balance, nonce) in &touched_accounts {
                let levels = &mut account_levels[*number];
                levels.balance.record(*balance, wave);
                levels.nonce.record(*nonce, wave);
            }
            for (number, access) in &touched_slots {
                slot_levels[*number].record(*access, wave);
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

/// Moves of a wave run per step (see [`execute_parallel`]): enough that the pool's join at the
/// end of a step costs little, few enough that applying a step's results overlaps most of
/// the wave.
const STEP: usize = 128;

/// Runs `batch` wave by wave on rayon's pool and applies the results in batch order. Final state
/// and outcomes equal [`execute_sequential`]'s.
///
/// Within a wave, every member's slice is read from the state at the wave's start, all at once
/// and in parallel (no member reads what another writes, except through deltas, which are
/// offset as the module doc says). The wave then runs in steps of [`STEP`] members: while a step
/// runs, the results of the step before it are applied to the state, so that the serial part
/// of the work (applying diffs in batch order) overlaps the parallel part.
pub fn execute_parallel(
    env: &ExecutionEnv,
    batch: &[VerifiedTransaction],
    state: &mut InMemoryState,
) -> Vec<MoveOutcome> {
    execute_parallel_in_steps(env, batch, state, STEP)
}

/// [`execute_parallel`] with `step` members per step.
fn execute_parallel_in_steps(
    env: &ExecutionEnv,
    batch: &[VerifiedTransaction],
    state: &mut InMemoryState,
    step: usize,
) -> Vec<MoveOutcome> {
    // On a worker of the pool, so that the many small joins below are not each sent to the pool
    // from outside and waited for.
    rayon::scope(|_| {
        // The schedule is serial work and every move's slice at the batch's start is parallel
        // work that needs no schedule, so the two are done side by side. Those slices are the
        // first wave's inputs; a later wave reads its own at its start, once the waves before
        // it are applied.
        let reader: &InMemoryState = state;
        let (schedule, mut first_inputs) = rayon::join(
            || Schedule::new(batch),
            || {
                batch
                    .par_iter()
                    .map(|tx| Some(Input::at(reader, tx)))
                    .collect::<Vec<_>>()
            },
        );
        let mut outcomes: Vec<Option<MoveOutcome>> = (0..batch.len()).map(|_| None).collect();
        for (number, wave) in schedule.waves.iter().enumerate() {
            let inputs = if number == 0 {
                let inputs = wave
                    .iter()
                    .map(|index| first_inputs[*index].take().expect("one wave per move"))
                    .collect();
                free_in_parallel(std::mem::take(&mut first_inputs));
                inputs
            } else {
                let reader: &InMemoryState = state;
                wave.par_iter()
                    .map(|index| Input::at(reader, &batch[*index]))
                    .collect()
            };
            execute_wave(env, batch, wave, inputs, state, &mut outcomes, step);
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every move is in one wave"))
            .collect()
    })
}

/// Drops `items` on the pool: freeing thousands of small maps is otherwise a serial tail.
fn free_in_parallel<T: Send>(items: Vec<T>) {
    items.into_par_iter().for_each(drop);
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

/// Adds (`negate` false) or takes back (`negate` true) `offsets` (one per delta item, same
/// order) to the slice's values of those items. Wrapping, so taking back restores the slice
/// exactly.
fn offset_slice(
    slice: &mut StateSlice,
    items: &[(StateItem, U256)],
    offsets: &[U256],
    negate: bool,
) {
    for ((item, _), offset) in items.iter().zip(offsets) {
        let value = match item {
            StateItem::Balance(address) => {
                &mut slice
                    .accounts
                    .get_mut(address)
                    .expect("listed account")
                    .balance
            }
            StateItem::Storage(address, slot) => slice
                .accounts
                .get_mut(address)
                .expect("listed account")
                .storage
                .get_mut(slot)
                .expect("listed slot"),
            StateItem::Nonce(_) | StateItem::Code(_) => {
                unreachable!("only balances and slots take deltas")
            }
        };
        *value = if negate {
            value.wrapping_sub(*offset)
        } else {
            value.wrapping_add(*offset)
        };
    }
}

/// A member's input: its slice at the wave's start and its delta items.
struct Input {
    slice: StateSlice,
    deltas: Vec<(StateItem, U256)>,
}

impl Input {
    /// `tx`'s input on `state`.
    fn at(state: &InMemoryState, tx: &VerifiedTransaction) -> Self {
        Input {
            slice: state.slice(&tx.tx().access_list),
            deltas: delta_items(tx),
        }
    }
}

/// A member's latest run: the offsets its slice had, and what came of it.
struct Run {
    offsets: Vec<U256>,
    outcome: MoveOutcome,
}

/// Runs one wave (members in batch order, pairwise conflict-free) from `inputs` (its members'
/// inputs, read at its start), settling delta predictions as the module doc says, and applies
/// the results to `state` in batch order, storing each outcome at its move's index.
fn execute_wave(
    env: &ExecutionEnv,
    batch: &[VerifiedTransaction],
    wave: &[usize],
    mut inputs: Vec<Input>,
    state: &mut InMemoryState,
    outcomes: &mut [Option<MoveOutcome>],
    step: usize,
) {
    // The deltas of the successful members of the settled steps, by item.
    let mut sums: HashMap<StateItem, U256> = HashMap::default();
    // The settled results of the step before, not yet applied, and where that step starts.
    let mut pending: Vec<MoveOutcome> = Vec::new();
    let mut pending_start = 0;
    let mut start = 0;
    for step_inputs in inputs.chunks_mut(step.max(1)) {
        let members = &wave[start..start + step_inputs.len()];
        let ((), settled) = rayon::join(
            || {
                for outcome in &pending {
                    state.apply(&outcome.diff);
                }
            },
            || settle_step(env, batch, members, step_inputs, &mut sums),
        );
        for (index, outcome) in wave[pending_start..].iter().zip(pending.drain(..)) {
            outcomes[*index] = Some(outcome);
        }
        pending = settled;
        pending_start = start;
        start += members.len();
    }
    let ((), ()) = rayon::join(
        || {
            for (index, outcome) in wave[pending_start..].iter().zip(pending) {
                state.apply(&outcome.diff);
                outcomes[*index] = Some(outcome);
            }
        },
        || free_in_parallel(inputs),
    );
}

/// Runs one step of a wave until every member's prediction holds, given `sums`, the deltas of
/// the successful members of the steps before; then adds this step's successful deltas to
/// `sums`. Returns the members' outcomes, in order.
fn settle_step(
    env: &ExecutionEnv,
    batch: &[VerifiedTransaction],
    members: &[usize],
    inputs: &mut [Input],
    sums: &mut HashMap<StateItem, U256>,
) -> Vec<MoveOutcome> {
    let mut runs: Vec<Option<Run>> = (0..members.len()).map(|_| None).collect();
    // A bound, not a guess: each round settles at least one more member.
    for _round in 0..=members.len() {
        let stale = predictions(inputs, &runs, sums);
        if stale.iter().all(Option::is_none) {
            break;
        }
        inputs
            .par_iter_mut()
            .zip(runs.par_iter_mut())
            .zip(stale)
            .zip(members.par_iter())
            .for_each(|(((input, run), stale), index)| {
                let Some(offsets) = stale else { return };
                let tx = &batch[*index];
                offset_slice(&mut input.slice, &input.deltas, &offsets, false);
                let outcome =
                    execute(env, tx, &input.slice).expect("a slice of the state matches its list");
                offset_slice(&mut input.slice, &input.deltas, &offsets, true);
                *run = Some(Run { offsets, outcome });
            });
    }
    let outcomes: Vec<MoveOutcome> = runs
        .into_iter()
        .map(|run| {
            run.expect("every member settles within members + 1 rounds")
                .outcome
        })
        .collect();
    for (input, outcome) in inputs.iter().zip(&outcomes) {
        if outcome.is_success() {
            for (item, amount) in &input.deltas {
                let sum = sums.entry(*item).or_default();
                *sum = sum.wrapping_add(*amount);
            }
        }
    }
    outcomes
}

/// Walks the members in batch order and returns, for each, `Some(offsets)` if its latest run
/// (if any) used other offsets than the ones `settled` (the deltas of earlier steps) and
/// earlier members' results now give. A member not yet run, or whose run is stale, is assumed
/// to succeed for the members after it.
fn predictions(
    inputs: &[Input],
    runs: &[Option<Run>],
    settled: &HashMap<StateItem, U256>,
) -> Vec<Option<Vec<U256>>> {
    let mut sums: Option<HashMap<StateItem, U256>> = None;
    let mut stale = Vec::with_capacity(inputs.len());
    for (input, run) in inputs.iter().zip(runs) {
        let items = &input.deltas;
        if items.is_empty() {
            stale.push(run.is_none().then(Vec::new));
            continue;
        }
        let sums = sums.get_or_insert_with(|| settled.clone());
        let offsets: Vec<U256> = items
            .iter()
            .map(|(item, _)| sums.get(item).copied().unwrap_or_default())
            .collect();
        let succeeds = match run {
            Some(run) if run.offsets == offsets => {
                stale.push(None);
                run.outcome.is_success()
            }
            _ => {
                stale.push(Some(offsets));
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
