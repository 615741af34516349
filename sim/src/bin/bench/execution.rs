//! `execution`: the engine side by side with plain revm, and the parallel schedule side by side
//! with sequential execution, each on the same moves in one run (DESIGN.md, performance budget).
//!
//! Two kinds of move, each reported: a transfer, and a game move that adds to a storage cell
//! (`cell[word0] += word1` on a small contract). Their lists come from `execution::estimate`
//! in batch order, so every declaration is right. Batches:
//! - conflict-free: every move touches only its own sender, its own recipient or its own cell;
//! - 10 % conflict: a tenth of the game moves write another player's cell (exact writes);
//! - hot slot: every game move adds a delta to one shared cell.
//!
//! Each side-by-side figure is the median of `SIDE_BY_SIDE_RUNS` runs from the same starting
//! state, the two modes alternating; a run is timed until it returns its results.
//!
//! The full commit path runs `ROUNDS` consecutive batches (nonces 0, 1, …) against the
//! authenticated state on RocksDB ([`DurableState`]) holding the benchmark's accounts plus
//! `FILLER_ACCOUNTS` others (so the trie has the depth of a real state, at two sizes): load the
//! batch's working set, run it in parallel, stage the new records and roots, write. It reports
//! moves/s over the whole path and each phase's share; the stage share is the root update
//! (trie reads and hashing along the changed paths).

use std::time::{Duration, Instant};

use execution::{
    AccountState, DurableState, ExecutionEnv, InMemoryState, MoveOutcome, PlainOutcome, estimate,
    execute, execute_parallel, execute_plain, execute_sequential,
};
use primitives::{
    AccountKey, Address, B256, Bytes, Transaction, U256, VerifiedTransaction, finality::StateItem,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::report::{BenchReport, Op};

use crate::Args;

const CHAIN_ID: u64 = 7;
const MOVES_PER_BATCH: usize = 2_000;
const ROUNDS: usize = 7;
const CONFLICT_SHARE: f64 = 0.10;
const HOT_CELL: u64 = u64::MAX;
/// Accounts the store holds besides the benchmark's own.
const FILLER_ACCOUNTS: [usize; 2] = [10_000, 1_000_000];

/// `cell[word0] += word1` (wrapping), reverting unless the new value is below `word2`.
const GAME_CODE: [u8; 26] = [
    0x60, 0x20, 0x35, 0x60, 0x00, 0x35, 0x54, 0x01, 0x60, 0x40, 0x35, 0x81, 0x10, 0x60, 0x14, 0x57,
    0x60, 0x00, 0x80, 0xfd, 0x5b, 0x60, 0x00, 0x35, 0x55, 0x00,
];

fn env() -> ExecutionEnv {
    ExecutionEnv {
        chain_id: CHAIN_ID,
        block_number: 1,
        timestamp: 1_700_000_000,
    }
}

fn game() -> Address {
    Address::repeat_byte(0xc0)
}

/// Senders are keys; recipients are plain addresses that never send.
struct World {
    keys: Vec<AccountKey>,
    genesis: InMemoryState,
}

fn recipient(index: usize) -> Address {
    let mut bytes = [0x5e; 20];
    bytes[12..].copy_from_slice(&(index as u64).to_be_bytes());
    Address::from(bytes)
}

fn world() -> World {
    let keys: Vec<AccountKey> = (0..MOVES_PER_BATCH as u64)
        .map(|seed| AccountKey::from_seed(seed + 1))
        .collect();
    let mut genesis = InMemoryState::new();
    for key in &keys {
        genesis.insert_account(
            key.address(),
            AccountState {
                balance: U256::from(1_000_000_000u64),
                ..AccountState::default()
            },
        );
    }
    genesis.insert_account(
        game(),
        AccountState {
            nonce: 1,
            code: Bytes::from_static(&GAME_CODE),
            ..AccountState::default()
        },
    );
    World { keys, genesis }
}

fn body(to: Address, value: u64, data: Bytes) -> Transaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce: 0,
        to,
        value: U256::from(value),
        data,
        gas_limit: 100_000,
        gas_price: 0,
        sponsor: None,
        access_list: Default::default(),
    }
}

fn game_data(cell: u64, amount: u64) -> Bytes {
    let mut data = Vec::with_capacity(96);
    data.extend_from_slice(&U256::from(cell).to_be_bytes::<32>());
    data.extend_from_slice(&U256::from(amount).to_be_bytes::<32>());
    data.extend_from_slice(&U256::MAX.to_be_bytes::<32>());
    data.into()
}

/// Estimates each move's list in batch order on a running copy of `genesis`, then signs it.
fn batch(
    world: &World,
    bodies: Vec<(usize, Transaction)>,
    deltas: &[StateItem],
) -> Vec<VerifiedTransaction> {
    let mut state = world.genesis.clone();
    bodies
        .into_iter()
        .map(|(sender, mut body)| {
            let key = &world.keys[sender];
            let found = estimate(&env(), key.address(), &body, &state, deltas);
            assert_eq!(found.status, Ok(()), "benchmark moves succeed");
            body.access_list = found.access_list;
            let tx = body.sign(key).verify(CHAIN_ID).expect("well-formed move");
            execute_plain(&env(), &tx, &mut state);
            tx
        })
        .collect()
}

fn transfers(world: &World) -> Vec<VerifiedTransaction> {
    let bodies = (0..MOVES_PER_BATCH)
        .map(|index| (index, body(recipient(index), 1_000, Bytes::new())))
        .collect();
    batch(world, bodies, &[])
}

fn game_moves(world: &World, conflict_share: f64) -> Vec<VerifiedTransaction> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let bodies = (0..MOVES_PER_BATCH)
        .map(|index| {
            let cell = if rng.random_bool(conflict_share) {
                rng.random_range(0..MOVES_PER_BATCH) as u64
            } else {
                index as u64
            };
            (index, body(game(), 0, game_data(cell, 3)))
        })
        .collect();
    batch(world, bodies, &[])
}

fn hot_moves(world: &World) -> Vec<VerifiedTransaction> {
    let bodies = (0..MOVES_PER_BATCH)
        .map(|index| {
            (
                index,
                body(game(), 0, game_data(HOT_CELL, 1 + index as u64 % 5)),
            )
        })
        .collect();
    let hot = StateItem::Storage(game(), B256::from(U256::from(HOT_CELL)));
    batch(world, bodies, &[hot])
}

/// Runs of each mode in the side-by-side figures. Each run takes a few milliseconds, and two
/// cores under a hypervisor have slow spells that last several runs, so the figures are medians
/// over many runs, the two modes alternating so that both meet the same spells.
const SIDE_BY_SIDE_RUNS: usize = 41;

/// Whether the thread pool is woken just before a timed run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// As the run before left it: asleep after a sequential run.
    AsLeft,
    /// Every worker running when the timed run starts, as in a node executing batch after
    /// batch. Waking a halted virtual core costs here from tens of microseconds to over a
    /// millisecond, a large and erratic share of a 2,000-move batch, which the `cold` figures
    /// report apart.
    Awake,
}

/// Median moves/s of `first` and of `second` over [`SIDE_BY_SIDE_RUNS`] alternating runs, each
/// from a fresh copy of `genesis`; `pool` says how the pool is before each run of `second`.
fn side_by_side<A, B>(
    genesis: &InMemoryState,
    moves: &[VerifiedTransaction],
    mut first: impl FnMut(&[VerifiedTransaction], &mut InMemoryState) -> A,
    mut second: impl FnMut(&[VerifiedTransaction], &mut InMemoryState) -> B,
    pool: Pool,
) -> (f64, f64) {
    let mut first_rates = Vec::with_capacity(SIDE_BY_SIDE_RUNS);
    let mut second_rates = Vec::with_capacity(SIDE_BY_SIDE_RUNS);
    for _ in 0..SIDE_BY_SIDE_RUNS {
        first_rates.push(moves_per_s(genesis, moves, &mut first, Pool::AsLeft));
        second_rates.push(moves_per_s(genesis, moves, &mut second, pool));
    }
    (median(first_rates), median(second_rates))
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Moves/s of one run of `run` from a fresh copy of `genesis`, timed until it returns its
/// results. Freeing the results and the state is the same work in every mode, and not
/// execution: it is left out of the time.
fn moves_per_s<T>(
    genesis: &InMemoryState,
    moves: &[VerifiedTransaction],
    run: &mut impl FnMut(&[VerifiedTransaction], &mut InMemoryState) -> T,
    pool: Pool,
) -> f64 {
    let mut state = genesis.clone();
    if pool == Pool::Awake {
        // Every worker runs this, and spins a while for more work before it sleeps again.
        rayon::broadcast(|_| ());
    }
    let started = Instant::now();
    let results = run(moves, &mut state);
    let elapsed = started.elapsed();
    drop((results, state));
    moves.len() as f64 / elapsed.as_secs_f64()
}

fn plain(moves: &[VerifiedTransaction], state: &mut InMemoryState) -> Vec<PlainOutcome> {
    moves
        .iter()
        .map(|tx| {
            let outcome = execute_plain(&env(), tx, state);
            assert!(outcome.status.is_ok());
            outcome
        })
        .collect()
}

fn enforced(moves: &[VerifiedTransaction], state: &mut InMemoryState) -> Vec<MoveOutcome> {
    moves
        .iter()
        .map(|tx| {
            let slice = state.slice(&tx.tx().access_list);
            let outcome = execute(&env(), tx, &slice).expect("slice matches");
            assert!(outcome.is_success());
            state.apply(&outcome.diff);
            outcome
        })
        .collect()
}

fn sequential(moves: &[VerifiedTransaction], state: &mut InMemoryState) -> Vec<MoveOutcome> {
    let outcomes = execute_sequential(&env(), moves, state);
    assert!(outcomes.iter().all(|outcome| outcome.is_success()));
    outcomes
}

fn parallel(moves: &[VerifiedTransaction], state: &mut InMemoryState) -> Vec<MoveOutcome> {
    let outcomes = execute_parallel(&env(), moves, state);
    assert!(outcomes.iter().all(|outcome| outcome.is_success()));
    outcomes
}

/// `ROUNDS` consecutive batches of the same moves: round `r` uses nonce `r`, each list estimated
/// on the state the earlier rounds leave.
fn consecutive_batches(world: &World, bodies: &[Transaction]) -> Vec<Vec<VerifiedTransaction>> {
    let mut state = world.genesis.clone();
    (0..ROUNDS as u64)
        .map(|round| {
            bodies
                .iter()
                .enumerate()
                .map(|(sender, body)| {
                    let key = &world.keys[sender];
                    let mut body = body.clone();
                    body.nonce = round;
                    let found = estimate(&env(), key.address(), &body, &state, &[]);
                    assert_eq!(found.status, Ok(()), "benchmark moves succeed");
                    body.access_list = found.access_list;
                    let tx = body.sign(key).verify(CHAIN_ID).expect("well-formed move");
                    execute_plain(&env(), &tx, &mut state);
                    tx
                })
                .collect()
        })
        .collect()
}

/// Time per phase of the commit path, summed over batches.
#[derive(Default)]
struct CommitPhases {
    load: Duration,
    execute: Duration,
    stage: Duration,
    write: Duration,
}

impl CommitPhases {
    fn total(&self) -> Duration {
        self.load + self.execute + self.stage + self.write
    }
}

/// A store holding `genesis` and `filler` other funded accounts.
fn durable_genesis(
    genesis: &InMemoryState,
    filler: usize,
) -> anyhow::Result<(tempfile::TempDir, DurableState)> {
    let dir = tempfile::tempdir()?;
    let mut state = genesis.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(filler as u64);
    for _ in 0..filler {
        state.insert_account(
            Address::from(rng.random::<[u8; 20]>()),
            AccountState {
                balance: U256::from(1u64),
                ..AccountState::default()
            },
        );
    }
    let mut durable = DurableState::open(dir.path())?;
    durable.apply_genesis(&state)?;
    Ok((dir, durable))
}

/// Runs `batches` in order through the full commit path on `durable`.
fn commit_path(
    durable: &mut DurableState,
    batches: &[Vec<VerifiedTransaction>],
) -> anyhow::Result<CommitPhases> {
    let mut phases = CommitPhases::default();
    for (index, moves) in batches.iter().enumerate() {
        let started = Instant::now();
        let mut working = durable.working_set(moves.iter().map(|tx| &tx.tx().access_list))?;
        let loaded = Instant::now();
        let outcomes = execute_parallel(&env(), moves, &mut working);
        anyhow::ensure!(
            outcomes.iter().all(|outcome| outcome.is_success()),
            "benchmark moves succeed"
        );
        let executed = Instant::now();
        let staged = durable.stage(index as u64 + 1, outcomes.iter().map(|o| &o.diff))?;
        let stage_done = Instant::now();
        durable.commit(staged)?;
        let written = Instant::now();
        phases.load += loaded - started;
        phases.execute += executed - loaded;
        phases.stage += stage_done - executed;
        phases.write += written - stage_done;
    }
    Ok(phases)
}

fn durable_figures(report: &mut BenchReport, world: &World) -> anyhow::Result<()> {
    let transfer_bodies: Vec<Transaction> = (0..MOVES_PER_BATCH)
        .map(|index| body(recipient(index), 1_000, Bytes::new()))
        .collect();
    let game_bodies: Vec<Transaction> = (0..MOVES_PER_BATCH)
        .map(|index| body(game(), 0, game_data(index as u64, 3)))
        .collect();
    let kinds = [
        ("transfer", consecutive_batches(world, &transfer_bodies)),
        ("game", consecutive_batches(world, &game_bodies)),
    ];
    for filler in FILLER_ACCOUNTS {
        for (kind, batches) in &kinds {
            let (_dir, mut durable) = durable_genesis(&world.genesis, filler)?;
            let phases = commit_path(&mut durable, batches)?;
            let total = phases.total().as_secs_f64();
            let moves = (batches.len() * MOVES_PER_BATCH) as f64;
            let name = format!("durable_{kind}_{filler}_accounts");
            report.figure(&format!("{name}_moves_per_s"), moves / total);
            for (phase, spent) in [
                ("load", phases.load),
                ("execute", phases.execute),
                ("root_update", phases.stage),
                ("write", phases.write),
            ] {
                report.figure(
                    &format!("{name}_{phase}_share"),
                    spent.as_secs_f64() / total,
                );
            }
        }
    }
    Ok(())
}

pub async fn run(_args: &Args) -> anyhow::Result<BenchReport> {
    let world = world();
    let transfer_batch = transfers(&world);
    let game_batch = game_moves(&world, 0.0);
    let conflict_batch = game_moves(&world, CONFLICT_SHARE);
    let hot_batch = hot_moves(&world);
    let genesis = &world.genesis;

    let mut report = BenchReport::new("execution");
    report.figure("moves_per_batch", MOVES_PER_BATCH as f64);
    for (kind, moves) in [("transfer", &transfer_batch), ("game", &game_batch)] {
        let (plain_rate, enforced_rate) =
            side_by_side(genesis, moves, plain, enforced, Pool::AsLeft);
        report.figure(&format!("plain_{kind}_moves_per_s"), plain_rate);
        report.figure(&format!("sal_{kind}_moves_per_s"), enforced_rate);
        report.figure(
            &format!("sal_vs_plain_{kind}_ratio"),
            enforced_rate / plain_rate,
        );
    }
    for (name, moves) in [
        ("conflict_free_transfer", &transfer_batch),
        ("conflict_free_game", &game_batch),
        ("conflict_10pct_game", &conflict_batch),
        ("hot_delta_game", &hot_batch),
    ] {
        let waves = execution::Schedule::new(moves).waves.len();
        let (sequential_rate, parallel_rate) =
            side_by_side(genesis, moves, sequential, parallel, Pool::Awake);
        let (cold_sequential_rate, cold_parallel_rate) =
            side_by_side(genesis, moves, sequential, parallel, Pool::AsLeft);
        report.figure(&format!("{name}_waves"), waves as f64);
        report.figure(&format!("sequential_{name}_moves_per_s"), sequential_rate);
        report.figure(&format!("parallel_{name}_moves_per_s"), parallel_rate);
        report.figure(
            &format!("parallel_speedup_{name}_ratio"),
            parallel_rate / sequential_rate,
        );
        report.figure(
            &format!("cold_pool_parallel_speedup_{name}_ratio"),
            cold_parallel_rate / cold_sequential_rate,
        );
    }
    durable_figures(&mut report, &world)?;
    report.target("sal_vs_plain_transfer_ratio", Op::AtLeast, 0.9);
    report.target("sal_vs_plain_game_ratio", Op::AtLeast, 0.9);
    report.target(
        "parallel_speedup_conflict_free_transfer_ratio",
        Op::AtLeast,
        1.8,
    );
    report.target(
        "parallel_speedup_conflict_free_game_ratio",
        Op::AtLeast,
        1.8,
    );
    report.target("parallel_speedup_hot_delta_game_ratio", Op::AtLeast, 1.6);
    Ok(report)
}
