//! The whole path of a move in one deterministic world: players, sequencers, PBFT, weak DA,
//! the shard network and its group BFT, on one simulated clock and one seeded RNG.
//!
//! Players sign game moves and send them to their sequencer; each sequencer runs the sequencer
//! crate's sans-IO cores around a PBFT replica ([`replica::SimSequencer`]), packs a block
//! every tick, pushes its body to weak DA (a store shared by the world) and broadcasts the
//! header; the primary proposes batches, replicas prepare a batch once every body it names is
//! in weak DA, and each finalized batch goes to the shard network ([`shard_node::ShardNetwork`],
//! its nodes on RocksDB in a temporary directory, its group rounds over the deterministic
//! in-memory transport), whose results flow back to every sequencer's pending state.
//!
//! Faults, all drawn from the seed ([`Scenario::draw`]): message latency (so messages reorder),
//! loss and duplication of PBFT datagrams, links that clog for a while, a sequencer cut off
//! from the others and healed, a byzantine sequencer (silent to its peers, or naming blocks
//! whose bodies it never puts in weak DA), shard nodes
//! stopped in group rounds and resumed, shard nodes restarted from their RocksDB stores,
//! players that replay moves already sent.
//!
//! Checkers ([`Violation`]), run as the world goes and at its end: no two batches finalized at
//! one height; every execution record re-executes to the same outcomes and every certified
//! group root equals the reference re-execution's ([`shard_node::record::Verifier`]); no two
//! roots certified for one group and batch; no move executed twice; every move a correct
//! sequencer acked ends `Executed` or `Failed`; moves acked after the heal finish within
//! [`RECOVERY_BOUND_US`]; and once the load stops, every correct sequencer's pending state
//! equals executed state.
//!
//! `TICKRATE_SEED=<n>` replays one seed exactly (see `sim/tests/world.rs` and the `campaign`
//! binary); `TICKRATE_WORLD_TRACE=1` prints every proposal and commit of every sequencer.

pub mod replica;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use consensus::{
    ReplicaConfig, ReplicaKeys,
    validator::{Validator, ValidatorSet},
};
use execution::{AccountState, ExecutedBatch, InMemoryState};
use primitives::{
    AccountKey, B256, BlockBody, FinalityLevel, FinalizedBatch, NodeId, SignedTransaction, TxHash,
    U256,
    api::{ClientRequest, Refusal, ServerMessage},
    bls::BlsSecretKey,
    codec::Encode,
    constants::GROUP_SIZE,
    time::Instant,
};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use shard_node::{
    ShardNetwork, ShardNode,
    groups::GroupMap,
    record::{Verifier, group_root_in},
};
use upper_chain::{EmbeddedChain, UpperChain};

use crate::game::{GAME_ADDRESS, game_code, move_piece, slot_of};

pub use replica::{Effect, PeerMessage, SharedWeakDa, SimSequencer, WeakDa};

/// Chain ID of the world's moves.
pub const CHAIN_ID: u64 = 4_242;
/// A sequencer tick, microseconds.
pub const TICK_US: u64 = 10_000;
/// How long after the heal every move acked since must have finished, microseconds.
pub const RECOVERY_BOUND_US: u64 = 5_000_000;
/// The load goes on this long after the heal, microseconds.
const LOAD_AFTER_HEAL_US: u64 = 1_000_000;
/// Weak DA stores a body this long after the put, microseconds.
const WEAK_DA_PUT_US: u64 = 1_000;
/// A proposal naming a body weak DA does not hold yet is checked again after this long.
const RECHECK_US: u64 = 5_000;
/// Reads of weak DA for a proposal's bodies before the proposal is found invalid.
const RECHECK_ATTEMPTS: u32 = 20;
/// Group roots are committed every this many batches.
const ROOT_COMMIT_INTERVAL: u64 = 5;
/// Reference states kept for checking roots certified late, in batches.
const REFERENCE_STATES_KEPT: usize = 256;
/// A retransmission of a reliable peer message that the link lost, microseconds.
const RETRANSMIT_US: u64 = 30_000;

/// The size of a world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorldConfig {
    /// Sequencers (PBFT replicas).
    pub sequencers: usize,
    /// Shard nodes (groups of [`GROUP_SIZE`]).
    pub shard_nodes: usize,
    /// Players, spread over the sequencers.
    pub players: usize,
    /// Length of the faulty phase, microseconds; the load goes on for a second after it.
    pub faulty_us: u64,
    /// A player's mean time between moves, microseconds.
    pub move_interval_us: u64,
}

impl WorldConfig {
    /// The campaign's network: 4 sequencers, 16 shard nodes, 20 players, ten simulated seconds
    /// at most (six faulty, one of load after the heal, up to three to settle).
    pub fn campaign() -> Self {
        WorldConfig {
            sequencers: 4,
            shard_nodes: 16,
            players: 20,
            faulty_us: 6_000_000,
            move_interval_us: 100_000,
        }
    }

    /// The large network: 4 sequencers, 32 shard nodes, 200 players.
    pub fn large() -> Self {
        WorldConfig {
            shard_nodes: 32,
            players: 200,
            ..WorldConfig::campaign()
        }
    }
}

/// The faults of one run, drawn from its seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// One-way latency range between nodes, microseconds.
    pub latency_us: (u64, u64),
    /// Probability a PBFT datagram is lost during the faulty phase.
    pub drop_ratio: f64,
    /// Probability a PBFT datagram is delivered twice during the faulty phase.
    pub duplicate_ratio: f64,
    /// Probability a reliable message (header, execution result) needs a retransmission.
    pub retransmit_ratio: f64,
    /// A sequencer cut off from the others: `(index, from, until)`, microseconds.
    pub partition: Option<(usize, u64, u64)>,
    /// A link between two sequencers that clogs: `(a, b, from, until, extra latency)`.
    pub clog: Option<(usize, usize, u64, u64, u64)>,
    /// A byzantine sequencer and what it does.
    pub byzantine: Option<(usize, Byzantine)>,
    /// Shard nodes stopped in group rounds: `(node, from, until)` (at most two at a time).
    pub shard_stops: Vec<(usize, u64, u64)>,
    /// Shard nodes whose process restarts (from RocksDB): `(node, at)`.
    pub shard_restarts: Vec<(usize, u64)>,
    /// Byzantine shard nodes, for the whole run: each vouches in its group rounds for a root
    /// its store did not compute. With the stopped nodes, at most two (a group's `f`).
    pub lying_members: Vec<usize>,
    /// Probability a player's move is a replay of one it sent before.
    pub replay_ratio: f64,
    /// Probability a player's move reverts in execution (a cell off the board).
    pub revert_ratio: f64,
}

impl Scenario {
    /// Draws the faults for `config` from `seed`.
    pub fn draw(config: &WorldConfig, seed: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0057_0A1D);
        let faulty = config.faulty_us;
        let span = |rng: &mut ChaCha8Rng| {
            let from = rng.random_range(0..faulty * 2 / 3);
            let until = rng.random_range(from + 1..=faulty);
            (from, until)
        };
        let low = rng.random_range(100..2_000);
        let latency_us = (low, low + rng.random_range(0..5_000));
        let partition = rng.random_bool(0.5).then(|| {
            let (from, until) = span(&mut rng);
            (rng.random_range(0..config.sequencers), from, until)
        });
        let clog = rng.random_bool(0.3).then(|| {
            let a = rng.random_range(0..config.sequencers);
            let b = (a + rng.random_range(1..config.sequencers)) % config.sequencers;
            let (from, until) = span(&mut rng);
            (a, b, from, until, rng.random_range(20_000..200_000))
        });
        let byzantine = rng.random_bool(0.3).then(|| {
            let behaviour = if rng.random_bool(0.5) {
                Byzantine::Silent
            } else {
                Byzantine::WithholdsBodies
            };
            (rng.random_range(0..config.sequencers), behaviour)
        });
        let mut nodes: Vec<usize> = (0..config.shard_nodes).collect();
        nodes.shuffle(&mut rng);
        let stopped = rng.random_range(0..=2);
        let shard_stops = nodes
            .iter()
            .take(stopped)
            .map(|node| {
                let (from, until) = span(&mut rng);
                (*node, from, until)
            })
            .collect();
        let restarted = rng.random_range(0..=2);
        let shard_restarts = nodes
            .iter()
            .skip(stopped)
            .take(restarted)
            .map(|node| (*node, rng.random_range(0..faulty)))
            .collect();
        // Drawn last, so that the faults above stay what they were for every seed.
        let lying = rng.random_range(0..=2 - stopped);
        let lying_members = nodes
            .iter()
            .skip(stopped + restarted)
            .take(lying)
            .copied()
            .collect();
        // Also drawn after the rest: a run with no other byzantine sequencer may get an
        // equivocating one.
        let byzantine = match byzantine {
            None if rng.random_bool(0.3) => Some((
                rng.random_range(0..config.sequencers),
                Byzantine::Equivocates,
            )),
            None if rng.random_bool(0.3) => Some((
                rng.random_range(0..config.sequencers),
                Byzantine::MismatchedBodies,
            )),
            drawn => drawn,
        };
        Scenario {
            latency_us,
            drop_ratio: rng.random_range(0.0..0.1),
            duplicate_ratio: rng.random_range(0.0..0.05),
            retransmit_ratio: rng.random_range(0.0..0.1),
            partition,
            clog,
            byzantine,
            shard_stops,
            shard_restarts,
            lying_members,
            replay_ratio: rng.random_range(0.0..0.05),
            revert_ratio: 0.1,
        }
    }
}

/// What a byzantine sequencer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Sends its peers nothing at all.
    Silent,
    /// Broadcasts the headers of its blocks but never puts their bodies in weak DA.
    WithholdsBodies,
    /// As primary, proposes two valid batches for one sequence, to different backups.
    Equivocates,
    /// Puts in weak DA bodies that do not match the roots its headers name.
    MismatchedBodies,
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Two different batches finalized at one height.
    #[error(
        "batch {number}: {first} (PBFT sequence {first_sequence}) and {second} (sequence \
         {second_sequence}) both finalized"
    )]
    Fork {
        /// The height.
        number: u64,
        /// One batch's hash.
        first: B256,
        /// The PBFT sequence it was committed at.
        first_sequence: u64,
        /// The other's.
        second: B256,
        /// The PBFT sequence it was committed at.
        second_sequence: u64,
    },
    /// An execution record does not re-execute to what the network recorded.
    #[error("batch {batch}: the reference re-execution diverges: {why}")]
    Reexecution {
        /// The batch.
        batch: u64,
        /// The divergence.
        why: String,
    },
    /// A certified group root differs from the reference re-execution's.
    #[error("group {group} batch {batch}: root {certified} certified, reference {reference}")]
    WrongRoot {
        /// The group.
        group: B256,
        /// The batch.
        batch: u64,
        /// The certified root.
        certified: B256,
        /// The reference's root.
        reference: B256,
    },
    /// Two roots certified for one group and batch.
    #[error("group {group} batch {batch}: two roots certified")]
    TwoRoots {
        /// The group.
        group: B256,
        /// The batch.
        batch: u64,
    },
    /// A move took effect twice.
    #[error("move {0} executed twice")]
    ExecutedTwice(TxHash),
    /// A move a correct sequencer acked never finished.
    #[error("move {hash} acked by sequencer {sequencer} ended at {level:?}")]
    Lost {
        /// The move.
        hash: TxHash,
        /// The sequencer that acked it.
        sequencer: usize,
        /// Where it stayed.
        level: FinalityLevel,
    },
    /// Pending state did not converge to executed state once the load stopped.
    #[error("sequencer {sequencer}: pending {item} is {pending}, executed {executed}")]
    Diverged {
        /// The sequencer.
        sequencer: usize,
        /// The item.
        item: String,
        /// Its pending value.
        pending: U256,
        /// Its executed value.
        executed: U256,
    },
    /// The shard network failed.
    #[error("shard network: {0}")]
    Shard(String),
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Simulated microseconds run.
    pub simulated_us: u64,
    /// Moves acked by correct sequencers.
    pub acked: u64,
    /// Moves refused.
    pub refused: u64,
    /// Moves executed (successfully).
    pub executed: u64,
    /// Moves failed in execution.
    pub failed: u64,
    /// Batches finalized.
    pub batches: u64,
    /// Group roots certified and checked against the reference.
    pub roots_checked: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// What broke, if anything.
    pub violations: Vec<Violation>,
}

enum Event {
    Tick,
    PlayerMove(usize),
    Request {
        sequencer: usize,
        player: usize,
        bytes: Vec<u8>,
    },
    Reply {
        player: usize,
        message: ServerMessage,
    },
    Peer {
        from: usize,
        to: usize,
        message: PeerMessage,
    },
    Timer(usize),
    BodyStored {
        sequencer: usize,
        block: Box<::sequencer::packer::PackedBlock>,
    },
    Recheck {
        sequencer: usize,
        sequence: u64,
        batch: Box<primitives::Batch>,
        attempt: u32,
    },
    Executed {
        sequencer: usize,
        batch: Arc<ExecutedBatch>,
    },
}

struct Player {
    key: AccountKey,
    sequencer: usize,
    next_nonce: u64,
    sent: Vec<SignedTransaction>,
}

/// One world: build it with [`World::new`], run it with [`World::run`].
pub struct World {
    config: WorldConfig,
    scenario: Scenario,
    /// When the faults stop: the end of the faulty phase, or earlier for a prefix of the run
    /// ([`World::heal_at`], [`shrink`]).
    heal_us: u64,
    rng: ChaCha8Rng,
    now: Instant,
    queue: BTreeMap<(Instant, u64), Event>,
    order: u64,
    sequencers: Vec<SimSequencer>,
    ids: Vec<NodeId>,
    timers: Vec<Option<Instant>>,
    players: Vec<Player>,
    /// Weak DA: bodies by their root.
    weak_da: SharedWeakDa,
    network: ShardNetwork,
    chain: Arc<EmbeddedChain>,
    shard_ids: Vec<NodeId>,
    groups: Vec<B256>,
    stopped: BTreeSet<usize>,
    restarted: BTreeSet<usize>,
    /// Finalized batches by number, the first copy heard.
    finalized: BTreeMap<u64, (B256, FinalizedBatch)>,
    executed_through: u64,
    verifier: Verifier,
    reference: BTreeMap<u64, InMemoryState>,
    certified: BTreeMap<(B256, u64), B256>,
    succeeded: BTreeSet<TxHash>,
    /// Moves acked by correct sequencers: hash to (sequencer, when).
    acked: BTreeMap<TxHash, (usize, Instant)>,
    /// Execution results on their way to sequencers.
    results_in_flight: usize,
    last_link: HashMap<(usize, usize), Instant>,
    report: RunReport,
    _dir: tempfile::TempDir,
}

impl World {
    /// A world of `config`'s size with the faults of `scenario`, randomness from `seed`.
    pub fn new(seed: u64, config: WorldConfig, scenario: Scenario) -> Result<World, Violation> {
        let shard = |error: &dyn std::fmt::Display| Violation::Shard(error.to_string());
        let bls = |index: usize| {
            let mut seed_bytes = [0u8; 32];
            seed_bytes[..8].copy_from_slice(&(index as u64).to_be_bytes());
            seed_bytes[8..16].copy_from_slice(b"worldseq");
            BlsSecretKey::from_seed(&seed_bytes)
        };
        let operator = |index: usize| AccountKey::from_seed(0x5E9_0000 + index as u64);
        let validators = ValidatorSet::new(
            (0..config.sequencers)
                .map(|index| Validator {
                    id: NodeId(operator(index).address()),
                    key: bls(index).public_key(),
                })
                .collect(),
        );
        let replica_config = ReplicaConfig {
            view_timeout_us: 200_000,
            view_timeout_max_us: 2_000_000,
        };
        let weak_da = SharedWeakDa::default();
        let sequencers: Vec<SimSequencer> = (0..config.sequencers)
            .map(|index| {
                let mut sequencer = SimSequencer::new(
                    validators.share_memory(),
                    index,
                    ReplicaKeys {
                        operator: operator(index),
                        bls: bls(index),
                    },
                    replica_config,
                    CHAIN_ID,
                    weak_da.clone(),
                );
                match scenario.byzantine {
                    Some((byzantine, Byzantine::Silent)) if byzantine == index => {
                        sequencer.silent = true;
                    }
                    Some((byzantine, Byzantine::WithholdsBodies)) if byzantine == index => {
                        sequencer.withholds_bodies = true;
                    }
                    Some((byzantine, Byzantine::Equivocates)) if byzantine == index => {
                        sequencer.equivocates = true;
                    }
                    _ => {}
                }
                sequencer
            })
            .collect();
        let ids = sequencers.iter().map(|sequencer| sequencer.id).collect();

        let chain = Arc::new(EmbeddedChain::new(Vec::new()));
        let nodes: Vec<ShardNode> = (0..config.shard_nodes)
            .map(|index| ShardNode::from_seed(0xA11_0000 + index as u64))
            .collect();
        for node in &nodes {
            let (registration, signature) =
                node.registration("sim".into(), Default::default(), vec![]);
            chain
                .register_node(registration, &signature)
                .map_err(|error| shard(&error))?;
        }
        chain.advance_epoch();
        let shard_ids: Vec<NodeId> = nodes.iter().map(ShardNode::id).collect();
        let dir = tempfile::tempdir().map_err(|error| shard(&error))?;
        let mut network = ShardNetwork::new(chain.clone(), CHAIN_ID, nodes, dir.path())
            .map_err(|error| shard(&error))?;
        network.set_root_commit_interval(ROOT_COMMIT_INTERVAL);
        network.set_execution_threads(1);
        for index in &scenario.lying_members {
            network.set_lying(shard_ids[*index]);
        }
        let game = AccountState {
            code: game_code(),
            ..AccountState::default()
        };
        network
            .insert_genesis(GAME_ADDRESS, game.clone())
            .map_err(|error| shard(&error))?;
        let mut genesis = InMemoryState::new();
        genesis.insert_account(GAME_ADDRESS, game);
        let groups = GroupMap::new(&network.snapshot().ids(), GROUP_SIZE)
            .all_groups()
            .into_iter()
            .map(|group| group.id)
            .collect();

        let players = (0..config.players)
            .map(|index| Player {
                key: AccountKey::from_seed(0xB1A_0000 + index as u64),
                sequencer: index % config.sequencers,
                next_nonce: 0,
                sent: Vec::new(),
            })
            .collect();
        let mut world = World {
            config,
            heal_us: config.faulty_us,
            scenario,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Instant::ZERO,
            queue: BTreeMap::new(),
            order: 0,
            timers: vec![None; config.sequencers],
            sequencers,
            ids,
            players,
            weak_da,
            network,
            chain,
            shard_ids,
            groups,
            stopped: BTreeSet::new(),
            restarted: BTreeSet::new(),
            finalized: BTreeMap::new(),
            executed_through: 0,
            verifier: Verifier::new(CHAIN_ID, genesis),
            reference: BTreeMap::new(),
            certified: BTreeMap::new(),
            succeeded: BTreeSet::new(),
            acked: BTreeMap::new(),
            results_in_flight: 0,
            last_link: HashMap::new(),
            report: RunReport {
                seed,
                ..RunReport::default()
            },
            _dir: dir,
        };
        world.count_faults();
        world.schedule(Instant::ZERO, Event::Tick);
        for player in 0..config.players {
            let first = world.rng.random_range(0..config.move_interval_us);
            world.schedule(Instant::from_micros(first), Event::PlayerMove(player));
        }
        Ok(world)
    }

    /// Heals everything at `heal_us` (if before the faulty phase ends): the run is the prefix
    /// of the seed's faulty phase up to then, with the same faults, followed by the heal, a
    /// second of load and the settling, all checked as usual.
    pub fn heal_at(mut self, heal_us: u64) -> World {
        self.heal_us = heal_us.min(self.config.faulty_us);
        self
    }

    /// Runs the world: the faulty phase, the heal with a second of load after it, and the
    /// settling; returns what it did and every violation found.
    pub fn run(mut self) -> RunReport {
        let heal = self.heal_us;
        let load_end = heal + LOAD_AFTER_HEAL_US;
        let deadline = heal + RECOVERY_BOUND_US;
        while let Some((at, _)) = self.queue.keys().next().copied() {
            if at.as_micros() > deadline || !self.report.violations.is_empty() {
                break;
            }
            if at.as_micros() > load_end && self.settled() {
                break;
            }
            let Some(((at, _), event)) = self.queue.pop_first() else {
                break;
            };
            self.now = at;
            self.handle(event);
        }
        self.report.simulated_us = self.now.as_micros();
        let equivocations: u64 = self
            .sequencers
            .iter()
            .map(|sequencer| sequencer.equivocations)
            .sum();
        if equivocations > 0 {
            self.report
                .faults
                .insert("equivocating_pre_prepare", equivocations);
        }
        self.check_end();
        self.report
    }

    /// Whether every acked move of a correct sequencer finished, and nothing is in flight toward
    /// execution or back from it.
    fn settled(&self) -> bool {
        self.results_in_flight == 0
            && self
                .sequencers
                .iter()
                .enumerate()
                .filter(|(index, _)| !self.is_byzantine(*index))
                .all(|(_, sequencer)| sequencer.pending.is_empty())
            && self
                .finalized
                .keys()
                .next_back()
                .is_none_or(|last| *last <= self.executed_through)
    }

    fn is_byzantine(&self, sequencer: usize) -> bool {
        self.scenario
            .byzantine
            .is_some_and(|(byzantine, _)| byzantine == sequencer)
    }

    fn count_faults(&mut self) {
        let scenario = &self.scenario;
        let faults = &mut self.report.faults;
        let mut add = |kind: &'static str, count: u64| {
            if count > 0 {
                *faults.entry(kind).or_default() += count;
            }
        };
        add("partition", u64::from(scenario.partition.is_some()));
        add("clogged_link", u64::from(scenario.clog.is_some()));
        match scenario.byzantine {
            Some((_, Byzantine::Silent)) => add("silent_sequencer", 1),
            Some((_, Byzantine::WithholdsBodies)) => add("sequencer_withholding_bodies", 1),
            Some((_, Byzantine::Equivocates)) => add("equivocating_sequencer", 1),
            Some((_, Byzantine::MismatchedBodies)) => add("sequencer_with_mismatched_bodies", 1),
            None => {}
        }
        add("shard_node_stopped", scenario.shard_stops.len() as u64);
        add("shard_node_restarted", scenario.shard_restarts.len() as u64);
        add("shard_node_lying", scenario.lying_members.len() as u64);
    }

    fn fault(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_default() += 1;
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.order += 1;
        self.queue.insert((at, self.order), event);
    }

    fn healed(&self) -> bool {
        self.now.as_micros() >= self.heal_us
    }

    fn latency(&mut self) -> u64 {
        let (low, high) = self.scenario.latency_us;
        self.rng.random_range(low..=high)
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        let now = self.now.as_micros();
        !self.healed()
            && self.scenario.partition.is_some_and(|(side, from, until)| {
                now >= from && now < until && ((a == side) != (b == side))
            })
    }

    fn clogged(&self, a: usize, b: usize) -> u64 {
        let now = self.now.as_micros();
        match self.scenario.clog {
            Some((x, y, from, until, extra))
                if !self.healed()
                    && now >= from
                    && now < until
                    && ((a, b) == (x, y) || (a, b) == (y, x)) =>
            {
                extra
            }
            _ => 0,
        }
    }

    /// Sends a peer message: PBFT datagrams may be lost, duplicated and reordered; headers go
    /// over a reliable ordered link (KCP), delayed by retransmissions and held by a partition
    /// until it heals.
    fn send_peer(&mut self, from: usize, to: usize, message: PeerMessage) {
        let datagram = matches!(message, PeerMessage::Consensus(_));
        let latency = self.latency() + self.clogged(from, to);
        if datagram {
            if self.cut(from, to) {
                return;
            }
            let faulty = !self.healed();
            if faulty && self.rng.random_bool(self.scenario.drop_ratio) {
                self.fault("datagram_dropped");
                return;
            }
            if faulty && self.rng.random_bool(self.scenario.duplicate_ratio) {
                self.fault("datagram_duplicated");
                let again = self.latency();
                let at = Instant::from_micros(self.now.as_micros() + again);
                self.schedule(
                    at,
                    Event::Peer {
                        from,
                        to,
                        message: message.clone(),
                    },
                );
            }
            let at = Instant::from_micros(self.now.as_micros() + latency);
            self.schedule(at, Event::Peer { from, to, message });
            return;
        }
        let mut at = self.now.as_micros() + latency;
        if let Some((side, _, until)) = self.scenario.partition
            && self.cut(from, to)
            && ((from == side) != (to == side))
        {
            at = at.max(until.min(self.heal_us) + latency);
        }
        if !self.healed() && self.rng.random_bool(self.scenario.retransmit_ratio) {
            self.fault("retransmission");
            at += RETRANSMIT_US;
        }
        // In order on one link.
        let last = self.last_link.entry((from, to)).or_insert(Instant::ZERO);
        let at = Instant::from_micros(at.max(last.as_micros()));
        *last = at;
        self.schedule(at, Event::Peer { from, to, message });
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick => self.tick(),
            Event::PlayerMove(player) => self.player_move(player),
            Event::Request {
                sequencer,
                player,
                bytes,
            } => {
                let effects = self.sequencers[sequencer].request(self.now, player, bytes);
                self.apply(sequencer, effects);
            }
            Event::Reply { player, message } => self.reply(player, message),
            Event::Peer { from, to, message } => {
                let id = self.ids[from];
                let effects = self.sequencers[to].peer(self.now, id, message);
                self.apply(to, effects);
            }
            Event::Timer(sequencer) => {
                self.timers[sequencer] = None;
                let effects = self.sequencers[sequencer].timeout(self.now);
                self.apply(sequencer, effects);
            }
            Event::BodyStored { sequencer, block } => {
                let mut body = block.body.clone();
                if matches!(self.scenario.byzantine, Some((byzantine, Byzantine::MismatchedBodies)) if byzantine == sequencer)
                    && body.moves.len() >= 2
                {
                    // The same moves in another order: a body, but not the one the root names.
                    body.moves.swap(0, 1);
                    self.fault("mismatched_body");
                }
                self.weak_da.borrow_mut().put(block.header.root, body);
                let effects = self.sequencers[sequencer].body_stored(self.now, *block);
                self.apply(sequencer, effects);
            }
            Event::Recheck {
                sequencer,
                sequence,
                batch,
                attempt,
            } => self.check_when_held(sequencer, sequence, batch, attempt),
            Event::Executed { sequencer, batch } => {
                self.results_in_flight -= 1;
                self.sequencers[sequencer].executed(&batch);
            }
        }
    }

    fn apply(&mut self, sequencer: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(to, message) => {
                    if let Some(to) = self.ids.iter().position(|id| *id == to) {
                        self.send_peer(sequencer, to, message);
                    }
                }
                Effect::Broadcast(message) => {
                    for to in 0..self.sequencers.len() {
                        if to != sequencer {
                            self.send_peer(sequencer, to, message.clone());
                        }
                    }
                }
                Effect::Reply(player, message) => {
                    let at = Instant::from_micros(self.now.as_micros() + self.latency());
                    self.schedule(at, Event::Reply { player, message });
                }
                Effect::PutBody(block) => {
                    let at = Instant::from_micros(self.now.as_micros() + WEAK_DA_PUT_US);
                    self.schedule(at, Event::BodyStored { sequencer, block });
                }
                Effect::Check(sequence, batch) => {
                    self.check_when_held(sequencer, sequence, batch, 0);
                }
                Effect::Finalized(finalized) => self.finalized(sequencer, *finalized),
            }
        }
        self.arm_timer(sequencer);
    }

    /// Has `sequencer` check a proposal once weak DA holds every body it names, reading again
    /// every [`RECHECK_US`] and giving up (the proposal is then invalid) after
    /// [`RECHECK_ATTEMPTS`] reads, as the tokio driver's fetches do.
    fn check_when_held(
        &mut self,
        sequencer: usize,
        sequence: u64,
        batch: Box<primitives::Batch>,
        attempt: u32,
    ) {
        let held = {
            let weak_da = self.weak_da.borrow();
            batch
                .headers
                .iter()
                .all(|header| weak_da.holds(&header.root))
        };
        if held || attempt >= RECHECK_ATTEMPTS {
            let effects = self.sequencers[sequencer].check_batch(self.now, sequence, *batch);
            self.apply(sequencer, effects);
            return;
        }
        let at = Instant::from_micros(self.now.as_micros() + RECHECK_US);
        self.schedule(
            at,
            Event::Recheck {
                sequencer,
                sequence,
                batch,
                attempt: attempt + 1,
            },
        );
    }

    fn arm_timer(&mut self, sequencer: usize) {
        let Some(deadline) = self.sequencers[sequencer].deadline() else {
            return;
        };
        if self.timers[sequencer].is_some_and(|armed| armed <= deadline) {
            return;
        }
        self.timers[sequencer] = Some(deadline);
        self.schedule(deadline.max(self.now), Event::Timer(sequencer));
    }

    fn tick(&mut self) {
        self.apply_shard_faults();
        for sequencer in 0..self.sequencers.len() {
            let effects = self.sequencers[sequencer].tick(self.now);
            self.apply(sequencer, effects);
        }
        if let Err(error) = self.network.advance(self.now) {
            self.report
                .violations
                .push(Violation::Shard(error.to_string()));
        }
        self.check_roots();
        let next = Instant::from_micros(self.now.as_micros() + TICK_US);
        self.schedule(next, Event::Tick);
    }

    fn apply_shard_faults(&mut self) {
        let now = self.now.as_micros();
        let healed = self.healed();
        for index in 0..self.shard_ids.len() {
            let down = !healed
                && self
                    .scenario
                    .shard_stops
                    .iter()
                    .any(|(node, from, until)| *node == index && now >= *from && now < *until);
            let id = self.shard_ids[index];
            let result = if down && self.stopped.insert(index) {
                self.network.stop_member(&id)
            } else if !down && self.stopped.remove(&index) {
                self.network.resume_member(&id)
            } else {
                Ok(())
            };
            if let Err(error) = result {
                self.report
                    .violations
                    .push(Violation::Shard(error.to_string()));
            }
        }
        let due: Vec<usize> = self
            .scenario
            .shard_restarts
            .iter()
            .filter(|(node, at)| now >= *at && !self.restarted.contains(node))
            .map(|(node, _)| *node)
            .collect();
        for index in due {
            self.restarted.insert(index);
            if let Err(error) = self.network.restart_node(&self.shard_ids[index]) {
                self.report
                    .violations
                    .push(Violation::Shard(error.to_string()));
            }
        }
    }

    fn player_move(&mut self, index: usize) {
        let now = self.now.as_micros();
        if now >= self.heal_us + LOAD_AFTER_HEAL_US {
            return;
        }
        let replay = !self.players[index].sent.is_empty()
            && self.rng.random_bool(self.scenario.replay_ratio);
        let signed = if replay {
            self.fault("replayed_move");
            let sent = &self.players[index].sent;
            sent[self.rng.random_range(0..sent.len())].clone()
        } else {
            let cell = if self.rng.random_bool(self.scenario.revert_ratio) {
                self.rng.random_range(64..128)
            } else {
                self.rng.random_range(0..64)
            };
            let player = &mut self.players[index];
            let signed = move_piece(&player.key, CHAIN_ID, player.next_nonce, cell);
            player.next_nonce += 1;
            player.sent.push(signed.clone());
            signed
        };
        let sequencer = self.players[index].sequencer;
        let bytes = ClientRequest::Submit(signed).to_bytes();
        let at = Instant::from_micros(now + self.latency());
        self.schedule(
            at,
            Event::Request {
                sequencer,
                player: index,
                bytes,
            },
        );
        let gap = self
            .rng
            .random_range(self.config.move_interval_us / 2..=self.config.move_interval_us * 3 / 2);
        self.schedule(Instant::from_micros(now + gap), Event::PlayerMove(index));
    }

    fn reply(&mut self, player: usize, message: ServerMessage) {
        let ServerMessage::Ack { hash, result, .. } = message else {
            return;
        };
        match result {
            Ok(_) => {
                let sequencer = self.players[player].sequencer;
                if !self.is_byzantine(sequencer) {
                    self.report.acked += 1;
                    self.acked.entry(hash).or_insert((sequencer, self.now));
                }
            }
            Err(refusal) => {
                self.report.refused += 1;
                // A player whose move was refused for its nonce takes the sequencer's count,
                // as the SDK does; a replay's refusal changes nothing.
                if let Refusal::BadNonce { expected, got } = refusal
                    && self.players[player]
                        .sent
                        .last()
                        .is_some_and(|last| last.hash() == hash)
                    && got + 1 == self.players[player].next_nonce
                {
                    self.players[player].next_nonce = expected;
                }
            }
        }
    }

    fn finalized(&mut self, sequencer: usize, finalized: FinalizedBatch) {
        let number = finalized.batch.number;
        let hash = finalized.batch.hash();
        if self.is_byzantine(sequencer) {
            return;
        }
        match self.finalized.get(&number) {
            Some((first, _)) if *first != hash => {
                self.report.violations.push(Violation::Fork {
                    number,
                    first: *first,
                    first_sequence: self.finalized[&number].1.sequence,
                    second: hash,
                    second_sequence: finalized.sequence,
                });
                return;
            }
            Some(_) => return,
            None => {}
        }
        self.finalized.insert(number, (hash, finalized));
        self.report.batches += 1;
        self.execute_ready();
    }

    /// Executes finalized batches in order, checks each against the reference re-execution and
    /// sends the results to every sequencer.
    fn execute_ready(&mut self) {
        while let Some((_, finalized)) = self.finalized.get(&(self.executed_through + 1)) {
            let finalized = finalized.clone();
            let bodies: Option<Vec<BlockBody>> = finalized
                .batch
                .headers
                .iter()
                .map(|header| self.weak_da.borrow().body(&header.root).cloned())
                .collect();
            let Some(bodies) = bodies else {
                self.report.violations.push(Violation::Shard(format!(
                    "batch {} names a body weak DA does not hold",
                    finalized.batch.number
                )));
                return;
            };
            let executed = match self.network.execute_batch_at(self.now, &finalized, &bodies) {
                Ok(executed) => executed,
                Err(error) => {
                    self.report
                        .violations
                        .push(Violation::Shard(error.to_string()));
                    return;
                }
            };
            self.executed_through = finalized.batch.number;
            for outcome in &executed.outcomes {
                match outcome.status {
                    Ok(()) => {
                        self.report.executed += 1;
                        if !self.succeeded.insert(outcome.hash) {
                            self.report
                                .violations
                                .push(Violation::ExecutedTwice(outcome.hash));
                        }
                    }
                    Err(_) => self.report.failed += 1,
                }
            }
            let record = self.network.last_record().clone();
            if let Err(divergence) = self.verifier.replay(&record) {
                self.report.violations.push(Violation::Reexecution {
                    batch: finalized.batch.number,
                    why: divergence.to_string(),
                });
                return;
            }
            self.reference
                .insert(finalized.batch.number, self.verifier.state().clone());
            while self.reference.len() > REFERENCE_STATES_KEPT {
                self.reference.pop_first();
            }
            let executed = Arc::new(executed);
            for sequencer in 0..self.sequencers.len() {
                let at = Instant::from_micros(self.now.as_micros() + self.latency());
                self.results_in_flight += 1;
                self.schedule(
                    at,
                    Event::Executed {
                        sequencer,
                        batch: executed.clone(),
                    },
                );
            }
            self.check_roots();
        }
    }

    /// Every group root the chain holds is checked once against the reference state at its
    /// batch.
    fn check_roots(&mut self) {
        for group in self.groups.clone() {
            let commitment = match self.chain.group_root(&group) {
                Ok(Some(commitment)) => commitment,
                Ok(None) => continue,
                Err(error) => {
                    self.report
                        .violations
                        .push(Violation::Shard(error.to_string()));
                    continue;
                }
            };
            match self.certified.get(&(group, commitment.batch)) {
                Some(root) if *root == commitment.root => continue,
                Some(_) => {
                    self.report.violations.push(Violation::TwoRoots {
                        group,
                        batch: commitment.batch,
                    });
                    continue;
                }
                None => {}
            }
            self.certified
                .insert((group, commitment.batch), commitment.root);
            let Some(state) = self.reference.get(&commitment.batch) else {
                continue;
            };
            let reference = group_root_in(state, self.network.snapshot(), &group);
            self.report.roots_checked += 1;
            if reference != commitment.root {
                self.report.violations.push(Violation::WrongRoot {
                    group,
                    batch: commitment.batch,
                    certified: commitment.root,
                    reference,
                });
            }
        }
    }

    fn check_end(&mut self) {
        if !self.report.violations.is_empty() {
            return;
        }
        let mut lost = Vec::new();
        for (hash, (sequencer, _)) in &self.acked {
            let level = self.sequencers[*sequencer]
                .levels
                .get(hash)
                .cloned()
                .unwrap_or(FinalityLevel::Pending);
            if !matches!(level, FinalityLevel::Executed | FinalityLevel::Failed(_)) {
                lost.push(Violation::Lost {
                    hash: *hash,
                    sequencer: *sequencer,
                    level,
                });
            }
        }
        self.report.violations.extend(lost.into_iter().take(8));
        if !self.report.violations.is_empty() {
            return;
        }
        for sequencer in 0..self.sequencers.len() {
            if self.is_byzantine(sequencer) {
                continue;
            }
            for player in 0..self.players.len() {
                let address = self.players[player].key.address();
                let slot = slot_of(&address);
                let executed_nonce = match self.network.nonce(&address) {
                    Ok(nonce) => U256::from(nonce),
                    Err(error) => {
                        self.report
                            .violations
                            .push(Violation::Shard(error.to_string()));
                        return;
                    }
                };
                let executed_cell = match self.network.storage(&GAME_ADDRESS, &slot) {
                    Ok(value) => value,
                    Err(error) => {
                        self.report
                            .violations
                            .push(Violation::Shard(error.to_string()));
                        return;
                    }
                };
                let pending = &self.sequencers[sequencer].pending;
                let pending_nonce = U256::from(pending.next_nonce(&address));
                if pending_nonce != executed_nonce {
                    self.report.violations.push(Violation::Diverged {
                        sequencer,
                        item: format!("nonce of {address}"),
                        pending: pending_nonce,
                        executed: executed_nonce,
                    });
                }
                let pending_cell = pending.storage(&GAME_ADDRESS, &slot);
                if pending_cell != executed_cell {
                    self.report.violations.push(Violation::Diverged {
                        sequencer,
                        item: format!("cell of {address}"),
                        pending: pending_cell,
                        executed: executed_cell,
                    });
                }
            }
        }
    }
}

/// Runs one seed of `config`'s world.
pub fn run_seed(config: WorldConfig, seed: u64) -> RunReport {
    run_prefix(config, seed, config.faulty_us)
}

/// Runs one seed of `config`'s world with its faulty phase cut at `heal_us`
/// ([`World::heal_at`]).
pub fn run_prefix(config: WorldConfig, seed: u64, heal_us: u64) -> RunReport {
    let scenario = Scenario::draw(&config, seed);
    match World::new(seed, config, scenario) {
        Ok(world) => world.heal_at(heal_us).run(),
        Err(violation) => RunReport {
            seed,
            violations: vec![violation],
            ..RunReport::default()
        },
    }
}

/// The granularity of [`shrink`]'s search, microseconds of faulty phase.
const SHRINK_STEP_US: u64 = 100_000;

/// A failing seed's shortest failing prefix that [`shrink`] found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// Where the faulty phase is cut (microseconds): every fault after it is left out.
    pub heal_us: u64,
    /// The run of that prefix, with its violations.
    pub report: RunReport,
}

/// Shrinks a failing seed to the shortest prefix of its faulty phase that still fails with a
/// violation of the same kind as its first: a binary search over where the faults stop, in
/// steps of 100 ms (a failure that needs its faults to go on to some point fails for every
/// longer prefix). `None` when the seed does not fail, or fails only whole.
pub fn shrink(config: WorldConfig, seed: u64, failing: &RunReport) -> Option<Shrunk> {
    let kind = std::mem::discriminant(failing.violations.first()?);
    let fails = |heal_us: u64| {
        let report = run_prefix(config, seed, heal_us);
        report
            .violations
            .iter()
            .any(|violation| std::mem::discriminant(violation) == kind)
            .then_some(report)
    };
    // Steps of the faulty phase: `high` fails (the whole run), `low` is not known to.
    let steps = config.faulty_us.div_ceil(SHRINK_STEP_US);
    let (mut low, mut high) = (0u64, steps);
    let mut shortest = None;
    if let Some(report) = fails(0) {
        return Some(Shrunk { heal_us: 0, report });
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        match fails(middle * SHRINK_STEP_US) {
            Some(report) => {
                high = middle;
                shortest = Some(Shrunk {
                    heal_us: middle * SHRINK_STEP_US,
                    report,
                });
            }
            None => low = middle,
        }
    }
    shortest
}

/// The command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!("TICKRATE_SEED={seed} cargo test -p sim --test world")
}

/// The command that replays `seed` with its faulty phase cut at `heal_us` ([`shrink`]).
pub fn replay_prefix_command(seed: u64, heal_us: u64) -> String {
    format!("TICKRATE_SEED={seed} TICKRATE_HEAL_US={heal_us} cargo test -p sim --test world")
}
