//! A seeded, in-memory cluster of replicas for tests (feature `test-utils`), after raft-rs's
//! test `Network`: deliver everything, drop, cut, isolate, heal, with duplicates and reordering
//! drawn from one ChaCha seed, so a failing seed replays exactly.
//!
//! The cluster plays every replica's driver: it drains transmits into the network and answers
//! every [`ReplicaEvent::Verify`] at once (valid, unless the replica was told to refuse), and
//! records every [`ReplicaEvent::Committed`]. It checks as it goes that each replica commits
//! sequences in order, once each.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::OnceLock,
};

use primitives::{
    AccountKey, B256, NodeId,
    bls::{BlsSecretKey, Certificate},
    machine::{Machine, Origin},
    time::Instant,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    error::RejectReason,
    evidence::Evidence,
    replica::{Replica, ReplicaEvent, ReplicaInput, ReplicaKeys},
    validator::{Validator, ValidatorSet},
    value::Value,
};

/// Most deliveries one [`Cluster::deliver_all`] makes before it decides the replicas loop.
pub const DELIVERIES_MAX: u64 = 10_000_000;

/// A message in flight between two replicas of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Index of the sender.
    pub from: usize,
    /// Index of the receiver.
    pub to: usize,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

/// A value a replica committed, with its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided<V> {
    /// The sequence.
    pub sequence: u64,
    /// The view the certificate's commits were cast in.
    pub view: u64,
    /// The value (`None`: a null filled in by a view change).
    pub value: Option<V>,
    /// The commit certificate.
    pub certificate: Certificate,
}

/// Appends replica `index`'s decision to what it `committed`, checking it comes next in order.
pub(crate) fn record_committed<V>(
    seed: u64,
    index: usize,
    committed: &mut Vec<Decided<V>>,
    decided: Decided<V>,
) {
    let expected = committed.last().map_or(1, |last| last.sequence + 1);
    assert_eq!(
        decided.sequence, expected,
        "seed {seed}: replica {index} commits in order, once each"
    );
    committed.push(decided);
}

/// Checks that the evidence replica `index` emitted verifies against `validators`.
pub(crate) fn check_evidence(
    seed: u64,
    index: usize,
    validators: &ValidatorSet,
    evidence: &Evidence,
) {
    assert_eq!(
        crate::evidence::verify_evidence(evidence, validators),
        Ok(()),
        "seed {seed}: replica {index} emitted evidence that does not verify"
    );
}

/// Checks that no two replicas' decisions differ at one sequence, and that every certificate
/// verifies against `validators`; `seed` names the run in the panic message.
pub fn check_agreement<V: Value>(
    seed: u64,
    validators: &ValidatorSet,
    committed: &[&[Decided<V>]],
) {
    let mut decided: BTreeMap<u64, (usize, B256)> = BTreeMap::new();
    let keys = validators.keys();
    for (index, committed) in committed.iter().enumerate() {
        for entry in *committed {
            let digest = crate::proposal_digest(entry.value.as_ref());
            let first = *decided.entry(entry.sequence).or_insert((index, digest));
            assert_eq!(
                first.1, digest,
                "seed {seed}: replicas {} and {index} committed different values at {}",
                first.0, entry.sequence
            );
            assert_eq!(
                crate::verify_commit(
                    entry.view,
                    entry.sequence,
                    &digest,
                    &entry.certificate,
                    keys
                ),
                Ok(()),
                "seed {seed}: replica {index}'s certificate at {}",
                entry.sequence
            );
        }
    }
}

/// The node ID the cluster gives validator `index`: the address of its operator key.
pub fn node_id(index: usize) -> NodeId {
    /// Deriving an address costs a curve multiplication; the seeded worlds ask for one per
    /// delivered message.
    const CACHED: usize = 64;
    static IDS: OnceLock<Vec<NodeId>> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        (0..CACHED)
            .map(|index| NodeId(operator_key(index).address()))
            .collect()
    });
    ids.get(index)
        .copied()
        .unwrap_or_else(|| NodeId(operator_key(index).address()))
}

/// The operator key the cluster gives validator `index` (it signs its pre-prepares).
pub fn operator_key(index: usize) -> AccountKey {
    AccountKey::from_seed(0xC0DE_0000 + index as u64)
}

/// Both keys the cluster gives validator `index`.
pub fn replica_keys(index: usize) -> ReplicaKeys {
    ReplicaKeys {
        operator: operator_key(index),
        bls: secret_key(index),
    }
}

/// The BLS key the cluster gives validator `index`.
pub fn secret_key(index: usize) -> BlsSecretKey {
    let mut seed = [0x5Au8; 32];
    seed[..8].copy_from_slice(&(index as u64).to_be_bytes());
    BlsSecretKey::from_seed(&seed)
}

/// `n` replicas over a seeded lossy network.
#[derive(Debug)]
pub struct Cluster<V: Value> {
    seed: u64,
    replicas: Vec<Replica<V>>,
    validators: ValidatorSet,
    network: VecDeque<Envelope>,
    rng: ChaCha8Rng,
    now: Instant,
    drop_ratios: BTreeMap<(usize, usize), f64>,
    isolated: BTreeSet<usize>,
    duplicate_ratio: f64,
    reorder: bool,
    refusing: BTreeSet<usize>,
    committed: Vec<Vec<Decided<V>>>,
    evidence: Vec<Vec<Evidence>>,
    dropped: u64,
    duplicated: u64,
    delivered: u64,
}

impl<V: Value> Cluster<V> {
    /// `n` replicas in view 0, a lossless in-order network, randomness from `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        let validators = ValidatorSet::new(
            (0..n)
                .map(|index| Validator {
                    id: node_id(index),
                    key: secret_key(index).public_key(),
                })
                .collect(),
        );
        let replicas = (0..n)
            .map(|index| Replica::new(validators.clone(), index, replica_keys(index)))
            .collect();
        Cluster {
            seed,
            replicas,
            validators,
            network: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Instant::ZERO,
            drop_ratios: BTreeMap::new(),
            isolated: BTreeSet::new(),
            duplicate_ratio: 0.0,
            reorder: false,
            refusing: BTreeSet::new(),
            committed: vec![Vec::new(); n],
            evidence: vec![Vec::new(); n],
            dropped: 0,
            duplicated: 0,
            delivered: 0,
        }
    }

    /// The seed the cluster draws from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of replicas.
    pub fn n(&self) -> usize {
        self.replicas.len()
    }

    /// The validator set every replica shares.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// Replica `index`.
    pub fn replica(&self, index: usize) -> &Replica<V> {
        &self.replicas[index]
    }

    /// Index of the primary of the current view of replica 0.
    pub fn primary(&self) -> usize {
        self.validators.primary_index(self.replicas[0].view())
    }

    /// What replica `index` has committed, in order.
    pub fn committed(&self, index: usize) -> &[Decided<V>] {
        &self.committed[index]
    }

    /// The equivocation evidence replica `index` emitted, in order.
    pub fn evidence(&self, index: usize) -> &[Evidence] {
        &self.evidence[index]
    }

    /// Messages in flight, oldest first.
    pub fn in_flight(&self) -> &VecDeque<Envelope> {
        &self.network
    }

    /// Messages dropped, duplicated and delivered so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.dropped, self.duplicated, self.delivered)
    }

    /// Drops each message from `from` to `to` with probability `ratio` (when it is sent).
    pub fn drop(&mut self, from: usize, to: usize, ratio: f64) {
        assert!((0.0..=1.0).contains(&ratio), "a ratio is a probability");
        self.drop_ratios.insert((from, to), ratio);
    }

    /// Drops every message between `a` and `b`, both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.drop(a, b, 1.0);
        self.drop(b, a, 1.0);
    }

    /// Drops every message to and from `index`.
    pub fn isolate(&mut self, index: usize) {
        self.isolated.insert(index);
    }

    /// Ends every drop, cut and isolation (duplication and reordering stay).
    pub fn heal(&mut self) {
        self.drop_ratios.clear();
        self.isolated.clear();
    }

    /// Sends each message twice with probability `ratio`.
    pub fn duplicate(&mut self, ratio: f64) {
        assert!((0.0..=1.0).contains(&ratio), "a ratio is a probability");
        self.duplicate_ratio = ratio;
    }

    /// Delivers messages in a seeded random order instead of the order they were sent.
    pub fn reorder(&mut self, reorder: bool) {
        self.reorder = reorder;
    }

    /// Makes replica `index` answer every `Verify` with `valid: false`.
    pub fn refuse_values(&mut self, index: usize) {
        self.refusing.insert(index);
    }

    /// Proposes `value` at the primary; returns the sequence it got.
    pub fn propose(&mut self, value: V) -> Result<u64, RejectReason> {
        let primary = self.primary();
        let sequence = self.replicas[primary].next_sequence();
        self.input(primary, Origin::Local, ReplicaInput::Propose(value))?;
        Ok(sequence)
    }

    /// Lets every replica sign ahead what it can ([`Replica::presign`]), as a driver with no
    /// input waiting would; returns how many messages were signed.
    pub fn presign_all(&mut self) -> usize {
        let mut signed = 0;
        for replica in &mut self.replicas {
            while replica.presign() {
                signed += 1;
            }
        }
        signed
    }

    /// Feeds `input` to replica `index` as if from `from`, then drains it.
    pub fn input(
        &mut self,
        index: usize,
        from: Origin,
        input: ReplicaInput<V>,
    ) -> Result<(), RejectReason> {
        let result = self.replicas[index].step(self.now, from, input);
        self.drain(index);
        result
    }

    /// Delivers one message in flight (the oldest, or a random one when reordering); returns
    /// whether there was one.
    pub fn step(&mut self) -> bool {
        let next = if self.reorder && !self.network.is_empty() {
            let position = self.rng.random_range(0..self.network.len());
            self.network.swap_remove_back(position)
        } else {
            self.network.pop_front()
        };
        let Some(envelope) = next else {
            return false;
        };
        self.deliver(envelope);
        true
    }

    fn deliver(&mut self, envelope: Envelope) {
        self.now = Instant::from_micros(self.now.as_micros() + 1);
        self.delivered += 1;
        let from = Origin::Peer(node_id(envelope.from));
        // Refusals are part of the game here (duplicates); `stats()` counts them.
        let _ = self.input(envelope.to, from, ReplicaInput::Message(envelope.bytes));
    }

    /// Delivers, oldest first, the messages in flight that `select` picks (and those that
    /// answer them, if it picks those too), until it picks none; returns how many.
    pub fn deliver_where(&mut self, mut select: impl FnMut(&Envelope) -> bool) -> u64 {
        let mut deliveries = 0;
        while let Some(position) = self.network.iter().position(&mut select) {
            let envelope = self
                .network
                .remove(position)
                .expect("the position was just found");
            self.deliver(envelope);
            deliveries += 1;
            assert!(
                deliveries < DELIVERIES_MAX,
                "seed {}: endless delivery",
                self.seed
            );
        }
        deliveries
    }

    /// Delivers until nothing is in flight; returns how many messages were delivered.
    pub fn deliver_all(&mut self) -> u64 {
        let mut deliveries = 0;
        while self.step() {
            deliveries += 1;
            assert!(
                deliveries < DELIVERIES_MAX,
                "seed {}: the replicas never stop talking",
                self.seed
            );
        }
        deliveries
    }

    /// Checks that no two replicas committed different values at one sequence, and that every
    /// certificate verifies against the validator set.
    pub fn check_agreement(&self) {
        let committed: Vec<&[Decided<V>]> = self.committed.iter().map(Vec::as_slice).collect();
        check_agreement(self.seed, &self.validators, &committed);
    }

    /// Moves what replica `index` produced into the network and answers its events, until it
    /// has nothing left.
    fn drain(&mut self, index: usize) {
        loop {
            let mut moved = false;
            while let Some(transmit) = self.replicas[index].poll_transmit(self.now) {
                moved = true;
                let to = self
                    .validators
                    .index_of(&transmit.to)
                    .expect("replicas send to validators");
                self.send(index, to, transmit.bytes);
            }
            while let Some(event) = self.replicas[index].poll_event() {
                moved = true;
                self.handle_event(index, event);
            }
            if !moved {
                return;
            }
        }
    }

    fn handle_event(&mut self, index: usize, event: ReplicaEvent<V>) {
        match event {
            ReplicaEvent::Verify { sequence, value } => {
                let input = ReplicaInput::Verified {
                    sequence,
                    digest: value.digest(),
                    valid: !self.refusing.contains(&index),
                };
                let result = self.replicas[index].step(self.now, Origin::Local, input);
                // The verdict is expected, unless the value was decided and its slot discarded
                // (a stable checkpoint past it) before the verdict came.
                let discarded = self.replicas[index].low_watermark() >= sequence;
                assert!(
                    result.is_ok()
                        || discarded && result == Err(RejectReason::UnexpectedVerdict { sequence }),
                    "seed {}: replica {index} refused the verdict at {sequence}: {result:?}",
                    self.seed
                );
            }
            ReplicaEvent::ViewEntered { .. } | ReplicaEvent::EpochEntered { .. } => {}
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
                record_committed(self.seed, index, &mut self.committed[index], decided);
            }
            ReplicaEvent::Evidence(evidence) => {
                check_evidence(self.seed, index, &self.validators, &evidence);
                self.evidence[index].push(evidence);
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        assert!(from != to, "replicas do not send to themselves");
        let ratio = self.drop_ratios.get(&(from, to)).copied().unwrap_or(0.0);
        let isolated = self.isolated.contains(&from) || self.isolated.contains(&to);
        if isolated || (ratio > 0.0 && self.rng.random_bool(ratio)) {
            self.dropped += 1;
            return;
        }
        if self.duplicate_ratio > 0.0 && self.rng.random_bool(self.duplicate_ratio) {
            self.duplicated += 1;
            self.network.push_back(Envelope {
                from,
                to,
                bytes: bytes.clone(),
            });
        }
        self.network.push_back(Envelope { from, to, bytes });
    }
}
