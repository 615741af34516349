//! Group BFT: the members of an address state group agree, by a [`consensus`] round, on the
//! root of the group's addresses after a batch, and the round's commit certificate is what
//! goes to the upper chain.
//!
//! [`GroupBft`] is one member's core for one group: a sans-IO [`Machine`] around a
//! [`Replica`] over [`GroupRoot`] values. It reads no clock and owns no socket or thread: the
//! owner feeds it the roots its own node computed ([`GroupInput::Root`]) and the group messages
//! its peers sent ([`GroupInput::Message`]), with `now`, and drains transmits and events.
//!
//! A member only ever vouches for a root it computed itself. The primary proposes the root its
//! own node computed for a batch; a backup prepares the proposal only if it is exactly its own
//! root for that batch, and otherwise refuses it ([`GroupError::RootMismatch`], counted in
//! [`GroupStats::roots_refused`], reported as [`GroupEvent::Refused`]). A refused proposal
//! gathers no quorum, so the view timer of every honest member fires (each has the batch in its
//! backlog) and the group changes views; a wrong root is never certified while at most `f` of
//! the `n` members are faulty (2 of 8).
//!
//! Group messages travel in an envelope naming the registry epoch and the group
//! ([`GroupMessage`]), since one node is a member of many groups. Everything a peer sends is
//! checked before the replica sees it, and what is refused gets a typed [`GroupError`] and
//! changes nothing but [`GroupStats::messages_refused`]: malformed or oversized bytes, another
//! epoch or group, a sender outside the group, a proposal for a batch that is not a commit
//! batch, already certified or too far ahead, and badly signed votes (checked on arrival here,
//! not held unverified as the replica would, so that a refused vote leaves no trace; a group
//! has 8 members and one round per commit interval, so this costs little).

use std::collections::{BTreeMap, VecDeque};

use consensus::{
    Evidence, Message, RejectReason, Replica, ReplicaConfig, ReplicaEvent, ReplicaInput,
    ReplicaKeys, ValidatorSet, Value,
};
pub mod eviction;

use eviction::Liveness;
pub use eviction::{
    EVICTION_SILENT_ROUNDS, Eviction, EvictionEvidence, EvictionVote, VoteError, describe_departure,
};
use primitives::{
    B256, Decode, DecodeError, Decoder, Encode, NodeId,
    bls::{BlsSecretKey, Certificate},
    machine::{Machine, Origin, Transmit},
    time::Instant,
};
use tracing::{debug, warn};
use upper_chain::{GroupDecision, GroupRootCommitment};

/// Largest group message accepted, envelope included; longer byte strings are refused before
/// decoding. A group value is 80 bytes, so even a new view carrying a quorum of view changes,
/// each with a window of prepared proofs, stays far below this.
pub const GROUP_MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// Roots of its own a member remembers, newest kept: a window of rounds the group may still
/// be deciding.
pub const OWN_ROOTS_MAX: usize = consensus::constants::SEQUENCE_WINDOW as usize;

/// Proposals a member holds until it has computed its own root for their batch.
pub const WAITING_VERIFIES_MAX: usize = consensus::constants::SEQUENCE_WINDOW as usize;

/// How many commit intervals past its newest own root a member accepts proposals for: a
/// primary may run ahead of a slow member, but not arbitrarily far.
pub const BATCHES_AHEAD_INTERVALS_MAX: u64 = consensus::constants::SEQUENCE_WINDOW;

/// Events queued at most before the owner drains them.
const EVENTS_QUEUED_MAX: usize = 4 * consensus::constants::SEQUENCE_WINDOW as usize;

/// An envelope of a consensus message (no kind byte: the encoding of every group message
/// before eviction votes, kept so that each message has one encoding).
const ENVELOPE_VERSION_CONSENSUS_ONLY: u8 = 1;
/// An envelope with a kind byte, for every other payload.
const ENVELOPE_VERSION: u8 = 2;
const PAYLOAD_CONSENSUS: u8 = 0;
const PAYLOAD_EVICTION_VOTE: u8 = 1;

/// What a group agrees on per round: the root of the group's addresses after a batch, with the
/// epoch and group it belongs to. Its digest is [`GroupRootCommitment::digest`], so the round's
/// commit certificate is checked upstream against [`GroupRootCommitment::commit_message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRoot(pub GroupRootCommitment);

impl Value for GroupRoot {
    fn digest(&self) -> B256 {
        self.0.digest()
    }
}

impl Encode for GroupRoot {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }
}

impl Decode for GroupRoot {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(GroupRoot(GroupRootCommitment::decode(decoder)?))
    }
}

/// What a [`GroupMessage`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupPayload {
    /// An encoded [`consensus::Message`] over [`GroupRoot`].
    Consensus,
    /// An encoded [`EvictionVote`].
    EvictionVote,
}

/// A group message on the wire: the epoch and group it is for, and a consensus message or an
/// eviction vote. A consensus message travels in a version 1 envelope (no kind byte), as before
/// eviction votes existed; every other payload in a version 2 envelope, which names its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMessage {
    /// The registry epoch the group was formed in.
    pub epoch: u64,
    /// The group.
    pub group: B256,
    /// What the payload is.
    pub kind: GroupPayload,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

impl Encode for GroupMessage {
    fn encode(&self, out: &mut Vec<u8>) {
        let consensus = self.kind == GroupPayload::Consensus;
        out.push(if consensus {
            ENVELOPE_VERSION_CONSENSUS_ONLY
        } else {
            ENVELOPE_VERSION
        });
        self.epoch.encode(out);
        self.group.encode(out);
        if !consensus {
            out.push(PAYLOAD_EVICTION_VOTE);
        }
        out.extend_from_slice(&self.payload);
    }
}

impl GroupMessage {
    /// Decodes untrusted bytes, refusing more than [`GROUP_MESSAGE_BYTES_MAX`] before reading
    /// them. The payload is the rest of the bytes; it is decoded on its own.
    pub fn from_wire(bytes: &[u8]) -> Result<GroupMessage, DecodeError> {
        if bytes.len() > GROUP_MESSAGE_BYTES_MAX {
            return Err(DecodeError::Oversized {
                what: "group message",
                len: bytes.len(),
                max: GROUP_MESSAGE_BYTES_MAX,
            });
        }
        let mut decoder = Decoder::new(bytes);
        let version = decoder.version(
            "group message",
            &[ENVELOPE_VERSION_CONSENSUS_ONLY, ENVELOPE_VERSION],
        )?;
        let epoch = decoder.u64()?;
        let group = decoder.b256()?;
        let kind = if version == ENVELOPE_VERSION_CONSENSUS_ONLY {
            GroupPayload::Consensus
        } else {
            match decoder.u8()? {
                PAYLOAD_CONSENSUS => {
                    return Err(DecodeError::Invalid {
                        what: "group message",
                        why: "a consensus message travels in a version 1 envelope",
                    });
                }
                PAYLOAD_EVICTION_VOTE => GroupPayload::EvictionVote,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "group payload",
                        tag,
                    });
                }
            }
        };
        let payload = decoder.take(decoder.remaining())?.to_vec();
        Ok(GroupMessage {
            epoch,
            group,
            kind,
            payload,
        })
    }
}

/// Why a group core refused an input. A refused input changes nothing but the counters in
/// [`GroupStats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The bytes are not a group message (or are longer than the bound).
    #[error("undecodable group message: {0}")]
    Decode(#[from] DecodeError),
    /// A message or value of another registry epoch.
    #[error("message of epoch {got}, the group is of epoch {expected}")]
    WrongEpoch {
        /// The epoch named.
        got: u64,
        /// The group's epoch.
        expected: u64,
    },
    /// A message or value for another group.
    #[error("message for group {got}, this core is group {expected}'s")]
    WrongGroup {
        /// The group named.
        got: B256,
        /// This core's group.
        expected: B256,
    },
    /// The sender is not a member of the group.
    #[error("{0} is not a member of the group")]
    NotMember(NodeId),
    /// A local command from a peer, or a peer message as a local command.
    #[error("{what} from the wrong origin")]
    WrongOrigin {
        /// The kind of input.
        what: &'static str,
    },
    /// A root for a batch at which roots are not certified, or too far ahead.
    #[error("batch {batch}: {why}")]
    WrongBatch {
        /// The batch named.
        batch: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A root for a batch at or below the last one certified.
    #[error("batch {batch} is stale: batch {certified} is certified")]
    StaleBatch {
        /// The batch named.
        batch: u64,
        /// The last batch certified.
        certified: u64,
    },
    /// The owner gave a root for a batch it had given another root for.
    #[error("own root of batch {batch} given twice, differently")]
    OwnRootChanged {
        /// The batch.
        batch: u64,
    },
    /// The primary proposed a root this member did not compute for the batch.
    #[error("proposed root {proposed} of batch {batch} is not this member's root {own}")]
    RootMismatch {
        /// The batch.
        batch: u64,
        /// The root proposed.
        proposed: B256,
        /// The root this member computed.
        own: B256,
    },
    /// A vote whose signature does not verify against its voter's key.
    #[error("bad signature")]
    BadSignature,
    /// The replica refused the message.
    #[error("refused by the replica: {0}")]
    Replica(RejectReason),
    /// An eviction vote that names no other member.
    #[error("eviction vote refused: {0}")]
    EvictionVote(VoteError),
}

impl From<VoteError> for GroupError {
    fn from(error: VoteError) -> Self {
        match error {
            VoteError::BadSignature => GroupError::BadSignature,
            other => GroupError::EvictionVote(other),
        }
    }
}

impl From<RejectReason> for GroupError {
    fn from(reason: RejectReason) -> Self {
        match reason {
            RejectReason::BadSignature => GroupError::BadSignature,
            other => GroupError::Replica(other),
        }
    }
}

/// An input to a [`GroupBft`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupInput {
    /// An encoded [`GroupMessage`] from a peer (origin [`Origin::Peer`]).
    Message(Vec<u8>),
    /// The root this member's own node computed for the group's addresses after `batch` (origin
    /// [`Origin::Local`]).
    Root {
        /// The batch (a multiple of the commit interval).
        batch: u64,
        /// The root.
        root: B256,
    },
}

/// What the owner of a [`GroupBft`] must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "an event is moved once to the owner; the certificate is what it is for"
)]
pub enum GroupEvent {
    /// The group certified `commitment`: commit it upstream with the decision and certificate
    /// ([`upper_chain::UpperChain::commit_group_root_decided`]). Emitted once per batch, in
    /// batch order.
    Certified {
        /// The root certified.
        commitment: GroupRootCommitment,
        /// Where it was decided.
        decision: GroupDecision,
        /// A quorum of the group's commit signatures.
        certificate: Certificate,
    },
    /// The primary proposed a root this member did not compute; it was refused.
    Refused {
        /// The batch.
        batch: u64,
        /// The root proposed.
        proposed: B256,
        /// This member's own root.
        own: B256,
    },
    /// The group entered `view` after a view change.
    ViewEntered {
        /// The view.
        view: u64,
        /// Its primary.
        primary: NodeId,
    },
    /// A member signed two conflicting messages for one slot.
    Evidence(Evidence),
    /// A quorum of the group voted a silent member out ([`eviction`]): record the departure
    /// upstream with the certificate ([`upper_chain::UpperChain::record_departure`]). Emitted
    /// once per member by each core that gathers the quorum.
    Evict(Eviction),
}

/// Counters of what a [`GroupBft`] did and refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Rounds certified (batches whose root the group certified).
    pub certified: u64,
    /// Proposals refused because the root was not this member's own.
    pub roots_refused: u64,
    /// Peer messages refused (every [`GroupError`] of a peer input).
    pub messages_refused: u64,
    /// Views entered after a view change.
    pub views_entered: u64,
    /// Decisions ignored because their batch was certified already (a value re-proposed in a
    /// new view and decided twice).
    pub duplicates: u64,
    /// Certified roots that differ from this member's own: its state is not the group's.
    pub certified_not_own: u64,
}

/// The fixed facts of one member's group core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// The registry epoch the group was formed in.
    pub epoch: u64,
    /// The group's ID.
    pub group: B256,
    /// Roots are certified after every batch that is a multiple of this (at least 1).
    pub commit_interval: u64,
    /// The replica's timeouts.
    pub replica: ReplicaConfig,
}

/// One member's group BFT core (see the module documentation).
///
/// # Methods
/// - **Construction**: [`GroupBft::new`].
/// - **Getters**: [`GroupBft::id`], [`GroupBft::view`], [`GroupBft::is_primary`],
///   [`GroupBft::last_certified`], [`GroupBft::stats`], [`GroupBft::replica`].
/// - **Inputs**: [`Machine::handle`] with a [`GroupInput`], or [`GroupBft::step`], which also
///   says why an input was refused.
/// - **Drains**, after every input, in this order: [`Machine::poll_transmit`] until `None`,
///   then [`Machine::poll_event`] until `None`, then [`Machine::poll_timeout`], and
///   [`Machine::handle_timeout`] once that time comes.
pub struct GroupBft {
    config: GroupConfig,
    /// The group's validators, sharing their memory of verified signatures with the replica's.
    validators: ValidatorSet,
    replica: Replica<GroupRoot>,
    /// The roots this member computed, by batch, the newest [`OWN_ROOTS_MAX`].
    own_roots: BTreeMap<u64, B256>,
    /// Proposals waiting for this member's own root of their batch: batch to (sequence, value).
    waiting: BTreeMap<u64, Vec<(u64, GroupRoot)>>,
    /// The last batch certified (0 before any).
    last_certified: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<GroupEvent>,
    stats: GroupStats,
    /// Signs this member's eviction votes.
    bls: BlsSecretKey,
    liveness: Liveness,
}

impl std::fmt::Debug for GroupBft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupBft")
            .field("group", &self.config.group)
            .field("replica", &self.replica)
            .field("last_certified", &self.last_certified)
            .finish_non_exhaustive()
    }
}

impl GroupBft {
    /// Member `index` of `validators` (the group's members in ID order, with their registered
    /// BLS keys), signing with `keys`.
    ///
    /// # Panics
    /// If `index` is not in the set, `keys` are not its keys, or the commit interval is 0.
    pub fn new(
        config: GroupConfig,
        validators: ValidatorSet,
        index: usize,
        keys: ReplicaKeys,
    ) -> GroupBft {
        assert!(
            config.commit_interval >= 1,
            "roots are certified at some interval"
        );
        assert!(
            validators.epoch() == config.epoch,
            "the validator set is the group's epoch's"
        );
        let bls = keys.bls.clone();
        let liveness = Liveness::new(
            index,
            validators
                .validators()
                .iter()
                .map(|member| member.id)
                .collect(),
            validators.quorum(),
            config.group,
            config.epoch,
        );
        let replica = Replica::with_config(validators.share_memory(), index, keys, config.replica);
        GroupBft {
            bls,
            liveness,
            config,
            validators,
            replica,
            own_roots: BTreeMap::new(),
            waiting: BTreeMap::new(),
            last_certified: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: GroupStats::default(),
        }
    }

    /// This member's node ID.
    pub fn id(&self) -> NodeId {
        self.replica.id()
    }

    /// The group's current view at this member.
    pub fn view(&self) -> u64 {
        self.replica.view()
    }

    /// Whether this member is the primary of its current view.
    pub fn is_primary(&self) -> bool {
        self.replica.is_primary()
    }

    /// Whether roots of this member wait for the group to certify them.
    pub fn has_backlog(&self) -> bool {
        self.own_roots
            .range(self.last_certified + 1..)
            .next()
            .is_some()
    }

    /// The last batch whose root this member saw certified (0 before any).
    pub fn last_certified(&self) -> u64 {
        self.last_certified
    }

    /// Counters of what the core did and refused.
    pub fn stats(&self) -> GroupStats {
        self.stats
    }

    /// The replica inside (its view, log and counters).
    pub fn replica(&self) -> &Replica<GroupRoot> {
        &self.replica
    }

    /// Feeds one input, like [`Machine::handle`], and says why it was refused, if it was.
    pub fn step(
        &mut self,
        now: Instant,
        from: Origin,
        input: GroupInput,
    ) -> Result<(), GroupError> {
        let result = match (from, input) {
            (Origin::Peer(id), GroupInput::Message(bytes)) => {
                let handled = self.handle_message(now, id, &bytes);
                // A member whose message this member took is alive (the transport proved who
                // sent it); a refused message changes nothing, this included.
                if handled.is_ok()
                    && let Some(sender) = self.validators.index_of(&id)
                {
                    self.liveness.heard(sender);
                }
                handled
            }
            (Origin::Local, GroupInput::Root { batch, root }) => self.handle_root(now, batch, root),
            (Origin::Local, GroupInput::Message(_)) => Err(GroupError::WrongOrigin {
                what: "peer message",
            }),
            (Origin::Peer(_), GroupInput::Root { .. }) => {
                Err(GroupError::WrongOrigin { what: "own root" })
            }
        };
        if let Err(error) = &result
            && from != Origin::Local
        {
            self.stats.messages_refused += 1;
            debug!(target: "shard_node::bft", group = %self.config.group, ?from, %error, "group message refused");
        }
        self.pump(now);
        assert!(
            self.events.len() <= EVENTS_QUEUED_MAX,
            "owner drains events"
        );
        result
    }

    /// This member's own root for `batch` (a commit batch).
    fn handle_root(&mut self, now: Instant, batch: u64, root: B256) -> Result<(), GroupError> {
        self.check_commit_batch(batch)?;
        if batch <= self.last_certified {
            return Err(GroupError::StaleBatch {
                batch,
                certified: self.last_certified,
            });
        }
        match self.own_roots.get(&batch) {
            Some(own) if *own == root => return Ok(()),
            Some(_) => return Err(GroupError::OwnRootChanged { batch }),
            None => {}
        }
        self.own_roots.insert(batch, root);
        while self.own_roots.len() > OWN_ROOTS_MAX {
            self.own_roots.pop_first();
        }
        self.count_round();
        self.set_backlog(now);
        if let Some(waiting) = self.waiting.remove(&batch) {
            for (sequence, value) in waiting {
                self.answer_verify(now, sequence, value);
            }
        }
        if self.replica.is_primary() {
            self.propose(now, batch, root);
        }
        Ok(())
    }

    /// A peer's group message: checked here (see the module documentation), then given to the
    /// replica.
    fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), GroupError> {
        let envelope = GroupMessage::from_wire(bytes)?;
        if envelope.epoch != self.config.epoch {
            return Err(GroupError::WrongEpoch {
                got: envelope.epoch,
                expected: self.config.epoch,
            });
        }
        if envelope.group != self.config.group {
            return Err(GroupError::WrongGroup {
                got: envelope.group,
                expected: self.config.group,
            });
        }
        let Some(sender) = self.validators.index_of(&from) else {
            return Err(GroupError::NotMember(from));
        };
        if envelope.kind == GroupPayload::EvictionVote {
            let vote = EvictionVote::from_bytes(&envelope.payload)?;
            self.liveness.vote(sender, &vote, self.validators.keys())?;
            self.take_evictions();
            return Ok(());
        }
        let message = Message::<GroupRoot>::from_wire(&envelope.payload)?;
        match &message {
            Message::PrePrepare(pre_prepare) => {
                if let Some(value) = &pre_prepare.value {
                    self.check_proposal(value)?;
                }
            }
            Message::Prepare(vote) | Message::Commit(vote) => {
                if usize::from(vote.replica) != sender {
                    return Err(RejectReason::WrongSender {
                        from,
                        claimed: vote.replica,
                    }
                    .into());
                }
                match &message {
                    Message::Prepare(_) => vote.verify_prepare(&self.validators)?,
                    _ => vote.verify_commit(&self.validators)?,
                }
            }
            _ => {}
        }
        self.replica
            .step(now, Origin::Peer(from), ReplicaInput::Decoded(message))?;
        Ok(())
    }

    /// The checks a proposed value passes before the replica sees it.
    fn check_proposal(&self, value: &GroupRoot) -> Result<(), GroupError> {
        let commitment = &value.0;
        if commitment.epoch != self.config.epoch {
            return Err(GroupError::WrongEpoch {
                got: commitment.epoch,
                expected: self.config.epoch,
            });
        }
        if commitment.group != self.config.group {
            return Err(GroupError::WrongGroup {
                got: commitment.group,
                expected: self.config.group,
            });
        }
        self.check_commit_batch(commitment.batch)?;
        if commitment.batch <= self.last_certified {
            return Err(GroupError::StaleBatch {
                batch: commitment.batch,
                certified: self.last_certified,
            });
        }
        let newest = self
            .own_roots
            .last_key_value()
            .map_or(self.last_certified, |(batch, _)| *batch);
        let horizon = newest.saturating_add(
            BATCHES_AHEAD_INTERVALS_MAX.saturating_mul(self.config.commit_interval),
        );
        if commitment.batch > horizon {
            return Err(GroupError::WrongBatch {
                batch: commitment.batch,
                why: "too far ahead of this member",
            });
        }
        Ok(())
    }

    fn check_commit_batch(&self, batch: u64) -> Result<(), GroupError> {
        if batch == 0 || !batch.is_multiple_of(self.config.commit_interval) {
            return Err(GroupError::WrongBatch {
                batch,
                why: "not a batch at which roots are certified",
            });
        }
        Ok(())
    }

    /// Proposes this member's own root of `batch`, as primary.
    fn propose(&mut self, now: Instant, batch: u64, root: B256) {
        let value = GroupRoot(GroupRootCommitment {
            epoch: self.config.epoch,
            group: self.config.group,
            batch,
            root,
        });
        if let Err(reason) = self
            .replica
            .step(now, Origin::Local, ReplicaInput::Propose(value))
        {
            // A full window or a view change: the round is proposed again in the next view.
            debug!(target: "shard_node::bft", group = %self.config.group, batch, %reason, "proposal not taken");
        }
    }

    /// Rounds since `member` was last heard from here ([`eviction`]).
    pub fn silent_rounds(&self, member: &NodeId) -> Option<u32> {
        let index = self.validators.index_of(member)?;
        Some(self.liveness.silent_rounds(index))
    }

    /// A new round of this member: members silent for too long are voted out, and the votes go
    /// to the rest of the group.
    fn count_round(&mut self) {
        for vote in self.liveness.round(&self.bls) {
            let envelope = GroupMessage {
                epoch: self.config.epoch,
                group: self.config.group,
                kind: GroupPayload::EvictionVote,
                payload: vote.to_bytes(),
            }
            .to_bytes();
            let offender = self
                .validators
                .get(usize::from(vote.offender))
                .map(|member| member.id);
            debug!(target: "shard_node::bft", group = %self.config.group, member = %self.id(),
                offender = ?offender, rounds = EVICTION_SILENT_ROUNDS, "voting out a silent member");
            let own = self.id();
            for member in self.validators.validators() {
                if member.id != own {
                    self.transmits.push_back(Transmit {
                        to: member.id,
                        bytes: envelope.clone(),
                    });
                }
            }
        }
        self.take_evictions();
    }

    fn take_evictions(&mut self) {
        for eviction in self.liveness.take_evictions() {
            self.events.push_back(GroupEvent::Evict(eviction));
        }
    }

    /// Tells the replica whether roots of this member wait for certification, so that its view
    /// timer runs while they do.
    fn set_backlog(&mut self, now: Instant) {
        let backlog = self
            .own_roots
            .range(self.last_certified + 1..)
            .next()
            .is_some();
        // A backlog flag from the local origin is never refused.
        let _ = self
            .replica
            .step(now, Origin::Local, ReplicaInput::Backlog(backlog));
    }

    /// Moves what the replica produced out: transmits into envelopes, events handled (which may
    /// feed the replica again), until it has nothing left.
    fn pump(&mut self, now: Instant) {
        // Each round either moves a transmit or an event out, or ends the loop; the replica's
        // queues are bounded, and so is what handling an event feeds back.
        loop {
            while let Some(transmit) = self.replica.poll_transmit(now) {
                let envelope = GroupMessage {
                    epoch: self.config.epoch,
                    group: self.config.group,
                    kind: GroupPayload::Consensus,
                    payload: transmit.bytes,
                };
                self.transmits.push_back(Transmit {
                    to: transmit.to,
                    bytes: envelope.to_bytes(),
                });
            }
            let Some(event) = self.replica.poll_event() else {
                return;
            };
            self.handle_replica_event(now, event);
        }
    }

    fn handle_replica_event(&mut self, now: Instant, event: ReplicaEvent<GroupRoot>) {
        match event {
            ReplicaEvent::Verify { sequence, value } => self.answer_verify(now, sequence, value),
            // A null (a view change filled the sequence) certifies nothing and is skipped.
            ReplicaEvent::Committed {
                sequence,
                view,
                value: Some(GroupRoot(commitment)),
                certificate,
            } => self.certified(
                now,
                commitment,
                GroupDecision { view, sequence },
                certificate,
            ),
            ReplicaEvent::ViewEntered { view, primary } => {
                self.stats.views_entered += 1;
                self.events
                    .push_back(GroupEvent::ViewEntered { view, primary });
                if self.replica.is_primary() {
                    let pending: Vec<(u64, B256)> = self
                        .own_roots
                        .range(self.last_certified + 1..)
                        .map(|(batch, root)| (*batch, *root))
                        .collect();
                    for (batch, root) in pending {
                        self.propose(now, batch, root);
                    }
                }
            }
            ReplicaEvent::Evidence(evidence) => {
                self.events.push_back(GroupEvent::Evidence(evidence))
            }
            // Groups change only at registry epochs, which build new cores.
            _ => {}
        }
    }

    /// Answers the replica's question about a proposal: valid only if it is exactly this
    /// member's own root of its batch; held if this member has not computed that batch yet.
    fn answer_verify(&mut self, now: Instant, sequence: u64, value: GroupRoot) {
        let digest = value.digest();
        let batch = value.0.batch;
        let verdict = match self.own_roots.get(&batch) {
            Some(own) if *own == value.0.root => Ok(()),
            Some(own) => Err(GroupError::RootMismatch {
                batch,
                proposed: value.0.root,
                own: *own,
            }),
            None if batch <= self.last_certified
                || self
                    .own_roots
                    .first_key_value()
                    .is_some_and(|(first, _)| batch < *first) =>
            {
                Err(GroupError::StaleBatch {
                    batch,
                    certified: self.last_certified,
                })
            }
            None => {
                let held: usize = self.waiting.values().map(Vec::len).sum();
                if held < WAITING_VERIFIES_MAX {
                    self.waiting
                        .entry(batch)
                        .or_default()
                        .push((sequence, value));
                    return;
                }
                Err(GroupError::WrongBatch {
                    batch,
                    why: "too many proposals wait for this member's roots",
                })
            }
        };
        if let Err(error) = &verdict {
            warn!(target: "shard_node::bft", group = %self.config.group, member = %self.id(), sequence, %error, "proposal refused");
            if let GroupError::RootMismatch {
                batch,
                proposed,
                own,
            } = error
            {
                self.stats.roots_refused += 1;
                self.events.push_back(GroupEvent::Refused {
                    batch: *batch,
                    proposed: *proposed,
                    own: *own,
                });
            }
        }
        // A verdict that comes after a view change is refused as stale; the new view asks again.
        let _ = self.replica.step(
            now,
            Origin::Local,
            ReplicaInput::Verified {
                sequence,
                digest,
                valid: verdict.is_ok(),
            },
        );
    }

    fn certified(
        &mut self,
        now: Instant,
        commitment: GroupRootCommitment,
        decision: GroupDecision,
        certificate: Certificate,
    ) {
        let batch = commitment.batch;
        if batch <= self.last_certified {
            self.stats.duplicates += 1;
            return;
        }
        assert!(
            commitment.group == self.config.group && commitment.epoch == self.config.epoch,
            "the replica decides only values this member checked or a quorum vouched for"
        );
        if self
            .own_roots
            .get(&batch)
            .is_some_and(|own| *own != commitment.root)
        {
            self.stats.certified_not_own += 1;
            warn!(target: "shard_node::bft", group = %self.config.group, member = %self.id(), batch,
                "the group certified a root other than this member's own");
        }
        self.last_certified = batch;
        self.stats.certified += 1;
        self.own_roots = self.own_roots.split_off(&(batch + 1));
        self.waiting = self.waiting.split_off(&(batch + 1));
        self.set_backlog(now);
        self.events.push_back(GroupEvent::Certified {
            commitment,
            decision,
            certificate,
        });
    }

    /// Everything the protocol state consists of, for tests that check a refused input changed
    /// nothing.
    #[cfg(test)]
    pub(crate) fn fingerprint(&self) -> String {
        format!(
            "{} {:?} {:?} {} {:?} {:?} {:?}",
            self.replica.fingerprint(),
            self.own_roots,
            self.waiting,
            self.last_certified,
            self.transmits,
            self.events,
            self.liveness
        )
    }
}

impl Machine for GroupBft {
    type Input = GroupInput;
    type Event = GroupEvent;

    fn handle(&mut self, now: Instant, from: Origin, input: GroupInput) {
        // Refusals are counted in `stats()` and logged by `step`.
        let _ = self.step(now, from, input);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.replica.handle_timeout(now);
        self.pump(now);
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.replica.poll_timeout()
    }

    fn poll_event(&mut self) -> Option<GroupEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
