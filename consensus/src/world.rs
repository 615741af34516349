//! A deterministic, timed world of replicas with faults (feature `test-utils`): the simulator
//! the safety and liveness checkers run over many seeds.
//!
//! Unlike [`crate::harness::Cluster`], which steps messages with no notion of time, the world
//! has a clock: messages take a seeded latency (so they reorder), timers fire, and the world
//! plays the application (it keeps a backlog of values to order, tells every replica about it,
//! and proposes at whichever replica is primary). Faults, all drawn from one seed:
//!
//! - the network drops, duplicates and delays messages, and partitions the replicas;
//! - replicas crash and restart: a crash loses everything but the replica's log (an in-memory
//!   [`ReplicaLog`] over the same framing as the file log), sometimes with a torn tail, and the
//!   replica restarts from what the log recovers ([`Replica::restore`]);
//! - up to `f` replicas are byzantine: silent, equivocating as primary (a different value to
//!   half the replicas, each signed), voting for conflicting digests, or replaying old traffic.
//!
//! After the faulty phase the world heals (partitions end, crashed replicas restart, the network
//! stops losing messages; byzantine replicas stay byzantine) and checks liveness: values proposed
//! after the heal are committed by every correct replica within a bounded simulated time. Safety
//! is checked throughout: no two correct replicas commit different values at one sequence, every
//! certificate verifies, and no replica's own code ever signs two different pre-prepares,
//! prepares or commits for one view and sequence, across its restarts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use primitives::{
    B256, Encode,
    machine::{Machine, Origin},
    time::Instant,
};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

use crate::{
    evidence::Evidence,
    harness::{
        Decided, check_agreement, check_evidence, node_id, operator_key, replica_keys, secret_key,
    },
    message::{Message, PrePrepare, Vote},
    persist::ReplicaState,
    replica::{Replica, ReplicaConfig, ReplicaEvent, ReplicaInput},
    store::{MemoryMedium, Recovery, ReplicaLog},
    validator::{Validator, ValidatorSet},
};

/// What a faulty replica does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Follows the protocol.
    Correct,
    /// Sends nothing.
    Silent,
    /// As primary, sends one value to `quorum - 1` backups and another to the rest (so the
    /// first prepares but never commits), each signed.
    EquivocatingPrimary,
    /// Sends every other replica prepares and commits for a random digest.
    ConflictingVotes,
    /// Sends again, now and then, old messages it saw.
    Replayer,
    /// Signs its pre-prepares, prepares and commits with a key that is not its own, over its
    /// authenticated sessions: receivers refuse the pre-prepares on arrival and the votes when a
    /// quorum would count them.
    BadSignatures,
}

/// A change of validator set in the middle of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochChange {
    /// The last sequence the first set decides.
    pub end: u64,
    /// The nodes of the second set, in order (indices of `n` and above are nodes that join).
    pub members: Vec<usize>,
    /// When the driver hands the second set to the replicas (microseconds); again to each one
    /// that restarts before it switched.
    pub announce_us: u64,
}

/// The faults of one run, drawn from its seed by [`Scenario::draw`].
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Number of replicas.
    pub n: usize,
    /// Behaviour of each replica.
    pub behaviours: Vec<Behaviour>,
    /// Replicas that crash during the faulty phase: `(index, crash at, restart at)`, in
    /// microseconds.
    pub crashes: Vec<(usize, u64, u64)>,
    /// Replicas cut off from the others during the faulty phase, and when (microseconds).
    pub partition: Option<(Vec<usize>, u64, u64)>,
    /// Probability a message is lost during the faulty phase.
    pub drop_ratio: f64,
    /// Probability a message is delivered twice during the faulty phase.
    pub duplicate_ratio: f64,
    /// Range of one-way latencies, microseconds (uniform; messages reorder within it).
    pub latency_us: (u64, u64),
    /// Length of the faulty phase, microseconds.
    pub faulty_us: u64,
    /// Values the application submits during the faulty phase.
    pub values: u64,
    /// A change of validator set (epoch 0, nodes `0..n`, to epoch 1), if any.
    pub epoch_change: Option<EpochChange>,
}

impl Scenario {
    /// Draws a scenario for `n` replicas from `seed`.
    pub fn draw(n: usize, seed: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5CE9_A410);
        let f = (n - 1) / 3;
        let faulty_us = 2_000_000;
        let mut indices: Vec<usize> = (0..n).collect();
        indices.shuffle(&mut rng);
        let byzantine = rng.random_range(0..=f);
        let mut behaviours = vec![Behaviour::Correct; n];
        for index in indices.iter().take(byzantine) {
            behaviours[*index] = match rng.random_range(0..5) {
                0 => Behaviour::Silent,
                1 => Behaviour::EquivocatingPrimary,
                2 => Behaviour::ConflictingVotes,
                3 => Behaviour::BadSignatures,
                _ => Behaviour::Replayer,
            };
        }
        // Crashes are benign: any replica may crash, byzantine ones included.
        let crashes = (0..rng.random_range(0..=f + 1))
            .map(|_| {
                let index = rng.random_range(0..n);
                let at = rng.random_range(0..faulty_us);
                let back = rng.random_range(at..=faulty_us);
                (index, at, back)
            })
            .collect();
        let partition = rng.random_bool(0.3).then(|| {
            let size = rng.random_range(1..=n / 2);
            let side: Vec<usize> = indices.iter().rev().take(size).copied().collect();
            let at = rng.random_range(0..faulty_us);
            (side, at, rng.random_range(at..=faulty_us))
        });
        let lossy = rng.random_bool(0.7);
        Scenario {
            n,
            behaviours,
            crashes,
            partition,
            drop_ratio: if lossy {
                rng.random_range(0.0..0.25)
            } else {
                0.0
            },
            duplicate_ratio: rng.random_range(0.0..0.15),
            latency_us: (200, rng.random_range(1_000..20_000)),
            faulty_us,
            values: rng.random_range(2..=6),
            epoch_change: None,
        }
    }

    /// Number of nodes: the first set's, and those that join it.
    pub fn nodes(&self) -> usize {
        let joining = self
            .epoch_change
            .as_ref()
            .and_then(|change| change.members.iter().max())
            .map_or(0, |highest| highest + 1);
        self.n.max(joining)
    }

    /// What node `index` does (nodes that join follow the protocol).
    pub fn behaviour(&self, index: usize) -> Behaviour {
        self.behaviours
            .get(index)
            .copied()
            .unwrap_or(Behaviour::Correct)
    }

    /// Indices of the nodes that follow the protocol.
    pub fn correct(&self) -> Vec<usize> {
        (0..self.nodes())
            .filter(|index| self.behaviour(*index) == Behaviour::Correct)
            .collect()
    }
}

/// What a run did, for the tests' summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Highest view any correct replica reached.
    pub views: u64,
    /// Sequences decided (by the correct replica that decided most).
    pub decided: u64,
    /// Messages delivered, dropped and duplicated.
    pub delivered: u64,
    /// Messages dropped.
    pub dropped: u64,
    /// Fetches sent by correct replicas.
    pub fetches: u64,
    /// Microseconds from the heal until every correct replica committed every value proposed
    /// after it.
    pub recovery_us: u64,
    /// Equivocation evidence emitted by correct replicas.
    pub evidence: usize,
    /// Replicas restarted from their logs.
    pub restarts: u64,
    /// Restarts whose log had a torn tail cut off.
    pub torn_tails: u64,
    /// Correct replicas that switched to the second epoch.
    pub epochs_entered: u64,
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
    },
    Tick,
}

struct Node {
    replica: Replica<B256>,
    /// The replica's log while it runs; `None` while it is down.
    log: Option<ReplicaLog<B256, MemoryMedium>>,
    /// What survives a crash: the log's bytes, while the replica is down.
    disk: Option<MemoryMedium>,
    behaviour: Behaviour,
    crashed: bool,
    committed: Vec<Decided<B256>>,
    committed_set: BTreeSet<B256>,
    evidence: Vec<Evidence>,
    /// The deadline a timer event is queued for.
    timer: Option<Instant>,
    /// Values this node was asked to propose in its current view.
    proposed: BTreeSet<B256>,
    proposed_view: u64,
    /// The set the node's replica is built with (the first epoch's, or the one it joins), and
    /// its index in it.
    first_set: ValidatorSet,
    first_index: usize,
    /// The last sequence before the node's first epoch (0, or the end of the first set's for
    /// a node that joins): it commits from the next one.
    joined_after: u64,
    /// Whether the driver gave the running replica the next epoch's set.
    epoch_given: bool,
}

/// Tick of the application: how often it tells replicas about its backlog and proposes.
const TICK_US: u64 = 10_000;
/// The view timeout the world's replicas start with.
const VIEW_TIMEOUT_US: u64 = 100_000;
/// Longest the world lets the view timeout grow.
const VIEW_TIMEOUT_MAX_US: u64 = 3_200_000;
/// How long after the heal every correct replica must have committed the values proposed
/// after it: enough for several view changes at the longest timeout.
pub const RECOVERY_BOUND_US: u64 = 60_000_000;
/// Values proposed after the heal.
const VALUES_AFTER_HEAL: u64 = 2;
/// Most proposals in flight at once.
const PROPOSALS_IN_FLIGHT: usize = 4;
/// Messages a replayer remembers.
const REPLAY_MEMORY: usize = 256;

/// The world of one run.
pub struct World {
    seed: u64,
    scenario: Scenario,
    validators: ValidatorSet,
    /// The second epoch's set, if the scenario changes sets.
    next_set: Option<ValidatorSet>,
    nodes: Vec<Node>,
    queue: BTreeMap<(Instant, u64), Event>,
    order: u64,
    now: Instant,
    rng: ChaCha8Rng,
    healed: bool,
    /// Values to order, oldest first, and when each was first submitted.
    backlog: VecDeque<B256>,
    submitted: u64,
    /// Every value any correct replica committed.
    committed_values: BTreeSet<B256>,
    /// The sequence each value was committed at.
    committed_at: BTreeMap<B256, u64>,
    /// Every value submitted.
    all_values: Vec<B256>,
    seen: VecDeque<(usize, usize, Vec<u8>)>,
    /// What each replica's own code signed: `(replica, message tag, view, sequence)` to digest.
    signed: BTreeMap<(usize, u8, u64, u64), B256>,
    config: ReplicaConfig,
    report: RunReport,
    /// Print progress every simulated second (`TICKRATE_WORLD_TRACE`).
    trace: bool,
}

impl World {
    /// A world for `scenario`, with randomness from `seed`.
    pub fn new(seed: u64, scenario: Scenario) -> World {
        let n = scenario.n;
        let member = |index: usize| Validator {
            id: node_id(index),
            key: secret_key(index).public_key(),
        };
        let change = scenario.epoch_change.clone();
        let validators = ValidatorSet::for_epoch(
            (0..n).map(member).collect(),
            0,
            0,
            change.as_ref().map(|change| change.end),
        );
        let next_set = change.as_ref().map(|change| {
            ValidatorSet::for_epoch(
                change.members.iter().copied().map(member).collect(),
                1,
                change.end,
                None,
            )
        });
        let config = ReplicaConfig {
            view_timeout_us: VIEW_TIMEOUT_US,
            view_timeout_max_us: VIEW_TIMEOUT_MAX_US,
        };
        let nodes = (0..scenario.nodes())
            .map(|index| {
                let (first_set, first_index, joined_after) = if index < n {
                    (validators.share_memory(), index, 0)
                } else {
                    let next = next_set.as_ref().expect("a joining node has a set to join");
                    let position = next
                        .index_of(&node_id(index))
                        .expect("a joining node is in the set it joins");
                    (next.share_memory(), position, next.start())
                };
                let (mut log, _) = open_log(seed, index, MemoryMedium::new());
                if index >= n {
                    log.start_from(ReplicaState::joining(&first_set))
                        .expect("memory");
                }
                Node {
                    replica: Replica::restore(
                        first_set.share_memory(),
                        first_index,
                        replica_keys(index),
                        config,
                        Instant::ZERO,
                        log.state().clone(),
                    ),
                    log: Some(log),
                    disk: None,
                    behaviour: scenario.behaviour(index),
                    crashed: false,
                    committed: Vec::new(),
                    committed_set: BTreeSet::new(),
                    evidence: Vec::new(),
                    timer: None,
                    proposed: BTreeSet::new(),
                    proposed_view: 0,
                    first_set,
                    first_index,
                    joined_after,
                    epoch_given: false,
                }
            })
            .collect();
        let mut world = World {
            seed,
            scenario,
            validators,
            next_set,
            nodes,
            queue: BTreeMap::new(),
            order: 0,
            now: Instant::ZERO,
            rng: ChaCha8Rng::seed_from_u64(seed),
            healed: false,
            backlog: VecDeque::new(),
            submitted: 0,
            committed_values: BTreeSet::new(),
            committed_at: BTreeMap::new(),
            all_values: Vec::new(),
            seen: VecDeque::new(),
            signed: BTreeMap::new(),
            config,
            report: RunReport::default(),
            trace: std::env::var("TICKRATE_WORLD_TRACE").is_ok(),
        };
        if world.trace {
            eprintln!("seed {seed}: {:?}", world.scenario);
        }
        world.schedule(Instant::ZERO, Event::Tick);
        world
    }

    /// Runs the scenario: the faulty phase, the heal, and the liveness check. Panics, naming
    /// the seed, if a checker fails.
    pub fn run(&mut self) -> RunReport {
        let heal_at = Instant::from_micros(self.scenario.faulty_us);
        self.run_until(heal_at);
        self.heal();
        let fresh: Vec<B256> = (0..VALUES_AFTER_HEAL).map(|_| self.submit()).collect();
        let deadline = Instant::from_micros(heal_at.as_micros() + RECOVERY_BOUND_US);
        while self.now < deadline && !self.all_correct_committed(&fresh) {
            let Some(next) = self.queue.keys().next().copied() else {
                break;
            };
            self.run_until(next.0);
        }
        self.check_safety();
        assert!(
            self.all_correct_committed(&fresh),
            "seed {}: liveness: values proposed after the heal not committed by every correct \
             replica within {} s ({:?}; views {:?}, committed {:?})",
            self.seed,
            RECOVERY_BOUND_US / 1_000_000,
            self.scenario,
            self.nodes
                .iter()
                .map(|node| (node.replica.view(), node.replica.is_active()))
                .collect::<Vec<_>>(),
            self.nodes
                .iter()
                .map(|node| node.replica.last_committed())
                .collect::<Vec<_>>(),
        );
        self.report.recovery_us = self.now.as_micros() - heal_at.as_micros();
        if std::env::var("TICKRATE_WORLD_STATS").is_ok() {
            for node in &self.nodes {
                eprintln!("{:?}", node.replica.stats());
            }
        }
        let correct = self.scenario.correct();
        self.report.views = correct
            .iter()
            .map(|index| self.nodes[*index].replica.view())
            .max()
            .unwrap_or(0);
        self.report.decided = correct
            .iter()
            .map(|index| self.nodes[*index].replica.last_committed())
            .max()
            .unwrap_or(0);
        self.report.fetches = correct
            .iter()
            .map(|index| self.nodes[*index].replica.stats().fetches_sent)
            .sum();
        self.report.evidence = correct
            .iter()
            .map(|index| self.nodes[*index].evidence.len())
            .sum();
        self.report.epochs_entered = correct
            .iter()
            .filter(|index| self.nodes[**index].replica.epoch() > 0)
            .count() as u64;
        self.report.clone()
    }

    /// The evidence the correct replicas emitted.
    pub fn correct_evidence(&self) -> Vec<Evidence> {
        self.scenario
            .correct()
            .iter()
            .flat_map(|index| self.nodes[*index].evidence.iter().cloned())
            .collect()
    }

    /// Whether every correct replica that is still a validator committed `values`.
    fn all_correct_committed(&self, values: &[B256]) -> bool {
        self.scenario.correct().iter().all(|index| {
            let node = &self.nodes[*index];
            let committed = &node.committed_set;
            node.replica.is_retired() || values.iter().all(|value| committed.contains(value))
        })
    }

    /// The set that decides `sequence`.
    fn set_of(&self, sequence: u64) -> &ValidatorSet {
        match &self.next_set {
            Some(next) if sequence > next.start() => next,
            _ => &self.validators,
        }
    }

    /// The node that is validator `index` of the set deciding `sequence`.
    fn node_of_validator(&self, sequence: u64, index: u16) -> usize {
        let id = self.set_of(sequence).validators()[usize::from(index)].id;
        self.node_of(&id)
    }

    /// The node with ID `id`.
    fn node_of(&self, id: &primitives::NodeId) -> usize {
        (0..self.nodes.len())
            .find(|index| node_id(*index) == *id)
            .expect("replicas send to nodes of the world")
    }

    fn check_safety(&self) {
        let correct = self.scenario.correct();
        let committed: Vec<&[Decided<B256>]> = correct
            .iter()
            .map(|index| self.nodes[*index].committed.as_slice())
            .collect();
        match &self.next_set {
            None => check_agreement(self.seed, &self.validators, &committed),
            Some(next) => {
                // Each epoch's decisions agree and carry its own set's certificates.
                let split = |before: bool| -> Vec<Vec<Decided<B256>>> {
                    committed
                        .iter()
                        .map(|entries| {
                            entries
                                .iter()
                                .filter(|entry| (entry.sequence <= next.start()) == before)
                                .cloned()
                                .collect()
                        })
                        .collect()
                };
                let first = split(true);
                let second = split(false);
                let first: Vec<&[Decided<B256>]> = first.iter().map(Vec::as_slice).collect();
                let second: Vec<&[Decided<B256>]> = second.iter().map(Vec::as_slice).collect();
                check_agreement(self.seed, &self.validators, &first);
                check_agreement(self.seed, next, &second);
            }
        }
    }

    fn submit(&mut self) -> B256 {
        self.submitted += 1;
        let mut raw = [0u8; 40];
        raw[..8].copy_from_slice(&self.seed.to_be_bytes());
        raw[8..16].copy_from_slice(&self.submitted.to_be_bytes());
        let value = primitives::keccak256(raw);
        self.backlog.push_back(value);
        self.all_values.push(value);
        value
    }

    fn heal(&mut self) {
        self.healed = true;
        for index in 0..self.nodes.len() {
            if self.nodes[index].crashed {
                self.restart(index);
            }
        }
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.order += 1;
        self.queue.insert((at, self.order), event);
    }

    fn run_until(&mut self, until: Instant) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let ((at, _), event) = entry.remove_entry();
            if self.trace && at.as_micros() / 1_000_000 > self.now.as_micros() / 1_000_000 {
                eprintln!(
                    "seed {} t = {} s: {} delivered, {} queued, views {:?}, committed {:?}",
                    self.seed,
                    at.as_micros() / 1_000_000,
                    self.report.delivered,
                    self.queue.len(),
                    self.nodes
                        .iter()
                        .map(|node| node.replica.view())
                        .collect::<Vec<_>>(),
                    self.nodes
                        .iter()
                        .map(|node| node.replica.last_committed())
                        .collect::<Vec<_>>(),
                );
            }
            self.now = at;
            self.apply_faults();
            match event {
                Event::Deliver { from, to, bytes } => self.deliver(from, to, bytes),
                Event::Timer { node } => self.fire_timer(node),
                Event::Tick => self.tick(),
            }
        }
        self.now = self.now.max(until);
    }

    /// Crashes and restarts due by now (faulty phase only).
    fn apply_faults(&mut self) {
        if self.healed {
            return;
        }
        let now = self.now.as_micros();
        for index in 0..self.nodes.len() {
            // Down while any of its crash spells covers now (spells of one replica may overlap).
            let down = self
                .scenario
                .crashes
                .iter()
                .any(|(crashed, at, back)| *crashed == index && now >= *at && now < *back);
            if down && !self.nodes[index].crashed {
                self.crash(index);
            } else if !down && self.nodes[index].crashed {
                self.restart(index);
            }
        }
    }

    /// Crashes replica `index`: it loses everything but its log's bytes, and sometimes a write
    /// was under way, leaving a torn tail.
    fn crash(&mut self, index: usize) {
        let mut disk = self.nodes[index]
            .log
            .take()
            .expect("a running replica has its log")
            .into_medium();
        if self.rng.random_bool(0.5) {
            let torn: Vec<u8> = (0..self.rng.random_range(1..48))
                .map(|_| self.rng.random())
                .collect();
            disk.tear(&torn);
        }
        let node = &mut self.nodes[index];
        node.crashed = true;
        node.disk = Some(disk);
    }

    fn restart(&mut self, index: usize) {
        let disk = self.nodes[index]
            .disk
            .take()
            .expect("a crashed replica left its log behind");
        let (log, recovery) = open_log(self.seed, index, disk);
        self.report.restarts += 1;
        if recovery.truncated > 0 {
            self.report.torn_tails += 1;
        }
        // The next epoch's set is not in the log: the driver reads it from the chain again.
        self.nodes[index].epoch_given = false;
        let next_set = self.next_set.as_ref().map(ValidatorSet::share_memory);
        let state = log.state().clone();
        let first_set = match (state.epoch(), next_set) {
            // The memory of verified signatures is the world's, shared by every replica.
            (Some(epoch), Some(next))
                if epoch.epoch() == next.epoch() && next.index_of(&node_id(index)).is_some() =>
            {
                next
            }
            _ => self.nodes[index].first_set.share_memory(),
        };
        let first_index = first_set
            .index_of(&node_id(index))
            .unwrap_or(self.nodes[index].first_index);
        let replica = Replica::restore(
            first_set,
            first_index,
            replica_keys(index),
            self.config,
            self.now,
            state,
        );
        let node = &mut self.nodes[index];
        node.replica = replica;
        node.log = Some(log);
        // The application's memory of what it proposed is gone too.
        node.proposed.clear();
        self.nodes[index].crashed = false;
        self.nodes[index].timer = None;
        // Time passed while it was down: let its timers catch up.
        self.nodes[index].replica.handle_timeout(self.now);
        self.drain(index);
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        let Some((side, at, until)) = &self.scenario.partition else {
            return false;
        };
        let now = self.now.as_micros();
        !self.healed && now >= *at && now < *until && (side.contains(&a) != side.contains(&b))
    }

    fn tick(&mut self) {
        let faulty = !self.healed;
        if faulty && self.submitted < self.scenario.values {
            self.submit();
        }
        // Values some correct replica committed are no longer proposed.
        let committed = &self.committed_values;
        self.backlog.retain(|value| !committed.contains(value));
        let announce = self
            .scenario
            .epoch_change
            .as_ref()
            .is_some_and(|change| self.now.as_micros() >= change.announce_us);
        for index in 0..self.nodes.len() {
            if self.nodes[index].crashed || self.nodes[index].replica.is_retired() {
                continue;
            }
            if announce && !self.nodes[index].epoch_given && self.nodes[index].replica.epoch() == 0
            {
                self.nodes[index].epoch_given = true;
                let next = self.next_set.as_ref().expect("announced").share_memory();
                self.input(index, ReplicaInput::NextEpoch(next));
            }
            // As a sequencer with headers it has not seen batched: a replica waits for every
            // value it has not committed itself (of those decided in its epochs).
            let node = &self.nodes[index];
            let own = &node.committed_set;
            let backlog = self.all_values.iter().any(|value| {
                !own.contains(value)
                    && self
                        .committed_at
                        .get(value)
                        .is_none_or(|sequence| *sequence > node.joined_after)
            });
            self.input(index, ReplicaInput::Backlog(backlog));
            let node = &mut self.nodes[index];
            if !node.replica.is_primary() {
                continue;
            }
            if node.proposed_view != node.replica.view() {
                node.proposed_view = node.replica.view();
                node.proposed.clear();
            }
            let in_flight = node
                .proposed
                .iter()
                .filter(|value| !self.committed_values.contains(*value))
                .count();
            let next: Vec<B256> = self
                .backlog
                .iter()
                .filter(|value| !node.proposed.contains(*value))
                .take(PROPOSALS_IN_FLIGHT.saturating_sub(in_flight))
                .copied()
                .collect();
            for value in next {
                self.nodes[index].proposed.insert(value);
                self.input(index, ReplicaInput::Propose(value));
            }
        }
        if self
            .nodes
            .iter()
            .any(|node| node.behaviour == Behaviour::Replayer)
            && !self.seen.is_empty()
        {
            let pick = self.rng.random_range(0..self.seen.len());
            let (from, to, bytes) = self.seen[pick].clone();
            self.send_raw(from, to, bytes);
        }
        let next = Instant::from_micros(self.now.as_micros() + TICK_US);
        self.schedule(next, Event::Tick);
    }

    fn input(&mut self, index: usize, input: ReplicaInput<B256>) {
        let origin = match &input {
            ReplicaInput::Message(_) | ReplicaInput::Decoded(_) => unreachable!("peer input"),
            _ => Origin::Local,
        };
        let _ = self.nodes[index].replica.step(self.now, origin, input);
        self.drain(index);
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if self.nodes[to].crashed {
            return;
        }
        self.report.delivered += 1;
        if self
            .nodes
            .iter()
            .any(|node| node.behaviour == Behaviour::Replayer)
        {
            if self.seen.len() >= REPLAY_MEMORY {
                self.seen.pop_front();
            }
            self.seen.push_back((from, to, bytes.clone()));
        }
        let origin = Origin::Peer(node_id(from));
        let _ = self.nodes[to]
            .replica
            .step(self.now, origin, ReplicaInput::Message(bytes));
        self.drain(to);
    }

    fn fire_timer(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if node.crashed || node.timer != Some(self.now) {
            return; // Stale: the replica re-armed or was down.
        }
        node.timer = None;
        node.replica.handle_timeout(self.now);
        self.drain(index);
    }

    /// Moves what replica `index` produced into the network (through its behaviour), answers
    /// its events as the application, and queues its timer.
    fn drain(&mut self, index: usize) {
        loop {
            let mut moved = false;
            // What the transmits and events below promise is made durable first.
            let mut records = Vec::new();
            while let Some(record) = self.nodes[index].replica.poll_persist() {
                records.push(record);
            }
            if !records.is_empty() {
                moved = true;
                let seed = self.seed;
                self.nodes[index]
                    .log
                    .as_mut()
                    .expect("a running replica has its log")
                    .append(&records)
                    .unwrap_or_else(|error| panic!("seed {seed}: replica {index}'s log: {error}"));
            }
            let mut last: Option<Vec<u8>> = None;
            while let Some(transmit) = self.nodes[index].replica.poll_transmit(self.now) {
                moved = true;
                let to = self.node_of(&transmit.to);
                if last.as_ref() != Some(&transmit.bytes) {
                    self.check_signed_once(index, &transmit.bytes);
                    last = Some(transmit.bytes.clone());
                }
                self.send(index, to, transmit.bytes);
            }
            while let Some(event) = self.nodes[index].replica.poll_event() {
                moved = true;
                self.handle_event(index, event);
            }
            if !moved {
                break;
            }
        }
        if let Some(deadline) = self.nodes[index].replica.poll_timeout()
            && self.nodes[index].timer != Some(deadline)
        {
            let at = deadline.max(self.now);
            self.nodes[index].timer = Some(at);
            self.schedule(at, Event::Timer { node: index });
        }
    }

    fn handle_event(&mut self, index: usize, event: ReplicaEvent<B256>) {
        let correct = self.nodes[index].behaviour == Behaviour::Correct;
        match event {
            ReplicaEvent::Verify { sequence, value } => {
                let input = ReplicaInput::Verified {
                    sequence,
                    digest: value,
                    valid: true,
                };
                let _ = self.nodes[index]
                    .replica
                    .step(self.now, Origin::Local, input);
            }
            ReplicaEvent::Committed {
                sequence,
                view,
                value,
                certificate,
            } => {
                let decided = Decided {
                    sequence,
                    view,
                    value,
                    certificate,
                };
                let node = &mut self.nodes[index];
                let expected = node
                    .committed
                    .last()
                    .map_or(node.joined_after + 1, |last| last.sequence + 1);
                assert_eq!(
                    decided.sequence, expected,
                    "seed {}: replica {index} commits in order, once each",
                    self.seed
                );
                node.committed.push(decided);
                if let Some(value) = value {
                    node.committed_set.insert(value);
                }
                if correct && let Some(value) = value {
                    self.committed_values.insert(value);
                    self.committed_at.insert(value, sequence);
                }
            }
            ReplicaEvent::Evidence(evidence) => {
                check_evidence(self.seed, index, self.set_of(evidence.sequence), &evidence);
                let offender = self.node_of_validator(evidence.sequence, evidence.offender);
                assert!(
                    !correct || self.nodes[offender].behaviour != Behaviour::Correct,
                    "seed {}: replica {index} accused correct replica {offender}",
                    self.seed,
                );
                self.nodes[index].evidence.push(evidence);
            }
            ReplicaEvent::EpochEntered { member, .. } => {
                let in_next = self
                    .next_set
                    .as_ref()
                    .is_some_and(|next| next.index_of(&node_id(index)).is_some());
                assert_eq!(
                    member, in_next,
                    "seed {}: replica {index} knows whether it is in the next set",
                    self.seed
                );
            }
            ReplicaEvent::ViewEntered { .. } => {}
        }
    }

    /// Checks that replica `index`'s own code never signs two different pre-prepares, prepares
    /// or commits for one view and sequence, across its restarts (what it sends before its
    /// behaviour rewrites it).
    fn check_signed_once(&mut self, index: usize, bytes: &[u8]) {
        if !matches!(bytes.get(1), Some(0..=2)) {
            return; // Not a pre-prepare, prepare or commit.
        }
        let (tag, view, sequence, digest) = match Message::<B256>::from_wire(bytes) {
            Ok(Message::PrePrepare(pre_prepare)) => (
                0,
                pre_prepare.view,
                pre_prepare.sequence,
                pre_prepare.digest(),
            ),
            Ok(Message::Prepare(vote)) => (1, vote.view, vote.sequence, vote.digest),
            Ok(Message::Commit(vote)) => (2, vote.view, vote.sequence, vote.digest),
            _ => return,
        };
        let first = *self
            .signed
            .entry((index, tag, view, sequence))
            .or_insert(digest);
        assert_eq!(
            first, digest,
            "seed {}: replica {index} signed two different messages (tag {tag}) for view {view}, \
             sequence {sequence}",
            self.seed
        );
    }

    /// Sends through the sender's behaviour.
    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        match self.nodes[from].behaviour {
            Behaviour::Correct | Behaviour::Replayer => self.send_raw(from, to, bytes),
            Behaviour::Silent => {}
            Behaviour::EquivocatingPrimary => {
                let bytes = match Message::<B256>::from_wire(&bytes) {
                    Ok(Message::PrePrepare(pre_prepare))
                        if self.forged_side(from, to) && pre_prepare.value.is_some() =>
                    {
                        let other = pre_prepare.value.map(primitives::keccak256);
                        let forged = PrePrepare::proposing(
                            &operator_key(from),
                            pre_prepare.view,
                            pre_prepare.sequence,
                            other,
                        );
                        Message::PrePrepare(forged).to_bytes()
                    }
                    _ => bytes,
                };
                self.send_raw(from, to, bytes);
            }
            Behaviour::BadSignatures => {
                let wrong = secret_key(from + self.nodes.len());
                let bytes = match Message::<B256>::from_wire(&bytes) {
                    Ok(Message::PrePrepare(pre_prepare)) => {
                        Message::PrePrepare(PrePrepare::proposing(
                            &operator_key(from + self.nodes.len()),
                            pre_prepare.view,
                            pre_prepare.sequence,
                            pre_prepare.value,
                        ))
                        .to_bytes()
                    }
                    Ok(Message::Prepare(vote)) => Message::<B256>::Prepare(Vote::prepare(
                        &operator_key(from + self.nodes.len()),
                        vote.view,
                        vote.sequence,
                        vote.digest,
                        vote.replica,
                    ))
                    .to_bytes(),
                    Ok(Message::Commit(vote)) => Message::<B256>::Commit(Vote::commit(
                        &wrong,
                        vote.view,
                        vote.sequence,
                        vote.digest,
                        vote.replica,
                    ))
                    .to_bytes(),
                    _ => bytes,
                };
                self.send_raw(from, to, bytes);
            }
            Behaviour::ConflictingVotes => {
                let vote = match Message::<B256>::from_wire(&bytes) {
                    Ok(Message::Prepare(vote)) if to % 2 == 1 => Some((false, vote)),
                    Ok(Message::Commit(vote)) if to % 2 == 1 => Some((true, vote)),
                    _ => None,
                };
                let bytes = match vote {
                    Some((commit, vote)) => {
                        let digest = B256::from(self.rng.random::<[u8; 32]>());
                        let (view, sequence, replica) = (vote.view, vote.sequence, vote.replica);
                        let message: Message<B256> = if commit {
                            Message::Commit(Vote::commit(
                                &secret_key(from),
                                view,
                                sequence,
                                digest,
                                replica,
                            ))
                        } else {
                            Message::Prepare(Vote::prepare(
                                &operator_key(from),
                                view,
                                sequence,
                                digest,
                                replica,
                            ))
                        };
                        message.to_bytes()
                    }
                    None => bytes,
                };
                self.send_raw(from, to, bytes);
            }
        }
    }

    /// Whether an equivocating primary `from` sends `to` the forged value: the first
    /// `quorum - 1` backups by index get it.
    fn forged_side(&self, from: usize, to: usize) -> bool {
        let position = (0..self.nodes.len())
            .filter(|index| *index != from)
            .position(|index| index == to);
        position.is_some_and(|position| position + 1 < self.validators.quorum())
    }

    /// Puts a message on the network, with the faulty phase's losses, duplicates and
    /// partitions, and a seeded latency.
    fn send_raw(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        let faulty = !self.healed;
        if self.nodes[from].crashed || self.partitioned(from, to) {
            self.report.dropped += 1;
            return;
        }
        if faulty
            && self.scenario.drop_ratio > 0.0
            && self.rng.random_bool(self.scenario.drop_ratio)
        {
            self.report.dropped += 1;
            return;
        }
        let copies = if faulty
            && self.scenario.duplicate_ratio > 0.0
            && self.rng.random_bool(self.scenario.duplicate_ratio)
        {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (low, high) = self.scenario.latency_us;
            let latency = self.rng.random_range(low..=high);
            let at = Instant::from_micros(self.now.as_micros() + latency);
            self.schedule(
                at,
                Event::Deliver {
                    from,
                    to,
                    bytes: bytes.clone(),
                },
            );
        }
    }
}

/// Opens replica `index`'s log on `disk`, compacting at every stable checkpoint (so that the
/// world exercises compaction as well as replay).
fn open_log(
    seed: u64,
    index: usize,
    disk: MemoryMedium,
) -> (ReplicaLog<B256, MemoryMedium>, Recovery) {
    let (mut log, recovery) = ReplicaLog::open(disk).unwrap_or_else(|error| {
        panic!("seed {seed}: replica {index}'s log does not open: {error}")
    });
    log.set_compact_after(0);
    (log, recovery)
}

/// Runs the scenario of `seed` for `n` replicas; panics, naming the seed and how to replay it,
/// if safety or liveness fails.
pub fn run_seed(n: usize, seed: u64) -> RunReport {
    let scenario = Scenario::draw(n, seed);
    World::new(seed, scenario).run()
}
