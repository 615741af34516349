//! `groups`: how execution scales as shard nodes are added.
//!
//! For 8, 16, 32 and 64 nodes, and 0, 10 and 50 % cross-group moves, one in-process
//! `ShardNetwork` (in-memory group transport, a RocksDB store per node, group roots certified
//! by BFT every 10 batches) runs the devnet's game load: the demo game deployed at
//! [`GAMES`] addresses spread over the address space, [`PLAYERS_PER_GAME`] players each, every
//! tick `--rate` × 10 ms moves in round-robin order. A player of a game lives in the game's
//! address state group, except for the cross-group share, whose accounts another group holds:
//! their moves' slices are shipped with proofs and their nonces written in that group.
//!
//! Two cores cannot run 64 nodes at once, so the network's speed is simulated from what each
//! node did, with a fixed compute budget of one core per node. The network counts, per node
//! and per batch, the moves it executed, the slices it shipped and received, and the group
//! rounds it took part in ([`shard_node::network::service`]); each count is priced by that
//! work's cost measured in this run on this machine: a SAL-enforced game move; a one-account
//! slice proof made (once per shipment, which goes to each executing member) and checked (by
//! each); a round member's signatures and checks (a BLS commit signature and the
//! quorum's aggregate check, an operator-key prepare signature and the recovery of the quorum's
//! prepares). From those:
//! - **throughput**: moves ÷ the busiest node's total work, the moves per second the network
//!   sustains with one core per node; **scaling** divides it by the linear extrapolation from
//!   8 nodes, nodes ÷ 8 × the 8-node figure (the 8 members of a group each execute its moves,
//!   so N cores do at most N / 8 times what 8 do). Target: ≥ 0.7 at 64 nodes, 0 % cross-group.
//! - **Executed after Finalized**: a batch arrives every tick; each node works through its
//!   share of the batches in order, one core each; a batch is executed when its last node is
//!   done, plus two network hops of [`HOP`] (slices shipped in, members' outcomes gathered).
//!   p50 and p99 over the run. Target: p99 ≤ 100 ms in every configuration.
//! - group traffic per batch per group: messages and bytes the group rounds sent.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use execution::{AccountState, DurableState, ExecutionEnv, InMemoryState, execute};
use primitives::{
    AccountAccess, AccountKey, Address, B256, Batch, BlockBody, BlockHeader, FinalizedBatch,
    NodeId, SignedTransaction, SlotAccess, SpaceAccessList, U256,
    bls::{BlsSecretKey, Certificate},
    codec::Encode,
    keccak256,
};
use shard_node::{
    ShardNetwork, ShardNode, groups::GroupMap, network::ROOT_COMMIT_INTERVAL_BATCHES,
};
use sim::{
    game::{BOARD_CELLS, game_code},
    report::{BenchReport, Op},
};
use upper_chain::{EmbeddedChain, UpperChain};

use crate::Args;

const NODE_COUNTS: [usize; 4] = [8, 16, 32, 64];
const CROSS_PERCENTS: [usize; 3] = [0, 10, 50];
/// Members of a group.
const GROUP_SIZE: usize = 8;
/// Game contracts, at addresses spread uniformly over the address space.
const GAMES: usize = 1_024;
/// Players of each game.
const PLAYERS_PER_GAME: usize = 1;
/// Batches each configuration runs.
const BATCHES: u64 = 300;
/// Time between two finalized batches.
const TICK: Duration = Duration::from_millis(10);
/// One network hop between nodes.
const HOP: Duration = Duration::from_millis(1);
const CHAIN_ID: u64 = 77;
/// Repetitions of each priced operation.
const PRICE_RUNS: u32 = 400;
/// Keys tried at most to find a player in a wanted group.
const GRIND_MAX: u64 = 1 << 20;

pub async fn run(args: &Args) -> anyhow::Result<BenchReport> {
    let rate = args.rate;
    tokio::task::spawn_blocking(move || measure(rate))
        .await
        .context("the groups benchmark panicked")?
}

fn measure(rate: f64) -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("groups");
    let moves_per_batch = ((rate * TICK.as_secs_f64()).round() as usize).max(1);
    println!(
        "groups: {GAMES} games, {} players, {moves_per_batch} moves per {} ms batch, {BATCHES} batches per configuration",
        GAMES * PLAYERS_PER_GAME,
        TICK.as_millis()
    );
    let prices = Prices::measure()?;
    report.figure("price_execute_us", prices.execute_us);
    report.figure("price_slice_prove_us", prices.prove_us);
    report.figure("price_slice_verify_us", prices.verify_us);
    report.figure("price_round_member_us", prices.round_us);
    report.figure("moves_per_batch", moves_per_batch as f64);
    report.figure("batches", BATCHES as f64);
    let mut p99_max = 0.0f64;
    for cross in CROSS_PERCENTS {
        let mut base = None;
        for nodes in NODE_COUNTS {
            let started = Instant::now();
            let outcome = run_network(nodes, cross, moves_per_batch, &prices)
                .with_context(|| format!("{nodes} nodes, {cross} % cross-group"))?;
            let name = |figure: &str| format!("n{nodes}_cross{cross}_{figure}");
            let throughput = outcome.throughput();
            let base_throughput = *base.get_or_insert(throughput);
            let scaling = throughput / (nodes as f64 / GROUP_SIZE as f64 * base_throughput);
            let (p50, p99) = outcome.executed_ms();
            p99_max = p99_max.max(p99);
            report.figure(&name("groups"), outcome.groups as f64);
            report.figure(&name("cross_share"), outcome.cross_share());
            report.figure(&name("throughput_moves_per_s"), throughput);
            report.figure(&name("scaling"), scaling);
            report.figure(&name("busiest_over_mean"), outcome.busiest_over_mean());
            report.figure(
                &name("rounds_per_interval_max"),
                outcome.rounds_per_interval_max(),
            );
            report.figure(&name("executed_p50_ms"), p50);
            report.figure(&name("executed_p99_ms"), p99);
            report.figure(
                &name("messages_per_batch_per_group"),
                outcome.messages as f64 / BATCHES as f64 / outcome.groups as f64,
            );
            report.figure(
                &name("bytes_per_batch_per_group"),
                outcome.bytes as f64 / BATCHES as f64 / outcome.groups as f64,
            );
            eprintln!(
                "  {nodes:>2} nodes, {cross:>2} % cross: {} groups, {throughput:.0} moves/s (scaling {scaling:.2}), executed p50 {p50:.2} / p99 {p99:.2} ms ({:.1} s)",
                outcome.groups,
                started.elapsed().as_secs_f64()
            );
        }
    }
    report.figure("executed_p99_ms_max", p99_max);
    report.target("n64_cross0_scaling", Op::AtLeast, 0.7);
    report.target("executed_p99_ms_max", Op::AtMost, 100.0);
    Ok(report)
}

/// The cost, in microseconds of one core, of each kind of work a node does.
struct Prices {
    execute_us: f64,
    prove_us: f64,
    verify_us: f64,
    round_us: f64,
}

impl Prices {
    fn measure() -> anyhow::Result<Prices> {
        // A game move, SAL-enforced, as each member of the executing group runs it.
        let game = Address::repeat_byte(0x6a);
        let player = AccountKey::from_seed(1);
        let mut state = InMemoryState::new();
        state.insert_account(
            game,
            AccountState {
                code: game_code(),
                ..AccountState::default()
            },
        );
        let verified = game_move(&player, game, 0, 7)
            .verify(CHAIN_ID)
            .context("the priced move verifies")?;
        let slice = state.slice(&verified.tx().access_list);
        let env = ExecutionEnv {
            chain_id: CHAIN_ID,
            block_number: 1,
            timestamp: 1,
        };
        let execute_us = mean_us(|| {
            let outcome = execute(&env, &verified, &slice);
            assert!(outcome.is_ok_and(|outcome| outcome.is_success()));
        });

        // A one-account slice with one slot, proven by a store of 10,000 accounts, checked.
        let dir = tempfile::tempdir()?;
        let mut durable = DurableState::open(dir.path())?;
        let mut genesis = InMemoryState::new();
        for index in 0..10_000u64 {
            let address = Address::from_slice(&keccak256(index.to_be_bytes())[12..]);
            genesis.insert_account(
                address,
                AccountState {
                    balance: U256::from(index + 1),
                    storage: BTreeMap::from([(B256::with_last_byte(1), U256::from(index + 2))]),
                    ..AccountState::default()
                },
            );
        }
        let root = durable.apply_genesis(&genesis)?;
        let address = Address::from_slice(&keccak256(77u64.to_be_bytes())[12..]);
        let list = SpaceAccessList::new([AccountAccess {
            storage: vec![SlotAccess {
                slot: B256::with_last_byte(1),
                write: None,
            }],
            ..AccountAccess::read(address)
        }]);
        let shipped = durable.slice(&list)?;
        let proof = durable.prove(&list)?;
        let prove_us = mean_us(|| {
            durable.prove(&list).expect("proves");
        });
        let verify_us = mean_us(|| {
            proof.verify(&root, &shipped).expect("the proof holds");
        });

        // A round member: its commit (BLS) and prepare (operator key) signatures, the commit
        // quorum's aggregate check, and the recovery of the quorum's prepares and pre-prepare.
        let secrets: Vec<BlsSecretKey> = (1..=GROUP_SIZE as u8)
            .map(|seed| BlsSecretKey::from_seed(&[seed; 32]))
            .collect();
        let keys: Vec<_> = secrets.iter().map(BlsSecretKey::public_key).collect();
        let quorum = GROUP_SIZE - (GROUP_SIZE - 1) / 3;
        let message = b"group round commit";
        let votes: Vec<(usize, _)> = secrets
            .iter()
            .take(quorum)
            .enumerate()
            .map(|(index, secret)| (index, secret.sign(message)))
            .collect();
        let certificate = Certificate::aggregate(&votes)?;
        let operator = AccountKey::from_seed(2);
        let prehash = keccak256(b"group round prepare");
        let signature = operator.sign_prehash(&prehash);
        let bls_sign_us = mean_us(|| {
            secrets[0].sign(message);
        });
        let bls_check_us = mean_us(|| {
            certificate
                .verify(message, &keys, quorum)
                .expect("the quorum signed");
        });
        let operator_sign_us = mean_us(|| {
            operator.sign_prehash(&prehash);
        });
        let recover_us = mean_us(|| {
            signature.recover_address(&prehash).expect("recovers");
        });
        let round_us = bls_sign_us + bls_check_us + operator_sign_us + quorum as f64 * recover_us;
        Ok(Prices {
            execute_us,
            prove_us,
            verify_us,
            round_us,
        })
    }
}

/// The mean wall time of `work`, in microseconds, over [`PRICE_RUNS`] runs after a warm-up.
fn mean_us(mut work: impl FnMut()) -> f64 {
    for _ in 0..PRICE_RUNS / 10 {
        work();
    }
    let started = Instant::now();
    for _ in 0..PRICE_RUNS {
        work();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(PRICE_RUNS)
}

/// What one configuration's network did, priced.
struct Outcome {
    groups: usize,
    moves: u64,
    cross_moves: u64,
    /// Per batch, each node's work in microseconds, rounds left out.
    work: Vec<BTreeMap<NodeId, f64>>,
    /// Per batch, each node's round work in microseconds.
    round_work: Vec<BTreeMap<NodeId, f64>>,
    /// Each node's round work per interval under a load that touches all its groups: one round
    /// of each group it is a member of.
    rounds_per_interval_us: BTreeMap<NodeId, f64>,
    round_us: f64,
    messages: u64,
    bytes: u64,
}

impl Outcome {
    fn totals(&self) -> BTreeMap<NodeId, f64> {
        let mut totals = BTreeMap::new();
        for batch in &self.work {
            for (node, work) in batch {
                *totals.entry(*node).or_default() += work;
            }
        }
        totals
    }

    /// Moves per second sustained with one core per node (see the module documentation).
    fn throughput(&self) -> f64 {
        let interval_us = TICK.as_secs_f64() * 1e6 * ROOT_COMMIT_INTERVAL_BATCHES as f64;
        let mut sustained = f64::INFINITY;
        for (node, per_move) in self.per_move_us() {
            let rounds = self
                .rounds_per_interval_us
                .get(&node)
                .copied()
                .unwrap_or(0.0);
            if per_move > 0.0 {
                sustained = sustained.min(((interval_us - rounds) / per_move).max(0.0));
            }
        }
        sustained / (interval_us / 1e6)
    }

    /// Each node's work per move of the load, in microseconds (rounds left out).
    fn per_move_us(&self) -> BTreeMap<NodeId, f64> {
        self.totals()
            .into_iter()
            .map(|(node, work)| (node, work / self.moves.max(1) as f64))
            .collect()
    }

    /// The busiest node's work per move over the mean node's.
    fn busiest_over_mean(&self) -> f64 {
        let per_move = self.per_move_us();
        let busiest = per_move.values().copied().fold(0.0, f64::max);
        let mean = per_move.values().sum::<f64>() / per_move.len().max(1) as f64;
        busiest / mean
    }

    /// The most rounds one node takes part in per interval.
    fn rounds_per_interval_max(&self) -> f64 {
        self.rounds_per_interval_us
            .values()
            .copied()
            .fold(0.0, f64::max)
            / self.round_us
    }

    fn cross_share(&self) -> f64 {
        self.cross_moves as f64 / self.moves.max(1) as f64
    }

    /// Executed after Finalized, p50 and p99 in milliseconds (see the module documentation):
    /// at the offered load, with the rounds' work where it happened.
    fn executed_ms(&self) -> (f64, f64) {
        let tick_us = TICK.as_secs_f64() * 1e6;
        let hops_us = 2.0 * HOP.as_secs_f64() * 1e6;
        let mut free_at: BTreeMap<NodeId, f64> = BTreeMap::new();
        let mut latencies = Vec::with_capacity(self.work.len());
        for (index, (batch, rounds)) in self.work.iter().zip(&self.round_work).enumerate() {
            let arrival = index as f64 * tick_us;
            let mut done = arrival;
            for (node, work) in batch {
                let free = free_at.entry(*node).or_default();
                let finish = free.max(arrival) + work;
                *free = finish;
                done = done.max(finish);
            }
            // A round runs once the batch it certifies is executed; later batches wait for it.
            for (node, work) in rounds {
                let free = free_at.entry(*node).or_default();
                *free = free.max(arrival) + work;
            }
            latencies.push(done - arrival + hops_us);
        }
        latencies.sort_by(f64::total_cmp);
        let at = |quantile: f64| {
            let index = ((latencies.len() as f64 * quantile).ceil() as usize).max(1) - 1;
            latencies.get(index).copied().unwrap_or_default() / 1e3
        };
        (at(0.5), at(0.99))
    }
}

/// A game move of `key`'s piece to `cell` in the game at `game`.
fn game_move(key: &AccountKey, game: Address, nonce: u64, cell: u64) -> SignedTransaction {
    client_sdk::demo::game_move_at(game, key.address(), CHAIN_ID, nonce, cell, cell).sign(key)
}

/// A finalized batch of one block holding `body` (execution checks the body against the
/// header; the certificate is not checked by the shard network).
fn finalized(number: u64, body: &BlockBody) -> FinalizedBatch {
    let sequencer = AccountKey::from_seed(3);
    let header = BlockHeader::seal(
        &sequencer,
        number,
        B256::ZERO,
        0,
        body,
        u32::try_from(body.to_bytes().len()).unwrap_or(u32::MAX),
    );
    let vote = BlsSecretKey::from_seed(&[3; 32]).sign(b"benchmark batch");
    FinalizedBatch {
        batch: Batch {
            number,
            parent: B256::ZERO,
            headers: vec![header],
        },
        sequence: number,
        view: 0,
        certificate: Certificate::aggregate(&[(0, vote)]).expect("one vote aggregates"),
    }
}

/// A player of the game at `game`: a key whose account the game's group holds, or, if
/// `cross`, another group.
fn player(groups: &mut GroupMap, game: Address, cross: bool, next_seed: &mut u64) -> AccountKey {
    let wanted = groups.group_of(&game).id;
    for _ in 0..GRIND_MAX {
        *next_seed += 1;
        let key = AccountKey::from_seed(*next_seed);
        if (groups.group_of(&key.address()).id == wanted) != cross {
            return key;
        }
    }
    panic!("no key lands in the wanted group within {GRIND_MAX} tries");
}

fn run_network(
    nodes: usize,
    cross_percent: usize,
    moves_per_batch: usize,
    prices: &Prices,
) -> anyhow::Result<Outcome> {
    let chain = Arc::new(EmbeddedChain::new(Vec::new()));
    let shard_nodes: Vec<ShardNode> = (0..nodes as u64)
        .map(|index| ShardNode::from_seed(40_000 + index))
        .collect();
    for node in &shard_nodes {
        let (registration, signature) = node.registration("bench".into(), Address::ZERO, vec![]);
        chain.register_node(registration, &signature)?;
    }
    chain.advance_epoch();
    let ids: Vec<NodeId> = shard_nodes.iter().map(ShardNode::id).collect();
    let mut groups = GroupMap::new(&ids, GROUP_SIZE);
    let dir = tempfile::tempdir()?;
    let mut network = ShardNetwork::new(chain.clone(), CHAIN_ID, shard_nodes, dir.path())?;
    network.set_usage_epoch_batches(1);

    // Games spread over the address space, each with its players; the cross-group share of
    // the players (the first ones of every tenth game, or of every other game) live elsewhere.
    let games: Vec<Address> = (0..GAMES as u64)
        .map(|index| {
            Address::from_slice(
                &keccak256([b"game".as_slice(), &index.to_be_bytes()].concat())[12..],
            )
        })
        .collect();
    let distinct: BTreeSet<B256> = groups.all_groups().iter().map(|group| group.id).collect();
    // With one group (8 nodes) no account can live elsewhere.
    let cross_percent = if distinct.len() > 1 { cross_percent } else { 0 };
    let mut players: Vec<(AccountKey, Address, bool)> = Vec::new();
    let mut seed = 1_000_000;
    for (index, game) in games.iter().enumerate() {
        network.insert_genesis(
            *game,
            AccountState {
                code: game_code(),
                ..AccountState::default()
            },
        )?;
        for seat in 0..PLAYERS_PER_GAME {
            let slot = index * PLAYERS_PER_GAME + seat;
            let cross = is_cross(slot, cross_percent);
            players.push((player(&mut groups, *game, cross, &mut seed), *game, cross));
        }
    }

    let mut nonces = vec![0u64; players.len()];
    let mut next_player = 0usize;
    let mut outcome = Outcome {
        groups: distinct.len(),
        moves: 0,
        cross_moves: 0,
        work: Vec::with_capacity(BATCHES as usize),
        round_work: Vec::with_capacity(BATCHES as usize),
        rounds_per_interval_us: BTreeMap::new(),
        round_us: prices.round_us,
        messages: 0,
        bytes: 0,
    };
    let mut served: BTreeSet<B256> = BTreeSet::new();
    for number in 1..=BATCHES {
        let mut moves = Vec::with_capacity(moves_per_batch);
        for _ in 0..moves_per_batch {
            let index = next_player % players.len();
            next_player += 1;
            let (key, game, cross) = &players[index];
            let cell = (number + index as u64) % BOARD_CELLS;
            moves.push(game_move(key, *game, nonces[index], cell));
            nonces[index] += 1;
            outcome.moves += 1;
            outcome.cross_moves += u64::from(*cross);
        }
        let body = BlockBody { moves };
        let executed =
            network.execute_batch(&finalized(number, &body), std::slice::from_ref(&body))?;
        anyhow::ensure!(
            executed.outcomes.iter().all(|outcome| outcome.is_success()),
            "every benchmark move succeeds"
        );
        let mut work: BTreeMap<NodeId, f64> = BTreeMap::new();
        let mut round_work: BTreeMap<NodeId, f64> = BTreeMap::new();
        for service in network.take_service(network.usage_epoch()).values() {
            for (id, moves) in service.moves_per_node() {
                *work.entry(id).or_default() += moves as f64 * prices.execute_us;
            }
            for (id, group) in &service.groups {
                // Every member signs and checks in a round, whether or not the certificate
                // ends up carrying its signature.
                let rounds = group.rounds.iter().copied().max().unwrap_or(0);
                for member in group.members.iter() {
                    *round_work.entry(*member).or_default() += rounds as f64 * prices.round_us;
                }
                if served.insert(*id) {
                    for member in group.members.iter() {
                        *outcome.rounds_per_interval_us.entry(*member).or_default() +=
                            prices.round_us;
                    }
                }
            }
            for ((shipper, receiver), slices) in &service.slices {
                // One proof per shipment, sent to each executing member; each checks it.
                *work.entry(*shipper).or_default() +=
                    *slices as f64 * prices.prove_us / GROUP_SIZE as f64;
                *work.entry(*receiver).or_default() += *slices as f64 * prices.verify_us;
            }
        }
        outcome.work.push(work);
        outcome.round_work.push(round_work);
    }
    let traffic = network.transport_stats();
    outcome.messages = traffic.messages_sent;
    outcome.bytes = traffic.bytes_sent;
    Ok(outcome)
}

/// Whether the player in `slot` (players in game order) is one of the cross-group share.
fn is_cross(slot: usize, cross_percent: usize) -> bool {
    // Evenly spread: player `slot` is cross-group when the running share falls behind.
    (slot + 1) * cross_percent / 100 > slot * cross_percent / 100
}
