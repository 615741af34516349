//! The PBFT replica: a sans-IO [`Machine`] that orders values one sequence at a time.

mod change;
mod epoch;
mod transfer;

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
};

use primitives::{
    AccountKey, B256, Encode, NodeId,
    bls::{BlsSecretKey, BlsSignature, Certificate, HashedMessage},
    machine::{Machine, Origin, Transmit},
    time::Instant,
};
use tracing::{debug, trace, warn};

use crate::{
    constants::{
        CHECKPOINT_INTERVAL, DECIDED_RETAINED, EVENTS_QUEUED_MAX, PRESIGNED_MAX, SEQUENCE_WINDOW,
        TRANSMITS_QUEUED_MAX, VIEW_TIMEOUT_MAX_US, VIEW_TIMEOUT_US,
    },
    error::RejectReason,
    evidence::{Evidence, EvidenceKind, PbftSignature, Signed},
    log::{
        CheckpointVotes, Held, Proposal, Slot, Verdict, VoteKind, chain_history, quorum_candidates,
    },
    message::{
        Checkpoint, DecidedEntry, Message, NewView, PrePrepare, PrepareSignature, PreparedProof,
        ViewChange, Vote, checkpoint_message, commit_message,
    },
    persist::{Record, ReplicaState},
    stats::ReplicaStats,
    validator::ValidatorSet,
    value::Value,
};

/// How long a replica waits for progress before it suspects the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// Microseconds without a commit, while something waits to be ordered, before the replica
    /// starts a view change; doubled for every view change in a row that brings no commit.
    pub view_timeout_us: u64,
    /// Longest the doubled timeout grows to, in microseconds.
    pub view_timeout_max_us: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            view_timeout_us: VIEW_TIMEOUT_US,
            view_timeout_max_us: VIEW_TIMEOUT_MAX_US,
        }
    }
}

/// An input to a [`Replica`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "an input is moved once into the replica; boxing would cost an allocation a message"
)]
pub enum ReplicaInput<V> {
    /// An encoded [`Message`] from a peer (origin [`Origin::Peer`]); decoded with bounds here.
    Message(Vec<u8>),
    /// A [`Message`] from a peer that the driver already decoded (origin [`Origin::Peer`]). Its
    /// signature is still checked here.
    Decoded(Message<V>),
    /// Propose a value at the next sequence (origin [`Origin::Local`], on the primary only).
    Propose(V),
    /// Whether the application has values waiting to be ordered (origin [`Origin::Local`]).
    /// While it has, a replica that sees no commit for a view timeout suspects the primary.
    /// Without it, only a proposal left undecided starts the timer, so a primary that proposes
    /// nothing at all is never suspected.
    Backlog(bool),
    /// The validator set of the epoch after the current one, read from the upper chain (origin
    /// [`Origin::Local`]). It must be the next epoch and start right after the current epoch's
    /// last sequence; the replica switches to it once it has delivered that sequence (see
    /// [`ValidatorSet`]'s epochs). Not recorded: after a restart before the switch, give it
    /// again.
    NextEpoch(ValidatorSet),
    /// The application's answer to [`ReplicaEvent::Verify`] (origin [`Origin::Local`]).
    Verified {
        /// The sequence of the `Verify` answered.
        sequence: u64,
        /// The digest of the value verified, so a stale answer cannot apply to another value.
        digest: B256,
        /// Whether the replica may prepare the value.
        valid: bool,
    },
}

/// What the owner of a [`Replica`] must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "an event is moved once to the owner; the certificate is what it is for"
)]
#[non_exhaustive]
pub enum ReplicaEvent<V> {
    /// The primary proposed `value` at `sequence`: check it and answer with
    /// [`ReplicaInput::Verified`]. The replica prepares it only if the answer is valid.
    Verify {
        /// The sequence proposed.
        sequence: u64,
        /// The value proposed.
        value: V,
    },
    /// `value` is decided at `sequence`. Emitted exactly once per sequence, in sequence order
    /// with no gaps, starting at 1.
    Committed {
        /// The sequence decided.
        sequence: u64,
        /// The view whose commits make up the certificate.
        view: u64,
        /// The value decided; `None` when a view change filled the sequence with a null, which
        /// the application skips.
        value: Option<V>,
        /// A quorum of commit signatures over
        /// [`crate::commit_message`]`(view, sequence, digest)`.
        certificate: Certificate,
    },
    /// This replica entered `view` (after a view change); `primary` now takes proposals.
    ViewEntered {
        /// The view.
        view: u64,
        /// Node ID of its primary.
        primary: NodeId,
    },
    /// The replica delivered the last sequence of its epoch and switched to the next set.
    /// `member` false: this replica is not in it and has retired (it takes no more input).
    EpochEntered {
        /// The epoch entered.
        epoch: u64,
        /// The last sequence of the previous epoch; the new set decides from the next one.
        start: u64,
        /// Whether this replica is a validator of the new epoch.
        member: bool,
    },
    /// A validator signed two conflicting messages for one slot (see [`Evidence`]); both
    /// signatures were checked here. Emitted at most once per offender, kind and slot.
    Evidence(Evidence),
}

/// The keys a replica signs with: its node's operator key (the secp256k1 key its node ID is the
/// address of) for the pre-prepares it proposes as primary, and its BLS key for everything that
/// aggregates into certificates.
#[derive(Clone)]
pub struct ReplicaKeys {
    /// Signs pre-prepares.
    pub operator: AccountKey,
    /// Signs prepares, commits, checkpoints, view changes and new views.
    pub bls: BlsSecretKey,
}

impl fmt::Debug for ReplicaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaKeys")
            .field("operator", &self.operator.address())
            .finish_non_exhaustive()
    }
}

/// A PBFT replica (Castro and Liskov, normal case with checkpoints), generic over the [`Value`]
/// agreed.
///
/// It never performs IO: the driver feeds it inputs and drains what it produced, as with every
/// [`Machine`] of Tickrate.
///
/// # Methods
/// - **Construction**: [`Replica::new`].
/// - **Getters**: [`Replica::view`], [`Replica::index`], [`Replica::id`],
///   [`Replica::validators`], [`Replica::is_primary`], [`Replica::primary`],
///   [`Replica::next_sequence`], [`Replica::last_committed`], [`Replica::history`],
///   [`Replica::low_watermark`], [`Replica::high_watermark`], [`Replica::stable_proof`],
///   [`Replica::stats`].
/// - **Inputs**: [`Machine::handle`] with a [`ReplicaInput`], or [`Replica::step`], which is the
///   same but also returns why an input was refused. Peer messages come with
///   [`Origin::Peer`]; proposals and verdicts with [`Origin::Local`].
/// - **Drains**, after every input, in this order: [`Machine::poll_transmit`] until `None`, then
///   [`Machine::poll_event`] until `None` (answering [`ReplicaEvent::Verify`] by a later input,
///   and passing [`ReplicaEvent::Evidence`] on to be recorded on the upper chain),
///   then [`Machine::poll_timeout`], and [`Machine::handle_timeout`] once that time comes (the
///   view timer and the fetch timer).
///
/// # The normal case
/// The primary of view `v` is validator `v mod n`. On `Propose(value)` it assigns the next
/// sequence and broadcasts a signed pre-prepare. A backup that accepts the pre-prepare asks its
/// application (`Verify`); only on `Verified { valid: true }` does it broadcast its prepare. A
/// replica is *prepared* once it stands behind the pre-prepare and holds `quorum - 1` matching
/// prepares from backups (its own included); it then broadcasts its commit. A quorum of matching
/// commits decides the value; decided values are emitted in sequence order, each with the
/// aggregate of a quorum of commits as its certificate. A replica that refused the value does not
/// prepare or commit it, but still learns the decision if a quorum commits it.
///
/// Prepares and commits are held unverified until a quorum would count them, then checked in one
/// aggregate verification (one by one only if it fails; see the [crate documentation](crate)). A
/// badly signed vote is refused as [`RejectReason::BadSignature`] by the input that brought it if
/// that input completed the quorum, or counted among the refusals of the input that did.
///
/// A second pre-prepare, prepare or commit that conflicts with one held (same signer, slot and
/// kind, another digest) is refused as [`RejectReason::Conflicting`]; if both signatures verify,
/// the replica emits [`ReplicaEvent::Evidence`], once per offender, kind and slot.
///
/// After each `CHECKPOINT_INTERVAL`-th committed sequence the replica broadcasts a checkpoint
/// (the hash chain of committed digests); a quorum that matches its own makes it stable, moves
/// the window up to it and discards the log below it.
///
/// # View change
/// While something waits to be ordered (a proposal taken but undecided, or the application's
/// [`ReplicaInput::Backlog`]), a view timer runs; each commit restarts it. When it fires the
/// replica broadcasts a [`ViewChange`] for the next view, carrying its stable checkpoint proof
/// and a [`PreparedProof`] (the pre-prepare and the aggregate of `quorum - 1` prepares) for each
/// sequence it prepared above it, and takes no normal-case message until the new view (those of
/// the view it changes to are held, bounded, and replayed). It joins any higher view `f + 1`
/// replicas ask for. The new view's primary, once a quorum asks, broadcasts a [`NewView`]: the
/// view changes and, for each sequence between their highest stable checkpoint and highest
/// prepared sequence, a pre-prepare of the value prepared in the highest view, or of a null. Every
/// replica recomputes those and refuses a new view that differs. If the new view does not come in
/// a view timeout, the replica moves on to the next view; the timeout doubles with each view
/// change that brings no commit (capped by [`ReplicaConfig::view_timeout_max_us`]). A replica
/// still asking for a view the others entered is sent its new view again.
///
/// # State transfer
/// A replica that `f + 1` peers' checkpoints show beyond its window, whose new view's stable
/// checkpoint is above its last commit, or whose timer finds later sequences decided and the
/// next one not, sends [`Message::Fetch`] to one peer, and another on each timeout. The answer
/// ([`Message::Decided`]) carries decided entries, each with its certificate, which the replica
/// checks before delivering any, and the peer's stable checkpoint proof. Replicas keep
/// `DECIDED_RETAINED` entries below their low watermark for this.
pub struct Replica<V: Value> {
    config: ReplicaConfig,
    validators: ValidatorSet,
    /// This replica's index in `validators`.
    index: u16,
    /// Signs this replica's votes, checkpoints and view changes.
    secret: BlsSecretKey,
    /// Signs this replica's pre-prepares.
    operator: AccountKey,
    view: u64,
    /// The sequence the next proposal gets (used by the primary).
    next_sequence: u64,
    /// The last sequence emitted as committed; every lower one was emitted too.
    last_committed: u64,
    /// Hash chain of committed digests through `last_committed`.
    history: B256,
    /// The last stable checkpoint; the window is `(low_watermark, low_watermark + WINDOW]`.
    low_watermark: u64,
    slots: BTreeMap<u64, Slot<V>>,
    checkpoint_votes: BTreeMap<u64, CheckpointVotes>,
    /// This replica's own history at each checkpoint of the window it has reached.
    checkpoint_histories: BTreeMap<u64, B256>,
    /// The quorum of checkpoint votes proving the stable checkpoint (empty at genesis).
    stable_proof: Vec<Checkpoint>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ReplicaEvent<V>>,
    /// Whether this replica records what it promises ([`Replica::restore`]); a replica built
    /// with [`Replica::new`] records nothing.
    durable: bool,
    /// Records the driver must make durable before it sends the transmits queued with them.
    persist: VecDeque<Record<V>>,
    /// The next epoch's set, once the driver gave it, until the switch.
    next_epoch: Option<ValidatorSet>,
    /// The previous epoch's set, to tell a node that left from a stranger.
    previous: Option<ValidatorSet>,
    /// Not a member of the current epoch's set: takes no input.
    retired: bool,
    stats: ReplicaStats,
    /// Held votes found badly signed during the current input, as `(kind, sequence, voter)`:
    /// removed from the log, counted as refusals when the input ends. Empty between inputs.
    bad_votes: Vec<(VoteKind, u64, u16)>,
    /// The vote messages hashed to the curve lately, newest last: this replica signs a
    /// prepare's or commit's bytes and then checks the quorum over the same bytes, and hashing
    /// is a quarter of a check. A cache, not protocol state.
    hashed: VecDeque<(Vec<u8>, HashedMessage)>,
    /// This replica's signatures over vote messages it will send, made ahead by
    /// [`Replica::presign`], newest last. A cache, not protocol state.
    presigned: VecDeque<(Vec<u8>, BlsSignature)>,
    /// The latest `now` seen; time never goes backwards.
    time_last: Instant,
    /// False from the start of a view change until the new view to `view` is entered: only
    /// checkpoints, view changes, new views and state transfer are taken meanwhile.
    active: bool,
    /// Verified view changes by sender and view (this replica's own included), the highest
    /// `VIEW_CHANGES_PER_SENDER` of each sender.
    view_changes: BTreeMap<u16, BTreeMap<u64, ViewChange<V>>>,
    /// The new view this replica entered or sent for `view`, resent to replicas still asking for it.
    new_view: Option<NewView<V>>,
    /// Normal-case messages for `view + 1`, or for `view` while changing to it, by sender.
    future: BTreeMap<u16, VecDeque<Message<V>>>,
    /// The application has values waiting to be ordered.
    backlog: bool,
    /// When the view timer fires, and `last_committed` when it was armed.
    timer: Option<(Instant, u64)>,
    /// Whether a quorum of view changes for `view` has been seen (the new-view timer runs).
    view_change_quorum: bool,
    /// View changes in a row without a commit: the timeout doubles with each.
    views_without_progress: u32,
    /// Decided entries kept for peers catching up: from `DECIDED_RETAINED` below the low
    /// watermark through `last_committed`.
    decided: BTreeMap<u64, DecidedEntry<V>>,
    /// The highest checkpoint each peer was seen to sign beyond this replica's last commit.
    checkpoint_claims: BTreeMap<u16, u64>,
    /// A fetch in flight: when to ask again, and whom it went to.
    fetch: Option<(Instant, u16)>,
    /// The highest view each peer was seen sending normal-case messages in, beyond the next
    /// one: `f + 1` of them mean this replica missed view changes (it was down or cut off).
    peer_views: BTreeMap<u16, u64>,
    /// Prepared proofs verified already (view changes repeat them).
    proof_cache: crate::view_change::ProofCache,
    /// Per sender, the view of the last reply to one of its stale view changes, and when: a
    /// replica that is past a view answers a peer stuck in it at most once per base timeout,
    /// or two replicas both past the view would answer each other's answers forever (and a
    /// duplicating link would multiply the exchange).
    stale_replies: BTreeMap<u16, (u64, Instant)>,
    /// The `last_committed` at which the view timer last fetched instead of changing views, so
    /// that a gap nobody can fill leads to a view change on the next expiry.
    gap_fetched: Option<u64>,
    /// A stable checkpoint adopted from a new view before this replica committed up to it: the
    /// history it must reach there.
    adopted_history: Option<(u64, B256)>,
}

impl<V: Value> std::fmt::Debug for Replica<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("index", &self.index)
            .field("view", &self.view)
            .field("last_committed", &self.last_committed)
            .field("low_watermark", &self.low_watermark)
            .finish_non_exhaustive()
    }
}

impl<V: Value> Replica<V> {
    /// Replica number `index` of `validators`, signing with `keys`, in view 0 at sequence 0.
    ///
    /// # Panics
    /// If `index` is not in the set or `keys` are not the keys the set names for it.
    pub fn new(validators: ValidatorSet, index: usize, keys: ReplicaKeys) -> Self {
        Self::with_config(validators, index, keys, ReplicaConfig::default())
    }

    /// [`Replica::new`] with timeouts other than the defaults.
    ///
    /// # Panics
    /// As [`Replica::new`].
    pub fn with_config(
        validators: ValidatorSet,
        index: usize,
        keys: ReplicaKeys,
        config: ReplicaConfig,
    ) -> Self {
        let validator = validators
            .get(index)
            .expect("a replica is a member of its validator set");
        let ReplicaKeys {
            bls: secret,
            operator,
        } = keys;
        assert!(
            validator.key == secret.public_key(),
            "the secret key matches the validator's public key"
        );
        assert!(
            validator.id.0 == operator.address(),
            "the operator key is the one the validator's node ID is the address of"
        );
        let index = u16::try_from(index).expect("validator indices fit u16");
        Replica {
            config,
            validators,
            index,
            secret,
            operator,
            view: 0,
            next_sequence: 1,
            last_committed: 0,
            history: B256::ZERO,
            low_watermark: 0,
            slots: BTreeMap::new(),
            checkpoint_votes: BTreeMap::new(),
            checkpoint_histories: BTreeMap::new(),
            stable_proof: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            durable: false,
            persist: VecDeque::new(),
            next_epoch: None,
            previous: None,
            retired: false,
            stats: ReplicaStats::default(),
            bad_votes: Vec::new(),
            hashed: VecDeque::new(),
            presigned: VecDeque::new(),
            time_last: Instant::ZERO,
            active: true,
            view_changes: BTreeMap::new(),
            new_view: None,
            future: BTreeMap::new(),
            backlog: false,
            timer: None,
            view_change_quorum: false,
            views_without_progress: 0,
            decided: BTreeMap::new(),
            checkpoint_claims: BTreeMap::new(),
            fetch: None,
            gap_fetched: None,
            peer_views: BTreeMap::new(),
            proof_cache: crate::view_change::ProofCache::default(),
            stale_replies: BTreeMap::new(),
            adopted_history: None,
        }
    }

    /// A durable replica: number `index` of `validators`, signing with `keys`, continuing
    /// from `state` (what its log recovered, or [`ReplicaState::genesis`] for a new one) at
    /// `now`. It queues a [`Record`] for every promise it makes ([`Replica::poll_persist`]).
    ///
    /// It comes back in the recorded view. If it was in that view's normal case, it stands
    /// behind the pre-prepares it recorded (refusing any other for their slots) and holds its
    /// own prepares and commits, re-signed (BLS signatures are deterministic, so they are the
    /// bytes it sent); as primary it proposes only above what it proposed. If it was changing
    /// views, it asks for the view again. Votes of others, checkpoint votes and view changes
    /// are not recorded: it learns them again, or catches up by state transfer.
    ///
    /// `validators` and `index` are the set the replica was built with and its place in it; if
    /// the log switched epochs (or the node joined with [`ReplicaState::joining`]), the log's
    /// set replaces it, and the replica finds itself in it by node ID (retired if absent).
    ///
    /// # Panics
    /// As [`Replica::new`].
    pub fn restore(
        validators: ValidatorSet,
        index: usize,
        keys: ReplicaKeys,
        config: ReplicaConfig,
        now: Instant,
        state: ReplicaState<V>,
    ) -> Self {
        let mut replica = Self::with_config(validators, index, keys, config);
        replica.durable = true;
        replica.time_last = now;
        if let Some(epoch) = state.epoch.clone()
            && epoch != replica.validators
        {
            let id = replica.id();
            match epoch.index_of(&id) {
                Some(index) => {
                    replica.index = u16::try_from(index).expect("validator indices fit u16");
                    let built_with = std::mem::replace(&mut replica.validators, epoch);
                    if built_with.epoch() + 1 == replica.validators.epoch() {
                        replica.previous = Some(built_with);
                    }
                }
                None => {
                    let left = std::mem::replace(&mut replica.validators, epoch);
                    replica.previous = Some(left);
                    replica.retired = true;
                    return replica;
                }
            }
        }
        let ReplicaState {
            view,
            active,
            last_committed,
            history,
            low_watermark,
            stable_history,
            stable_proof,
            checkpoints,
            proposals,
            prepared,
            decided,
            epoch: _,
            view_changes,
        } = state;
        replica.view = view;
        replica.last_committed = last_committed;
        replica.history = history;
        replica.low_watermark = low_watermark;
        replica.stable_proof = stable_proof;
        replica.checkpoint_histories = checkpoints;
        replica.decided = decided;
        if last_committed < low_watermark {
            // The window moved to a checkpoint proven by others before this replica got there.
            replica.adopted_history = Some((low_watermark, stable_history));
        }
        let primary = replica.validators.primary_index(view) == replica.index();
        let mut next_sequence = last_committed.max(low_watermark) + 1;
        for (sequence, proof) in &prepared {
            replica.slots.entry(*sequence).or_default().prepared = Some(proof.clone());
        }
        if active {
            for (sequence, pre_prepare) in proposals {
                next_sequence = next_sequence.max(sequence + 1);
                let digest = pre_prepare.digest();
                let me = replica.index;
                let own_prepare = (!primary)
                    .then(|| Vote::prepare(&replica.operator, view, sequence, digest, me));
                let committed = prepared.get(&sequence).is_some_and(|proof| {
                    proof.pre_prepare.view == view && proof.pre_prepare.digest() == digest
                });
                let own_commit =
                    committed.then(|| Vote::commit(&replica.secret, view, sequence, digest, me));
                let slot = replica.slots.entry(sequence).or_default();
                slot.proposal = Some(Proposal {
                    pre_prepare,
                    digest,
                    verdict: if primary {
                        Verdict::Own
                    } else {
                        Verdict::Valid
                    },
                });
                if let Some(vote) = own_prepare {
                    slot.prepares.insert(
                        me,
                        Held {
                            vote,
                            verified: true,
                        },
                    );
                }
                if let Some(vote) = own_commit {
                    slot.commit_sent = true;
                    slot.commits.insert(
                        me,
                        Held {
                            vote,
                            verified: true,
                        },
                    );
                }
            }
        }
        // Its own view changes, to hand to replicas stuck in their views.
        let own_view = view_changes.get(&view).cloned();
        for view_change in view_changes.into_values() {
            replica.keep_view_change(view_change);
        }
        if !active {
            // Changing views: ask for the view again, with the view change it sent (recorded
            // before it went out; rebuilt from the recovered state if absent).
            replica.active = false;
            let own = own_view.unwrap_or_else(|| {
                ViewChange::in_epoch(
                    &replica.secret,
                    view,
                    replica.index,
                    replica.validators.start(),
                    replica.stable_proof.clone(),
                    prepared.into_values().collect(),
                )
            });
            replica.keep_view_change(own.clone());
            replica.broadcast(&Message::ViewChange(own));
            replica.timer = Some((now + replica.view_timeout(), replica.last_committed));
        }
        replica.next_sequence = next_sequence;
        debug!(target: "consensus", replica = replica.index, view, active, last_committed,
            low_watermark, "restored");
        replica
    }

    /// Whether the replica is in the normal case of its view (false during a view change).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The current view.
    pub fn view(&self) -> u64 {
        self.view
    }

    /// This replica's index in the validator set.
    pub fn index(&self) -> usize {
        usize::from(self.index)
    }

    /// This replica's node ID.
    pub fn id(&self) -> NodeId {
        match (&self.previous, self.retired) {
            // Retired: its index is the one it had in the set it left.
            (Some(previous), true) => previous.validators()[self.index()].id,
            _ => self.validators.validators()[self.index()].id,
        }
    }

    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// Whether this replica is the primary of the current view (and may be given proposals).
    pub fn is_primary(&self) -> bool {
        !self.retired && self.active && self.validators.primary_index(self.view) == self.index()
    }

    /// The node ID of the current view's primary.
    pub fn primary(&self) -> NodeId {
        self.validators.primary(self.view).id
    }

    /// The sequence the next [`ReplicaInput::Propose`] gets, on the primary.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The last sequence emitted as [`ReplicaEvent::Committed`] (0 before the first).
    pub fn last_committed(&self) -> u64 {
        self.last_committed
    }

    /// The hash chain of committed digests through [`Replica::last_committed`]:
    /// `h(s) = keccak256(h(s - 1) || s || digest(s))`, `h(0) = 0`. Checkpoints compare it.
    pub fn history(&self) -> B256 {
        self.history
    }

    /// The last stable checkpoint: the log at and below it is discarded.
    pub fn low_watermark(&self) -> u64 {
        self.low_watermark
    }

    /// The highest sequence the replica accepts messages for.
    /// It stops at the last sequence of the epoch.
    pub fn high_watermark(&self) -> u64 {
        let high = self.low_watermark + SEQUENCE_WINDOW;
        self.validators.end().map_or(high, |end| high.min(end))
    }

    /// The current epoch (that of [`Replica::validators`]).
    pub fn epoch(&self) -> u64 {
        self.validators.epoch()
    }

    /// Whether this replica left the validator set at an epoch boundary (it takes no input).
    pub fn is_retired(&self) -> bool {
        self.retired
    }

    /// The quorum of signed checkpoint votes that made [`Replica::low_watermark`] stable (empty
    /// before the first stable checkpoint): the proof a lagging peer or a view change needs.
    pub fn stable_proof(&self) -> &[Checkpoint] {
        &self.stable_proof
    }

    /// Counters of what the replica has done and refused.
    pub fn stats(&self) -> ReplicaStats {
        self.stats
    }

    /// Everything the protocol state consists of (view, sequences, history, watermarks, the log,
    /// checkpoint votes, queued transmits and events), but not the counters or the clock: tests
    /// compare it before and after an input that must change nothing.
    #[cfg(feature = "test-utils")]
    pub fn fingerprint(&self) -> String {
        format!(
            "{:?}",
            (
                (
                    self.view,
                    self.next_sequence,
                    self.last_committed,
                    self.history
                ),
                (self.low_watermark, &self.stable_proof),
                (
                    &self.slots,
                    &self.checkpoint_votes,
                    &self.checkpoint_histories
                ),
                (&self.transmits, &self.events),
                (
                    self.active,
                    &self.view_changes,
                    &self.new_view,
                    &self.future,
                    self.backlog,
                    self.timer,
                ),
                (
                    self.view_change_quorum,
                    self.views_without_progress,
                    &self.decided,
                    &self.checkpoint_claims,
                    self.fetch,
                    self.adopted_history,
                ),
            )
        )
    }

    /// Feeds one input, like [`Machine::handle`], and says why it was refused, if it was. A
    /// refused input changes nothing but the counters in [`Replica::stats`].
    pub fn step(
        &mut self,
        now: Instant,
        from: Origin,
        input: ReplicaInput<V>,
    ) -> Result<(), RejectReason> {
        assert!(now >= self.time_last, "time never goes backwards");
        self.time_last = now;
        self.stats.inputs += 1;
        let result = if self.retired {
            Err(RejectReason::Retired {
                epoch: self.validators.epoch(),
            })
        } else {
            self.dispatch_input(from, input)
        };
        // Votes held earlier and found badly signed during this input are refusals too.
        self.take_bad_votes(None);
        if !self.retired {
            self.arm_timer(now);
        }
        if let Err(reason) = &result {
            self.stats.rejected.count(reason);
            debug!(target: "consensus", replica = self.index, ?from, %reason, "input refused");
        }
        assert!(
            self.transmits.len() <= TRANSMITS_QUEUED_MAX,
            "driver drains transmits"
        );
        assert!(
            self.events.len() <= EVENTS_QUEUED_MAX,
            "driver drains events"
        );
        assert!(
            self.persist.len() <= PERSIST_QUEUED_MAX,
            "driver drains records"
        );
        result
    }

    fn dispatch_input(&mut self, from: Origin, input: ReplicaInput<V>) -> Result<(), RejectReason> {
        match input {
            ReplicaInput::Message(bytes) => match Message::from_wire(&bytes) {
                Ok(message) => self.handle_message(from, message),
                Err(error) => Err(RejectReason::Decode(error)),
            },
            ReplicaInput::Decoded(message) => self.handle_message(from, message),
            ReplicaInput::Propose(value) => self.handle_propose(from, value),
            ReplicaInput::Backlog(backlog) => {
                if from == Origin::Local {
                    self.backlog = backlog;
                    Ok(())
                } else {
                    Err(RejectReason::WrongOrigin { what: "backlog" })
                }
            }
            ReplicaInput::Verified {
                sequence,
                digest,
                valid,
            } => self.handle_verified(from, sequence, digest, valid),
            ReplicaInput::NextEpoch(next) => {
                if from == Origin::Local {
                    self.handle_next_epoch(next)
                } else {
                    Err(RejectReason::WrongOrigin { what: "next epoch" })
                }
            }
        }
    }

    /// The next record to make durable (see [`crate::persist`]). Drain it until `None` after
    /// every input and timeout, and make what it gave durable, **before** draining
    /// [`Machine::poll_transmit`] and [`Machine::poll_event`]: those messages promise what the
    /// records hold. Always `None` on a replica built with [`Replica::new`].
    pub fn poll_persist(&mut self) -> Option<Record<V>> {
        self.persist.pop_front()
    }

    /// Whether this replica records what it promises (built with [`Replica::restore`]).
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Queues `record` for the driver to make durable, on a durable replica.
    fn record(&mut self, record: impl FnOnce() -> Record<V>) {
        if self.durable {
            self.persist.push_back(record());
        }
    }

    fn handle_propose(&mut self, from: Origin, value: V) -> Result<(), RejectReason> {
        if from != Origin::Local {
            return Err(RejectReason::WrongOrigin { what: "proposal" });
        }
        if !self.active {
            return Err(RejectReason::ViewChanging { view: self.view });
        }
        if !self.is_primary() {
            return Err(RejectReason::NotPrimary {
                view: self.view,
                index: self.index,
            });
        }
        let sequence = self.next_sequence;
        if sequence > self.high_watermark() {
            return Err(RejectReason::WindowFull {
                sequence,
                high: self.high_watermark(),
            });
        }
        assert!(
            sequence > self.low_watermark,
            "the primary proposes above the window"
        );
        let digest = value.digest();
        let pre_prepare = PrePrepare::new(&self.operator, self.view, sequence, value);
        self.record(|| Record::Proposal(pre_prepare.clone()));
        self.broadcast(&Message::PrePrepare(pre_prepare.clone()));
        let slot = self.slots.entry(sequence).or_default();
        assert!(
            slot.proposal.is_none(),
            "one proposal per sequence and view"
        );
        slot.proposal = Some(Proposal {
            pre_prepare,
            digest,
            verdict: Verdict::Own,
        });
        self.next_sequence += 1;
        self.stats.proposals += 1;
        debug!(target: "consensus", replica = self.index, sequence, %digest, "proposed");
        self.advance(sequence);
        Ok(())
    }

    fn handle_verified(
        &mut self,
        from: Origin,
        sequence: u64,
        digest: B256,
        valid: bool,
    ) -> Result<(), RejectReason> {
        if from != Origin::Local {
            return Err(RejectReason::WrongOrigin { what: "verdict" });
        }
        if !self.active {
            // The new view proposes again whatever may be decided, and asks again.
            return Err(RejectReason::ViewChanging { view: self.view });
        }
        let proposal = self
            .slots
            .get_mut(&sequence)
            .and_then(|slot| slot.proposal.as_mut())
            .filter(|proposal| proposal.digest == digest && proposal.verdict == Verdict::Pending)
            .ok_or(RejectReason::UnexpectedVerdict { sequence })?;
        if !valid {
            proposal.verdict = Verdict::Invalid;
            self.stats.values_refused += 1;
            warn!(target: "consensus", replica = self.index, sequence, %digest, "value refused");
            return Ok(());
        }
        proposal.verdict = Verdict::Valid;
        let pre_prepare = self.durable.then(|| proposal.pre_prepare.clone());
        self.stats.values_accepted += 1;
        if let Some(pre_prepare) = pre_prepare {
            self.record(|| Record::Proposal(pre_prepare));
        }
        let vote = Vote::prepare(&self.operator, self.view, sequence, digest, self.index);
        self.broadcast(&Message::Prepare(vote.clone()));
        self.stats.prepares_sent += 1;
        let slot = self
            .slots
            .get_mut(&sequence)
            .expect("the slot was just read");
        let previous = slot.prepares.insert(
            self.index,
            Held {
                vote,
                verified: true,
            },
        );
        assert!(
            previous.is_none(),
            "a replica prepares once per sequence and view"
        );
        self.advance(sequence);
        Ok(())
    }

    fn handle_message(&mut self, from: Origin, message: Message<V>) -> Result<(), RejectReason> {
        let Origin::Peer(id) = from else {
            return Err(RejectReason::WrongOrigin {
                what: "peer message",
            });
        };
        let Some(sender) = self.validators.index_of(&id) else {
            let left = self
                .previous
                .as_ref()
                .is_some_and(|previous| previous.index_of(&id).is_some());
            return Err(if left {
                RejectReason::LeftValidatorSet {
                    from: id,
                    epoch: self.validators.epoch(),
                }
            } else {
                RejectReason::NotValidator { from: id }
            });
        };
        let sender = u16::try_from(sender).expect("validator indices fit u16");
        if sender == self.index {
            return Err(RejectReason::WrongOrigin {
                what: "message from this replica itself",
            });
        }
        trace!(target: "consensus", replica = self.index, sender, kind = message.kind(),
            sequence = message.sequence(), "message");
        let view = match &message {
            Message::ViewChange(view_change) => Some(view_change.view),
            Message::NewView(new_view) => Some(new_view.view),
            other => normal_case_view(other),
        };
        if let Some(view) = view
            && view >= crate::validator::epoch_first_view(self.validators.epoch() + 1)
        {
            // A later epoch's: signed by a set this replica does not hold yet.
            return Err(RejectReason::FutureView {
                view,
                current: self.view,
            });
        }
        if let Some(view) = normal_case_view(&message)
            && (view > self.view || !self.active)
        {
            return self.buffer_future(sender, view, message);
        }
        self.dispatch(id, sender, message)
    }

    fn dispatch(
        &mut self,
        id: NodeId,
        sender: u16,
        message: Message<V>,
    ) -> Result<(), RejectReason> {
        match message {
            Message::PrePrepare(pre_prepare) => self.handle_pre_prepare(sender, pre_prepare),
            Message::Prepare(vote) => self.handle_vote(VoteKind::Prepare, id, sender, vote),
            Message::Commit(vote) => self.handle_vote(VoteKind::Commit, id, sender, vote),
            Message::Checkpoint(checkpoint) => self.handle_checkpoint(id, sender, checkpoint),
            Message::ViewChange(view_change) => self.handle_view_change(sender, view_change),
            Message::NewView(new_view) => self.handle_new_view(sender, new_view),
            Message::Fetch { from } => self.handle_fetch(sender, from),
            Message::Decided(decided) => self.handle_decided(sender, decided),
        }
    }

    /// Holds a normal-case message for a view this replica has not entered: the next view, or
    /// the one it is changing to. Other replicas may enter a view before this one does, and
    /// what they send then would otherwise be lost. Bounded per sender.
    fn buffer_future(
        &mut self,
        sender: u16,
        view: u64,
        message: Message<V>,
    ) -> Result<(), RejectReason> {
        let current = self.view;
        if view > current + 1 || (view == current && self.active) {
            self.note_future_view(sender, view);
            return Err(RejectReason::FutureView { view, current });
        }
        if view < current {
            return Err(RejectReason::OldView { view, current });
        }
        let held = self.future.entry(sender).or_default();
        if held.len() >= FUTURE_PER_SENDER_MAX {
            held.pop_front();
        }
        held.push_back(message);
        self.stats.messages_buffered += 1;
        Ok(())
    }

    fn handle_pre_prepare(
        &mut self,
        sender: u16,
        pre_prepare: PrePrepare<V>,
    ) -> Result<(), RejectReason> {
        self.check_view(pre_prepare.view)?;
        let primary = self.validators.primary_index(pre_prepare.view);
        if usize::from(sender) != primary {
            return Err(RejectReason::NotPrimary {
                view: pre_prepare.view,
                index: sender,
            });
        }
        let sequence = pre_prepare.sequence;
        self.check_window(sequence)?;
        let Some(value) = pre_prepare.value.clone() else {
            return Err(RejectReason::InvalidProof {
                what: "pre-prepare",
                why: "a null outside a new view",
            });
        };
        let digest = pre_prepare.digest();
        if let Some(proposal) = self
            .slots
            .get(&sequence)
            .and_then(|slot| slot.proposal.as_ref())
        {
            if proposal.digest == digest {
                return Err(RejectReason::Duplicate {
                    what: "pre-prepare",
                    sequence,
                });
            }
            let first = Signed {
                digest: proposal.digest,
                signature: PbftSignature::Operator(proposal.pre_prepare.signature),
            };
            return self.conflicting_pre_prepare(sequence, first, &pre_prepare, digest);
        }
        self.stats.signature_checks += 1;
        pre_prepare.verify(&self.validators, &digest)?;
        // Past every check: from here on the message is accepted.
        self.events
            .push_back(ReplicaEvent::Verify { sequence, value });
        let slot = self.slots.entry(sequence).or_default();
        slot.proposal = Some(Proposal {
            pre_prepare,
            digest,
            verdict: Verdict::Pending,
        });
        self.stats.pre_prepares_accepted += 1;
        self.advance(sequence);
        Ok(())
    }

    /// A second pre-prepare for a slot, with another digest: refused, and if its signature is
    /// the primary's, evidence of equivocation (once per slot).
    fn conflicting_pre_prepare(
        &mut self,
        sequence: u64,
        first: Signed,
        pre_prepare: &PrePrepare<V>,
        digest: B256,
    ) -> Result<(), RejectReason> {
        let view = pre_prepare.view;
        let primary = self.validators.primary_index(view);
        let offender = u16::try_from(primary).expect("validator indices fit u16");
        let reported = self.slots.get(&sequence).is_some_and(|slot| {
            slot.evidence
                .contains(&(EvidenceKind::PrePrepare, offender))
        });
        if !reported {
            self.stats.signature_checks += 1;
            pre_prepare.verify(&self.validators, &digest)?;
            let second = Signed {
                digest,
                signature: PbftSignature::Operator(pre_prepare.signature),
            };
            let evidence = Evidence::new(
                EvidenceKind::PrePrepare,
                offender,
                view,
                sequence,
                first,
                second,
            );
            self.emit_evidence(evidence);
        }
        Err(RejectReason::Conflicting {
            what: "pre-prepare",
            sequence,
        })
    }

    /// A prepare or a commit. Past the cheap checks it is held unverified; its signature is
    /// checked when a quorum would count it (see [`Replica::verified_quorum`]).
    fn handle_vote(
        &mut self,
        kind: VoteKind,
        id: NodeId,
        sender: u16,
        vote: Vote,
    ) -> Result<(), RejectReason> {
        self.check_vote(id, sender, &vote)?;
        if kind == VoteKind::Prepare
            && usize::from(sender) == self.validators.primary_index(vote.view)
        {
            return Err(RejectReason::PrepareFromPrimary { view: vote.view });
        }
        let sequence = vote.sequence;
        let previous = self
            .slots
            .get(&sequence)
            .and_then(|slot| slot.votes(kind).get(&sender))
            .cloned();
        if let Some(previous) = previous {
            if previous.vote.digest == vote.digest {
                return Err(RejectReason::Duplicate {
                    what: kind.name(),
                    sequence,
                });
            }
            if !self.conflicting_vote(kind, previous, &vote)? {
                return Err(RejectReason::Conflicting {
                    what: kind.name(),
                    sequence,
                });
            }
            // The vote held before was badly signed and is gone: this one takes its place.
        }
        let previous = self
            .slots
            .entry(sequence)
            .or_default()
            .votes_mut(kind)
            .insert(
                sender,
                Held {
                    vote,
                    verified: false,
                },
            );
        assert!(previous.is_none(), "one vote per voter, kind and slot");
        self.advance(sequence);
        if self.take_bad_votes(Some((kind, sequence, sender))) {
            return Err(RejectReason::BadSignature);
        }
        self.stats.votes_held += 1;
        Ok(())
    }

    /// A vote that contradicts the one `previous` held from the same voter. Returns whether the
    /// previous one turned out badly signed (and was removed); otherwise the new one is refused
    /// (a bad signature, or a conflict), and when both verify, evidence is emitted once.
    fn conflicting_vote(
        &mut self,
        kind: VoteKind,
        previous: Held,
        vote: &Vote,
    ) -> Result<bool, RejectReason> {
        let (sequence, voter) = (vote.sequence, vote.replica);
        if !previous.verified {
            let good = self.verify_vote(kind, &previous.vote).is_ok();
            let slot = self.slots.get_mut(&sequence).expect("the vote is held");
            let votes = slot.votes_mut(kind);
            if !good {
                // Counted here, not with this input's own outcome: the new vote goes on.
                votes.remove(&voter);
                self.stats.rejected.count(&RejectReason::BadSignature);
                return Ok(true);
            }
            votes.get_mut(&voter).expect("the vote is held").verified = true;
        }
        let evidence_kind = match kind {
            VoteKind::Prepare => EvidenceKind::Prepare,
            VoteKind::Commit => EvidenceKind::Commit,
        };
        let reported = self
            .slots
            .get(&sequence)
            .is_some_and(|slot| slot.evidence.contains(&(evidence_kind, voter)));
        if !reported {
            self.verify_vote(kind, vote)?;
            let signed = |vote: &Vote| Signed {
                digest: vote.digest,
                signature: vote.signature,
            };
            let evidence = Evidence::new(
                evidence_kind,
                voter,
                vote.view,
                sequence,
                signed(&previous.vote),
                signed(vote),
            );
            self.emit_evidence(evidence);
        }
        Ok(false)
    }

    /// Queues `evidence` and remembers it was emitted for its slot.
    fn emit_evidence(&mut self, evidence: Evidence) {
        warn!(target: "consensus", replica = self.index, offender = evidence.offender,
            kind = ?evidence.kind, sequence = evidence.sequence, "equivocation");
        let fresh = self
            .slots
            .entry(evidence.sequence)
            .or_default()
            .evidence
            .insert((evidence.kind, evidence.offender));
        assert!(
            fresh,
            "evidence is emitted once per offender, kind and slot"
        );
        self.stats.evidence += 1;
        self.events.push_back(ReplicaEvent::Evidence(evidence));
    }

    /// Checks one vote's signature against its voter's key: a recovery for a prepare, a pairing
    /// check for a commit.
    fn verify_vote(&mut self, kind: VoteKind, vote: &Vote) -> Result<(), RejectReason> {
        self.stats.signature_checks += 1;
        match kind {
            VoteKind::Prepare => vote.verify_prepare(&self.validators),
            VoteKind::Commit => vote.verify_commit(&self.validators),
        }
    }

    /// Checks the signatures of `votes` (commits for one view, sequence and digest) with one
    /// aggregate verification: `fast_aggregate_verify` over the voters' keys.
    fn verify_aggregate(&mut self, votes: &[Vote]) -> bool {
        assert!(votes.len() >= 2, "an aggregate covers several votes");
        let first = &votes[0];
        assert!(
            votes.iter().all(|vote| vote.view == first.view
                && vote.sequence == first.sequence
                && vote.digest == first.digest),
            "an aggregate covers votes on one message"
        );
        self.stats.signature_checks += 1;
        self.stats.signature_checks_aggregate += 1;
        let message = commit_message(first.view, first.sequence, &first.digest);
        let Some(signatures) = votes
            .iter()
            .map(|vote| Some((usize::from(vote.replica), vote.bls_signature()?)))
            .collect::<Option<Vec<(usize, BlsSignature)>>>()
        else {
            return false;
        };
        let Ok(aggregate) = Certificate::aggregate(&signatures) else {
            return false;
        };
        let hashed = self.hashed(&message);
        self.validators
            .verify_certificate_hashed(&aggregate, &message, &hashed, votes.len())
            .is_ok()
    }

    /// This replica's commit (`message` is its [`commit_message`]) for `digest` at `sequence`
    /// in the current view.
    fn own_commit(&mut self, message: &[u8], sequence: u64, digest: B256) -> Vote {
        if let Some(position) = self
            .presigned
            .iter()
            .position(|(bytes, _)| bytes == message)
            && let Some((_, signature)) = self.presigned.remove(position)
        {
            return Vote {
                view: self.view,
                sequence,
                digest,
                replica: self.index,
                signature: PbftSignature::Bls(signature),
            };
        }
        let hashed = self.hashed(message);
        Vote::signed_over(
            &self.secret,
            &hashed,
            self.view,
            sequence,
            digest,
            self.index,
        )
    }

    /// Signs ahead the commit this replica will send for the lowest slot of the current view
    /// it stands behind (as primary or as a backup that checked the proposal) and has not yet
    /// committed to, so that when a quorum prepares, the commit goes out after the quorum's
    /// check alone instead of after a signature too. A driver calls it when no input waits;
    /// each call signs at most one message (about a millisecond) and returns whether it did,
    /// and no more than [`PRESIGNED_MAX`] are held signed ahead.
    ///
    /// It changes nothing a peer or the log can see: a BLS signature is deterministic, so the
    /// commit sent later is the one this replica would have signed then, and a commit signed
    /// for a slot that never prepares is never sent.
    pub fn presign(&mut self) -> bool {
        if !self.active {
            return false;
        }
        let view = self.view;
        // The lowest slots only, so that a new view standing behind a whole window signs a
        // bounded number ahead and then stops, instead of evicting and re-signing forever.
        let wanted: Vec<Vec<u8>> = self
            .slots
            .iter()
            .filter_map(|(sequence, slot)| {
                let proposal = slot.proposal.as_ref()?;
                (!slot.commit_sent
                    && slot.certificate.is_none()
                    && slot.stands_behind()
                    && proposal.pre_prepare.view == view)
                    .then(|| commit_message(view, *sequence, &proposal.digest))
            })
            .take(PRESIGNED_MAX)
            .collect();
        self.presigned.retain(|(bytes, _)| wanted.contains(bytes));
        let Some(message) = wanted
            .into_iter()
            .find(|message| !self.presigned.iter().any(|(bytes, _)| bytes == message))
        else {
            return false;
        };
        let hashed = self.hashed(&message);
        let signature = self.secret.sign_hashed(&hashed);
        self.presigned.push_back((message, signature));
        true
    }

    /// `message` hashed to the curve, from the cache if this replica hashed it lately.
    fn hashed(&mut self, message: &[u8]) -> HashedMessage {
        if let Some((_, hashed)) = self.hashed.iter().find(|(bytes, _)| bytes == message) {
            return hashed.clone();
        }
        let hashed = HashedMessage::new(message);
        if self.hashed.len() == HASHED_MESSAGES_MAX {
            self.hashed.pop_front();
        }
        self.hashed.push_back((message.to_vec(), hashed.clone()));
        hashed
    }

    /// The voters of `needed` votes of `kind` for `digest` at `sequence`, every one of them
    /// verified, or `None` if there are not that many good ones.
    ///
    /// Verified votes are taken first; the unverified ones needed to fill the quorum are checked
    /// in one aggregate verification. If it fails they are checked one by one: the bad ones are
    /// removed (and counted as refused when the input ends), the good ones marked, and the
    /// quorum is looked for again among what is left.
    fn verified_quorum(
        &mut self,
        sequence: u64,
        kind: VoteKind,
        digest: B256,
        needed: usize,
    ) -> Option<Vec<u16>> {
        // Every round that does not return verifies or removes at least one vote.
        for _ in 0..=2 * self.validators.n() {
            let votes = self.slots.get(&sequence)?.votes(kind);
            let chosen = quorum_candidates(votes, &digest, needed)?;
            let unverified: Vec<Vote> = chosen
                .iter()
                .map(|voter| &votes[voter])
                .filter(|held| !held.verified)
                .map(|held| held.vote.clone())
                .collect();
            // Commits whose signatures the set already knows good need no check.
            let (known, unverified): (Vec<Vote>, Vec<Vote>) =
                unverified.into_iter().partition(|vote| {
                    vote.bls_signature().is_some_and(|signature| {
                        self.validators.knows_signed(
                            usize::from(vote.replica),
                            &commit_message(vote.view, vote.sequence, &vote.digest),
                            &signature,
                        )
                    })
                });
            if !known.is_empty() {
                let votes = self.slots.get_mut(&sequence)?.votes_mut(kind);
                for vote in &known {
                    votes
                        .get_mut(&vote.replica)
                        .expect("chosen from the log")
                        .verified = true;
                }
            }
            if unverified.is_empty() {
                return Some(chosen);
            }
            // Prepares are checked one by one (a recovery each costs less than the aggregation
            // would), commits in one aggregate check.
            if kind == VoteKind::Commit
                && unverified.len() >= 2
                && self.verify_aggregate(&unverified)
            {
                let votes = self.slots.get_mut(&sequence)?.votes_mut(kind);
                for vote in &unverified {
                    votes
                        .get_mut(&vote.replica)
                        .expect("chosen from the log")
                        .verified = true;
                }
                return Some(chosen);
            }
            for vote in &unverified {
                let good = self.verify_vote(kind, vote).is_ok();
                let votes = self.slots.get_mut(&sequence)?.votes_mut(kind);
                if good {
                    votes
                        .get_mut(&vote.replica)
                        .expect("chosen from the log")
                        .verified = true;
                } else {
                    warn!(target: "consensus", replica = self.index, voter = vote.replica,
                        sequence, kind = kind.name(), "badly signed vote dropped");
                    votes.remove(&vote.replica);
                    self.bad_votes.push((kind, sequence, vote.replica));
                }
            }
        }
        unreachable!("each round verifies or removes a vote, and a slot holds at most n");
    }

    /// Counts the held votes found badly signed during this input as refusals, except `current`
    /// (the vote this input brought), whose refusal the input itself reports. Returns whether
    /// `current` was among them.
    fn take_bad_votes(&mut self, current: Option<(VoteKind, u64, u16)>) -> bool {
        let mut current_bad = false;
        for bad in std::mem::take(&mut self.bad_votes) {
            if Some(bad) == current && !current_bad {
                current_bad = true;
            } else {
                self.stats.rejected.count(&RejectReason::BadSignature);
            }
        }
        current_bad
    }

    fn handle_checkpoint(
        &mut self,
        id: NodeId,
        sender: u16,
        checkpoint: Checkpoint,
    ) -> Result<(), RejectReason> {
        if checkpoint.replica != sender {
            return Err(RejectReason::WrongSender {
                from: id,
                claimed: checkpoint.replica,
            });
        }
        let sequence = checkpoint.sequence;
        if !sequence.is_multiple_of(CHECKPOINT_INTERVAL) {
            return Err(RejectReason::NotCheckpoint { sequence });
        }
        if sequence > self.high_watermark() {
            return self.claim_checkpoint(sender, checkpoint);
        }
        self.check_window(sequence)?;
        let votes = self.checkpoint_votes.get(&sequence);
        if let Some(previous) = votes.and_then(|votes| votes.get(&sender)) {
            return Err(if previous.history == checkpoint.history {
                RejectReason::Duplicate {
                    what: "checkpoint",
                    sequence,
                }
            } else {
                RejectReason::Conflicting {
                    what: "checkpoint",
                    sequence,
                }
            });
        }
        self.stats.signature_checks += 1;
        checkpoint.verify(&self.validators)?;
        if sequence > self.last_committed {
            self.note_claim(sender, sequence);
        }
        self.checkpoint_votes
            .entry(sequence)
            .or_default()
            .insert(sender, checkpoint);
        self.try_stabilize(sequence);
        Ok(())
    }

    /// The checks every prepare and commit passes before its signature is checked.
    fn check_vote(&self, id: NodeId, sender: u16, vote: &Vote) -> Result<(), RejectReason> {
        if vote.replica != sender {
            return Err(RejectReason::WrongSender {
                from: id,
                claimed: vote.replica,
            });
        }
        self.check_view(vote.view)?;
        self.check_window(vote.sequence)
    }

    fn check_view(&self, view: u64) -> Result<(), RejectReason> {
        let current = self.view;
        match view.cmp(&current) {
            std::cmp::Ordering::Less => Err(RejectReason::OldView { view, current }),
            std::cmp::Ordering::Greater => Err(RejectReason::FutureView { view, current }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    fn check_window(&self, sequence: u64) -> Result<(), RejectReason> {
        let (low, high) = (self.low_watermark, self.high_watermark());
        if sequence <= low || sequence > high {
            return Err(RejectReason::OutsideWindow {
                sequence,
                low,
                high,
            });
        }
        Ok(())
    }

    /// Takes the slot at `sequence` as far as its votes allow: commit once prepared, decide once
    /// a quorum commits, then emit every decided sequence that is next in order.
    fn advance(&mut self, sequence: u64) {
        let quorum = self.validators.quorum();
        let Some(slot) = self.slots.get(&sequence) else {
            return;
        };
        let Some(digest) = slot.proposal.as_ref().map(|proposal| proposal.digest) else {
            return; // Votes wait for the pre-prepare, unverified.
        };
        if !slot.commit_sent
            && slot.stands_behind()
            && let Some(preparers) =
                self.verified_quorum(sequence, VoteKind::Prepare, digest, quorum - 1)
        {
            self.record_prepared(sequence, &preparers);
            self.send_commit(sequence, digest);
        }
        let decided = self
            .slots
            .get(&sequence)
            .is_some_and(|slot| slot.certificate.is_some());
        if !decided
            && let Some(voters) = self.verified_quorum(sequence, VoteKind::Commit, digest, quorum)
        {
            let slot = self
                .slots
                .get_mut(&sequence)
                .expect("the slot is still there");
            let votes: Vec<(usize, BlsSignature)> = voters
                .iter()
                .map(|voter| {
                    let signature = slot.commits[voter]
                        .vote
                        .bls_signature()
                        .expect("a verified commit is BLS-signed");
                    (usize::from(*voter), signature)
                })
                .collect();
            let certificate =
                Certificate::aggregate(&votes).expect("verified signatures aggregate");
            assert!(certificate.signers.count() == quorum, "one vote per signer");
            slot.certificate = Some((self.view, certificate));
        }
        self.emit_committed();
    }

    /// Keeps the proof that this replica prepared the slot's value in the current view: the
    /// pre-prepare and the `preparers`' verified prepares.
    fn record_prepared(&mut self, sequence: u64, preparers: &[u16]) {
        if preparers.is_empty() {
            return; // A lone validator: no view change can ever need the proof.
        }
        let slot = self
            .slots
            .get_mut(&sequence)
            .expect("a prepared slot is in the log");
        let mut prepares: Vec<PrepareSignature> = preparers
            .iter()
            .map(|voter| {
                let signature = slot.prepares[voter].vote.signature.operator();
                PrepareSignature {
                    replica: *voter,
                    signature: signature.expect("a verified prepare is signed by an operator key"),
                }
            })
            .collect();
        prepares.sort_by_key(|prepare| prepare.replica);
        let pre_prepare = slot
            .proposal
            .as_ref()
            .expect("a prepared slot has a proposal")
            .pre_prepare
            .clone();
        let proof = PreparedProof {
            pre_prepare,
            prepares,
        };
        slot.prepared = Some(proof.clone());
        self.record(|| Record::Prepared(proof));
    }

    /// Broadcasts this replica's commit for the prepared `digest` at `sequence`.
    fn send_commit(&mut self, sequence: u64, digest: B256) {
        let vote = self.own_commit(
            &commit_message(self.view, sequence, &digest),
            sequence,
            digest,
        );
        let slot = self
            .slots
            .get_mut(&sequence)
            .expect("a prepared slot is in the log");
        let proposal = slot
            .proposal
            .as_ref()
            .expect("a prepared slot has a proposal");
        assert!(
            proposal.pre_prepare.view == self.view,
            "the log holds the current view"
        );
        assert!(proposal.digest == digest, "the commit names the proposal");
        slot.commit_sent = true;
        let held = Held {
            vote: vote.clone(),
            verified: true,
        };
        if let Some(previous) = slot.commits.insert(self.index, held) {
            unreachable!("a replica commits once per sequence: {previous:?}");
        }
        self.stats.commits_sent += 1;
        self.broadcast(&Message::Commit(vote));
    }

    /// Emits decided values in sequence order, and a checkpoint at every interval.
    fn emit_committed(&mut self) {
        loop {
            let sequence = self.last_committed + 1;
            let Some(slot) = self.slots.get(&sequence) else {
                return;
            };
            let (Some(proposal), Some((view, certificate))) = (&slot.proposal, &slot.certificate)
            else {
                return;
            };
            let entry = DecidedEntry {
                sequence,
                view: *view,
                value: proposal.pre_prepare.value.clone(),
                certificate: certificate.clone(),
            };
            self.deliver(entry);
        }
    }

    /// Hands the decided entry at `last_committed + 1` to the owner, keeps it for peers that
    /// fall behind, and checkpoints at every interval.
    fn deliver(&mut self, entry: DecidedEntry<V>) {
        let sequence = entry.sequence;
        assert!(sequence == self.last_committed + 1, "delivered in order");
        let digest = entry.digest();
        self.history = chain_history(&self.history, sequence, &digest);
        self.last_committed = sequence;
        self.next_sequence = self.next_sequence.max(sequence + 1);
        self.views_without_progress = 0;
        self.stats.committed += 1;
        debug!(target: "consensus", replica = self.index, sequence, %digest, "committed");
        self.events.push_back(ReplicaEvent::Committed {
            sequence,
            view: entry.view,
            value: entry.value.clone(),
            certificate: entry.certificate.clone(),
        });
        if self.durable {
            self.persist.push_back(Record::Decided(entry.clone()));
        }
        self.decided.insert(sequence, entry);
        if sequence.is_multiple_of(CHECKPOINT_INTERVAL) {
            if sequence > self.low_watermark {
                self.send_checkpoint(sequence);
            } else if let Some((adopted, history)) = self.adopted_history
                && adopted == sequence
            {
                // Caught up to a checkpoint adopted from a new view: the histories must agree.
                if history != self.history {
                    self.stats.checkpoints_diverged += 1;
                    warn!(target: "consensus", replica = self.index, sequence,
                        "history differs from the adopted stable checkpoint");
                }
                self.adopted_history = None;
            }
        }
        self.maybe_enter_epoch();
    }

    fn send_checkpoint(&mut self, sequence: u64) {
        assert!(
            sequence == self.last_committed,
            "a checkpoint covers what was committed"
        );
        let checkpoint = Checkpoint::new(&self.secret, sequence, self.history, self.index);
        self.checkpoint_histories.insert(sequence, self.history);
        self.broadcast(&Message::Checkpoint(checkpoint.clone()));
        self.stats.checkpoints_sent += 1;
        let previous = self
            .checkpoint_votes
            .entry(sequence)
            .or_default()
            .insert(self.index, checkpoint);
        assert!(previous.is_none(), "a replica checkpoints a sequence once");
        self.try_stabilize(sequence);
    }

    /// Makes the checkpoint at `sequence` stable if this replica reached it and a quorum agrees
    /// with its history; then moves the window up and discards the log at and below it.
    fn try_stabilize(&mut self, sequence: u64) {
        let Some(own) = self.checkpoint_histories.get(&sequence).copied() else {
            return; // Not reached yet: the votes wait, bounded by the window.
        };
        let votes = self
            .checkpoint_votes
            .get(&sequence)
            .expect("own vote is recorded");
        let agreeing = votes.values().filter(|vote| vote.history == own).count();
        let quorum = self.validators.quorum();
        if agreeing < quorum {
            let disagreeing = votes.len() - agreeing;
            if disagreeing >= quorum {
                self.stats.checkpoints_diverged += 1;
                warn!(target: "consensus", replica = self.index, sequence,
                    "a quorum's checkpoint history differs from this replica's");
            }
            return;
        }
        assert!(
            sequence > self.low_watermark,
            "stable checkpoints only move up"
        );
        assert!(
            sequence <= self.last_committed,
            "stable only once committed here"
        );
        self.stable_proof = votes
            .values()
            .filter(|vote| vote.history == own)
            .cloned()
            .collect();
        self.low_watermark = sequence;
        self.record_stable(own);
        self.discard_below_watermark();
        self.stats.checkpoints_stable += 1;
        debug!(target: "consensus", replica = self.index, sequence, "checkpoint stable");
    }

    /// Records the stable checkpoint just taken (at the low watermark, with `history`).
    pub(crate) fn record_stable(&mut self, history: B256) {
        if self.durable {
            self.persist.push_back(Record::Stable {
                sequence: self.low_watermark,
                history,
                proof: self.stable_proof.clone(),
            });
        }
    }

    /// Discards the log at and below the low watermark, and the decided entries more than
    /// `DECIDED_RETAINED` below it.
    fn discard_below_watermark(&mut self) {
        let sequence = self.low_watermark;
        self.slots = self.slots.split_off(&(sequence + 1));
        self.checkpoint_votes = self.checkpoint_votes.split_off(&(sequence + 1));
        self.checkpoint_histories = self.checkpoint_histories.split_off(&(sequence + 1));
        let retained_from = sequence.saturating_sub(DECIDED_RETAINED) + 1;
        self.decided = self.decided.split_off(&retained_from);
    }

    /// Queues `message` for every other validator.
    fn broadcast(&mut self, message: &Message<V>) {
        self.remember_own(message);
        let bytes = message.to_bytes();
        for (index, validator) in self.validators.validators().iter().enumerate() {
            if index != self.index() {
                self.transmits.push_back(Transmit {
                    to: validator.id,
                    bytes: bytes.clone(),
                });
            }
        }
    }
}

impl<V: Value> Replica<V> {
    /// Records the signatures of a message this replica signed, which it is about to send: in a
    /// process that runs many replicas over one shared signature memory (the seeded world),
    /// receivers then skip the pairing check of what a correct replica signed. A byzantine
    /// replica's messages, forged outside this path, are still checked.
    fn remember_own(&self, message: &Message<V>) {
        if !self.validators.shares_memory() {
            // A node alone never receives its own messages: skip the digests and hashing.
            return;
        }
        let me = self.index();
        let validators = &self.validators;
        // Pre-prepares and prepares are signed by operator keys, whose check costs too little to
        // remember.
        match message {
            Message::Commit(vote) if usize::from(vote.replica) == me => {
                if let Some(signature) = vote.bls_signature() {
                    let bytes = commit_message(vote.view, vote.sequence, &vote.digest);
                    validators.remember_signed(me, &bytes, &signature);
                }
            }
            Message::Checkpoint(checkpoint) if usize::from(checkpoint.replica) == me => {
                let bytes = checkpoint_message(checkpoint.sequence, &checkpoint.history);
                validators.remember_signed(me, &bytes, &checkpoint.signature);
            }
            Message::ViewChange(view_change) if usize::from(view_change.replica) == me => {
                validators.remember_signed(
                    me,
                    &view_change.signed_message(),
                    &view_change.signature,
                );
            }
            Message::NewView(new_view) if validators.primary_index(new_view.view) == me => {
                validators.remember_signed(me, &new_view.signed_message(), &new_view.signature);
            }
            _ => {}
        }
    }
}

/// View changes kept per sender: its latest few views, so that a replica that moved on can still
/// hand its view change for an earlier view to one that lost it.
const VIEW_CHANGES_PER_SENDER: usize = 4;

/// Most normal-case messages held per sender for a view not yet entered: a window's worth of
/// pre-prepares, prepares and commits.
const FUTURE_PER_SENDER_MAX: usize = 3 * SEQUENCE_WINDOW as usize;

/// Vote messages a replica keeps hashed: a few slots' prepares and commits in flight.
const HASHED_MESSAGES_MAX: usize = 16;

/// Most records queued before the driver drains them: a window's proposals, prepared proofs and
/// decided entries, and the view and stable checkpoint records, twice over.
const PERSIST_QUEUED_MAX: usize = 8 * SEQUENCE_WINDOW as usize;

/// The view of a normal-case message (pre-prepare, prepare, commit); `None` for the others.
fn normal_case_view<V>(message: &Message<V>) -> Option<u64> {
    match message {
        Message::PrePrepare(pre_prepare) => Some(pre_prepare.view),
        Message::Prepare(vote) | Message::Commit(vote) => Some(vote.view),
        _ => None,
    }
}

impl<V: Value> Machine for Replica<V> {
    type Input = ReplicaInput<V>;
    type Event = ReplicaEvent<V>;

    fn handle(&mut self, now: Instant, from: Origin, input: ReplicaInput<V>) {
        // Refusals are counted in `stats()` and logged by `step`; the driver has nothing to do.
        let _ = self.step(now, from, input);
    }

    fn handle_timeout(&mut self, now: Instant) {
        assert!(now >= self.time_last, "time never goes backwards");
        self.time_last = now;
        self.on_timeout(now);
        self.arm_timer(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        assert!(now >= self.time_last, "time never goes backwards");
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timer.map(|(deadline, _)| deadline);
        let fetch = self.fetch.map(|(deadline, _)| deadline);
        match (timer, fetch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_event(&mut self) -> Option<ReplicaEvent<V>> {
        self.events.pop_front()
    }
}
