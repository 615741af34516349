//! One sequencer of the world: the sequencer crate's sans-IO cores (stateless checks, admission,
//! mempool, pending state, packer, batcher) around a PBFT [`Replica`], wired the way the tokio
//! driver (`sequencer::node`) wires them, with every effect returned as an [`Effect`] for the
//! world to deliver on its simulated network.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    rc::Rc,
};

use consensus::{
    Message, PrePrepare, Replica, ReplicaConfig, ReplicaEvent, ReplicaInput, ReplicaKeys,
};
use execution::ExecutedBatch;
use primitives::{
    B256, Batch, BlockBody, BlockHeader, BlockId, Decode, Encode, FinalityLevel, FinalizedBatch,
    NodeId, TxHash,
    api::{Refusal, ServerMessage},
    machine::{Machine, Origin},
    session::SessionKeyCache,
    time::Instant,
};
use sequencer::{
    batcher::Batcher,
    constants::{BLOCK_MOVES_PER_TICK_MAX, MEMPOOL_MOVES_MAX, MOVE_BYTES_MAX},
    ingress::{Admission, Checked, RateLimit, check_requests},
    mempool::Mempool,
    packer::{PackedBlock, Packer},
    pending::{PendingState, executed_writes},
};

/// What a sequencer sends to another.
#[derive(Clone, Debug)]
pub enum PeerMessage {
    /// A PBFT message, as the replica encoded it.
    Consensus(Vec<u8>),
    /// A freshly packed block's signed header (bodies are pulled from weak DA).
    Header(BlockHeader),
}

/// What the world must do for a sequencer.
#[derive(Debug)]
pub enum Effect {
    /// Send to one peer.
    Send(NodeId, PeerMessage),
    /// Send to every peer.
    Broadcast(PeerMessage),
    /// Answer a player.
    Reply(usize, ServerMessage),
    /// Push a packed block's body to weak DA; [`SimSequencer::body_stored`] follows.
    PutBody(Box<PackedBlock>),
    /// A proposed batch to check once the bodies it names are read from weak DA (or the reads
    /// gave up): [`SimSequencer::check_batch`].
    Check(u64, Box<Batch>),
    /// PBFT committed a batch.
    Finalized(Box<FinalizedBatch>),
}

/// Weak DA as the world holds it: what was put under each root, read by every sequencer at
/// once. Like the real store it keeps whatever it is given; readers check a body against its
/// root ([`WeakDa::body`]).
pub type SharedWeakDa = Rc<RefCell<WeakDa>>;

/// The bodies put in weak DA, by the root they were put under.
#[derive(Debug, Default)]
pub struct WeakDa {
    /// Each body, and whether it matches its root (checked once, when it is put).
    bodies: HashMap<B256, (BlockBody, bool)>,
}

impl WeakDa {
    /// Puts `body` under `root` (a byzantine sequencer's body may not match it).
    pub fn put(&mut self, root: B256, body: BlockBody) {
        let matches = body.root() == root;
        self.bodies.insert(root, (body, matches));
    }

    /// The body under `root`, if there is one and it matches the root: a reader that fetches a
    /// body that does not match refuses it, as one that finds none.
    pub fn body(&self, root: &B256) -> Option<&BlockBody> {
        self.bodies
            .get(root)
            .filter(|(_, matches)| *matches)
            .map(|(body, _)| body)
    }

    /// Whether a body matching `root` is held.
    pub fn holds(&self, root: &B256) -> bool {
        self.body(root).is_some()
    }
}

/// A sequencer's cores.
pub struct SimSequencer {
    /// Its node ID.
    pub id: NodeId,
    chain_id: u64,
    /// The PBFT replica.
    pub replica: Replica<Batch>,
    batcher: Batcher,
    packer: Packer,
    mempool: Mempool,
    /// Its pending state.
    pub pending: PendingState,
    admission: Admission,
    session_keys: SessionKeyCache,
    /// Moves of its own blocks not yet in a committed batch, by block.
    own_blocks: HashMap<BlockId, Vec<TxHash>>,
    /// Proposals for a batch beyond the next, by sequence.
    deferred: BTreeMap<u64, Batch>,
    tick_number: u64,
    /// Levels of the moves it acked.
    pub levels: HashMap<TxHash, FinalityLevel>,
    /// Committed batches: number to batch hash.
    pub committed: BTreeMap<u64, B256>,
    /// Sends nothing to its peers (a byzantine sequencer that withholds everything).
    pub silent: bool,
    /// Broadcasts its headers but never puts their bodies in weak DA (a byzantine sequencer
    /// that names blocks no one can read).
    pub withholds_bodies: bool,
    /// As primary, proposes two different batches for one sequence: every other backup gets
    /// its batch without the last block, signed as validly (an equivocating primary).
    pub equivocates: bool,
    /// Whether the next pre-prepare it sends is the second batch.
    send_second: bool,
    /// Pre-prepares it replaced by one of a second batch.
    pub equivocations: u64,
    /// Its operator key, to sign the second batch.
    operator: primitives::AccountKey,
    weak_da: SharedWeakDa,
    handling_events: bool,
    propose_after_events: bool,
}

impl SimSequencer {
    /// A sequencer of `validators` at `index`.
    pub fn new(
        validators: consensus::validator::ValidatorSet,
        index: usize,
        keys: ReplicaKeys,
        config: ReplicaConfig,
        chain_id: u64,
        weak_da: SharedWeakDa,
    ) -> Self {
        let members: Vec<NodeId> = validators.validators().iter().map(|v| v.id).collect();
        let id = NodeId(keys.operator.address());
        let operator = keys.operator.clone();
        let packer = Packer::new(keys.operator.clone());
        let replica = Replica::restore(
            validators,
            index,
            keys,
            config,
            Instant::ZERO,
            consensus::ReplicaState::genesis(),
        );
        SimSequencer {
            id,
            chain_id,
            replica,
            batcher: Batcher::new(members),
            packer,
            mempool: Mempool::with_capacity(MEMPOOL_MOVES_MAX),
            pending: PendingState::new(),
            admission: Admission::new(
                RateLimit {
                    per_second: 1_000,
                    burst: 1_000,
                },
                Vec::new(),
            ),
            session_keys: SessionKeyCache::new(1_024),
            own_blocks: HashMap::new(),
            deferred: BTreeMap::new(),
            tick_number: 0,
            levels: HashMap::new(),
            committed: BTreeMap::new(),
            silent: false,
            withholds_bodies: false,
            equivocates: false,
            send_second: false,
            equivocations: 0,
            operator,
            weak_da,
            handling_events: false,
            propose_after_events: false,
        }
    }

    /// A player's request bytes: checked, admitted, answered.
    pub fn request(&mut self, now: Instant, player: usize, bytes: Vec<u8>) -> Vec<Effect> {
        let mut effects = Vec::new();
        let checked = check_requests(
            vec![bytes],
            self.chain_id,
            MOVE_BYTES_MAX,
            &self.session_keys,
        );
        for checked in checked {
            let (hash, result) = match checked {
                Checked::Move(verified) => {
                    let hash = verified.hash;
                    let next_batch = self.batcher.last_number() + 1;
                    let result = if self.pending.contains(&hash) {
                        Err(Refusal::BadNonce {
                            expected: self.pending.next_nonce(&verified.sender),
                            got: verified.tx().nonce,
                        })
                    } else {
                        self.admission
                            .admit(
                                &verified,
                                &self.pending,
                                next_batch,
                                self.mempool.has_room(),
                                now,
                            )
                            .map(|()| {
                                self.pending.admit(&verified);
                                self.mempool.push(*verified);
                                self.levels.insert(hash, FinalityLevel::Pending);
                                self.tick_number + 1
                            })
                    };
                    (hash, result)
                }
                Checked::Refused { hash, refusal } => (hash, Err(refusal)),
                // Players of the world only submit.
                Checked::Query(_) => continue,
            };
            effects.push(Effect::Reply(
                player,
                ServerMessage::Ack {
                    hash,
                    result,
                    preconfirmation: None,
                },
            ));
        }
        effects
    }

    /// A tick: the mempool becomes a block, and the replica learns whether anything waits.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        self.tick_number += 1;
        let mut effects = Vec::new();
        if !self.mempool.is_empty() {
            let moves = self.mempool.take(BLOCK_MOVES_PER_TICK_MAX);
            let block = self.packer.pack(now, moves);
            if self.withholds_bodies {
                effects.extend(self.body_stored(now, block));
            } else {
                effects.push(Effect::PutBody(Box::new(block)));
            }
        }
        let at_epoch_end = self.replica.validators().end() == Some(self.replica.last_committed());
        let backlog = self.batcher.has_waiting(|header| self.holds_body(header)) && !at_epoch_end;
        self.replica
            .handle(now, Origin::Local, ReplicaInput::Backlog(backlog));
        self.maybe_propose(now);
        self.drain(now, &mut effects);
        effects
    }

    /// Weak DA holds a block this sequencer packed: its header goes out.
    pub fn body_stored(&mut self, now: Instant, block: PackedBlock) -> Vec<Effect> {
        let mut effects = Vec::new();
        let id = block.header.id();
        for hash in &block.hashes {
            self.raise(hash, FinalityLevel::Sequenced);
        }
        self.own_blocks.insert(id, block.hashes);
        if !self.silent {
            effects.push(Effect::Broadcast(PeerMessage::Header(block.header.clone())));
        }
        let _ = self.batcher.hear(block.header);
        self.maybe_propose(now);
        self.drain(now, &mut effects);
        effects
    }

    /// A peer's message.
    pub fn peer(&mut self, now: Instant, from: NodeId, message: PeerMessage) -> Vec<Effect> {
        let mut effects = Vec::new();
        match message {
            PeerMessage::Header(header) => {
                let _ = self.batcher.hear(header);
                self.maybe_propose(now);
            }
            PeerMessage::Consensus(bytes) => {
                self.replica
                    .handle(now, Origin::Peer(from), ReplicaInput::Message(bytes));
            }
        }
        self.drain(now, &mut effects);
        effects
    }

    /// The replica's timer is due.
    pub fn timeout(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.replica.poll_timeout().is_some_and(|at| at <= now) {
            self.replica.handle_timeout(now);
        }
        self.drain(now, &mut effects);
        effects
    }

    /// Checks a proposal: valid if it follows the batcher's rule and this sequencer holds every
    /// body it names.
    pub fn check_batch(&mut self, now: Instant, sequence: u64, batch: Batch) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.check(now, sequence, batch);
        self.drain(now, &mut effects);
        effects
    }

    /// Execution results: pending state corrected, own moves' levels final.
    pub fn executed(&mut self, executed: &ExecutedBatch) {
        for outcome in &executed.outcomes {
            self.pending.apply_executed(
                &outcome.hash,
                outcome.status.is_ok(),
                executed_writes(&outcome.diff),
            );
            let level = match &outcome.status {
                Ok(()) => FinalityLevel::Executed,
                Err(reason) => FinalityLevel::Failed(reason.clone()),
            };
            if self.levels.contains_key(&outcome.hash) {
                self.levels.insert(outcome.hash, level);
            }
        }
    }

    /// The replica's next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.replica.poll_timeout()
    }

    fn raise(&mut self, hash: &TxHash, level: FinalityLevel) {
        if let Some(current) = self.levels.get_mut(hash)
            && matches!(
                current,
                FinalityLevel::Pending | FinalityLevel::Sequenced | FinalityLevel::Finalized
            )
        {
            *current = level;
        }
    }

    /// As the tokio driver: never while the replica's events are handled (see
    /// `sequencer::node`'s `maybe_propose`).
    fn maybe_propose(&mut self, now: Instant) {
        if self.handling_events {
            self.propose_after_events = true;
            return;
        }
        let in_flight = self.replica.next_sequence() > self.replica.last_committed() + 1;
        if in_flight || !self.replica.is_primary() {
            return;
        }
        if let Some(batch) = self.batcher.propose(|header| self.holds_body(header)) {
            if std::env::var("TICKRATE_WORLD_TRACE").is_ok() {
                eprintln!(
                    "{} {} proposes #{} {} at seq {} view {}",
                    now.as_micros(),
                    self.id,
                    batch.number,
                    batch.hash(),
                    self.replica.next_sequence(),
                    self.replica.view()
                );
            }
            self.replica
                .handle(now, Origin::Local, ReplicaInput::Propose(batch));
        }
    }

    /// Whether this sequencer can read `header`'s body: its own, or in weak DA (a read of
    /// weak DA is keyed by the root, so it checks the body against the header).
    fn holds_body(&self, header: &BlockHeader) -> bool {
        self.own_blocks.contains_key(&header.id()) || self.weak_da.borrow().holds(&header.root)
    }

    fn check(&mut self, now: Instant, sequence: u64, batch: Batch) {
        if batch.number > self.batcher.last_number() + 1 {
            self.deferred.insert(sequence, batch);
            return;
        }
        let digest = consensus::Value::digest(&batch);
        let valid = self.batcher.check(&batch).is_ok()
            && batch.headers.iter().all(|header| self.holds_body(header));
        self.replica.handle(
            now,
            Origin::Local,
            ReplicaInput::Verified {
                sequence,
                digest,
                valid,
            },
        );
    }

    fn drain(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        loop {
            // The world's replicas keep no log: they do not crash (their records are dropped).
            while self.replica.poll_persist().is_some() {}
            let mut drained = false;
            while let Some(transmit) = self.replica.poll_transmit(now) {
                drained = true;
                if !self.silent {
                    let bytes = if self.equivocates {
                        self.equivocate(transmit.bytes)
                    } else {
                        transmit.bytes
                    };
                    effects.push(Effect::Send(transmit.to, PeerMessage::Consensus(bytes)));
                }
            }
            self.handling_events = true;
            while let Some(event) = self.replica.poll_event() {
                drained = true;
                match event {
                    ReplicaEvent::Verify { sequence, value } => {
                        // Bodies are checked by the world's weak DA on the next pass.
                        effects.push(Effect::Check(sequence, Box::new(value)));
                    }
                    ReplicaEvent::Committed {
                        sequence,
                        view,
                        value: Some(batch),
                        certificate,
                    } => self.committed_batch(now, sequence, view, batch, certificate, effects),
                    ReplicaEvent::Committed { value: None, .. }
                    | ReplicaEvent::ViewEntered { .. } => self.maybe_propose(now),
                    _ => {}
                }
            }
            self.handling_events = false;
            if std::mem::take(&mut self.propose_after_events) {
                drained = true;
                self.maybe_propose(now);
            }
            if !drained {
                break;
            }
        }
    }

    /// Every other pre-prepare of a batch of two blocks or more is replaced by one of the same
    /// batch without its last block: both are valid proposals, so the backups split.
    fn equivocate(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        let mut decoder = primitives::Decoder::new(&bytes);
        let Ok(Message::PrePrepare(pre_prepare)) = Message::<Batch>::decode(&mut decoder) else {
            return bytes;
        };
        let Some(batch) = pre_prepare
            .value
            .as_ref()
            .filter(|batch| batch.headers.len() >= 2)
        else {
            return bytes;
        };
        self.send_second = !self.send_second;
        if !self.send_second {
            return bytes;
        }
        self.equivocations += 1;
        let mut second = batch.clone();
        second.headers.pop();
        let second = PrePrepare::new(
            &self.operator,
            pre_prepare.view,
            pre_prepare.sequence,
            second,
        );
        Message::PrePrepare(second).to_bytes()
    }

    fn committed_batch(
        &mut self,
        now: Instant,
        sequence: u64,
        view: u64,
        batch: Batch,
        certificate: primitives::bls::Certificate,
        effects: &mut Vec<Effect>,
    ) {
        if std::env::var("TICKRATE_WORLD_TRACE").is_ok() {
            eprintln!(
                "{} {} commits #{} {} at seq {} view {} (batcher last {})",
                now.as_micros(),
                self.id,
                batch.number,
                batch.hash(),
                sequence,
                view,
                self.batcher.last_number()
            );
        }
        self.batcher.commit(&batch);
        self.committed.insert(batch.number, batch.hash());
        self.deferred.retain(|deferred, _| *deferred > sequence);
        let next = self.batcher.last_number() + 1;
        let ready: Vec<u64> = self
            .deferred
            .iter()
            .filter(|(_, batch)| batch.number <= next)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in ready {
            if let Some(batch) = self.deferred.remove(&sequence) {
                effects.push(Effect::Check(sequence, Box::new(batch)));
            }
        }
        for header in &batch.headers {
            if let Some(hashes) = self.own_blocks.remove(&header.id()) {
                for hash in &hashes {
                    self.raise(hash, FinalityLevel::Finalized);
                }
            }
        }
        effects.push(Effect::Finalized(Box::new(FinalizedBatch {
            batch,
            sequence,
            view,
            certificate,
        })));
        self.maybe_propose(now);
    }
}
