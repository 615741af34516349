//! The PBFT replica: a sans-IO [`Machine`] that orders values one sequence at a time.

use std::collections::{BTreeMap, VecDeque};

use primitives::{
    B256, Encode, NodeId,
    bls::{BlsSecretKey, BlsSignature, Certificate},
    machine::{Machine, Origin, Transmit},
    time::Instant,
};
use tracing::{debug, trace, warn};

use crate::{
    constants::{CHECKPOINT_INTERVAL, EVENTS_QUEUED_MAX, SEQUENCE_WINDOW, TRANSMITS_QUEUED_MAX},
    error::RejectReason,
    evidence::{Evidence, EvidenceKind, Signed},
    log::{
        CheckpointVotes, Held, Proposal, Slot, Verdict, VoteKind, chain_history, quorum_candidates,
    },
    message::{Checkpoint, Message, PrePrepare, Vote, commit_message, prepare_message},
    stats::ReplicaStats,
    validator::ValidatorSet,
    value::Value,
};

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
        /// The value decided.
        value: V,
        /// A quorum of commit signatures over [`crate::commit_message`]`(sequence, digest)`.
        certificate: Certificate,
    },
    /// A validator signed two conflicting messages for one slot (see [`Evidence`]); both
    /// signatures were checked here. Emitted at most once per offender, kind and slot.
    Evidence(Evidence),
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
///   then [`Machine::poll_timeout`] (always `None` in the normal case: the replica has no timer
///   until view change lands).
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
/// # What comes next
/// - *View change.* The replica already keeps what it needs: each slot keeps the primary's signed
///   pre-prepare and the signed prepares, which aggregate into a prepared certificate
///   ([`crate::prepare_message`] leaves the sender out), and the stable checkpoint's quorum of
///   signed votes. A timer started by a pending `Verify` or an undecided slot, or
///   `Verified { valid: false }`, will broadcast a view-change message carrying them; the new
///   primary's new-view re-proposes the highest prepared value at each open sequence. Commits
///   leave the view out of what they sign, so view change must keep a replica from signing
///   commits for two different digests at one sequence: the new-view must carry any value a
///   replica has commit-voted, and a replica refuses a re-proposal that contradicts its own
///   commit vote.
/// - *State transfer.* A replica that falls more than the window behind (it sees stable
///   checkpoints it cannot reach) will fetch the decided values with their certificates from a
///   peer; certificates make them checkable without trusting that peer.
/// - *Persistence.* Following the house rule, every vote will be preceded by a persist event for
///   the log entry it depends on (pre-prepare accepted, prepare and commit sent), and held until
///   the driver reports it persisted, so that a restarted replica never votes twice differently.
pub struct Replica<V: Value> {
    validators: ValidatorSet,
    /// This replica's index in `validators`.
    index: u16,
    secret: BlsSecretKey,
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
    stats: ReplicaStats,
    /// Held votes found badly signed during the current input, as `(kind, sequence, voter)`:
    /// removed from the log, counted as refusals when the input ends. Empty between inputs.
    bad_votes: Vec<(VoteKind, u64, u16)>,
    /// The latest `now` seen; time never goes backwards.
    time_last: Instant,
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
    /// Replica number `index` of `validators`, signing with `secret`, in view 0 at sequence 0.
    ///
    /// # Panics
    /// If `index` is not in the set or `secret` is not the key the set names for it.
    pub fn new(validators: ValidatorSet, index: usize, secret: BlsSecretKey) -> Self {
        let validator = validators
            .get(index)
            .expect("a replica is a member of its validator set");
        assert!(
            validator.key == secret.public_key(),
            "the secret key matches the validator's public key"
        );
        let index = u16::try_from(index).expect("validator indices fit u16");
        Replica {
            validators,
            index,
            secret,
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
            stats: ReplicaStats::default(),
            bad_votes: Vec::new(),
            time_last: Instant::ZERO,
        }
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
        self.validators.validators()[self.index()].id
    }

    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// Whether this replica is the primary of the current view (and may be given proposals).
    pub fn is_primary(&self) -> bool {
        self.validators.primary_index(self.view) == self.index()
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
    pub fn high_watermark(&self) -> u64 {
        self.low_watermark + SEQUENCE_WINDOW
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
        let result = match input {
            ReplicaInput::Message(bytes) => match Message::from_wire(&bytes) {
                Ok(message) => self.handle_message(from, message),
                Err(error) => Err(RejectReason::Decode(error)),
            },
            ReplicaInput::Decoded(message) => self.handle_message(from, message),
            ReplicaInput::Propose(value) => self.handle_propose(from, value),
            ReplicaInput::Verified {
                sequence,
                digest,
                valid,
            } => self.handle_verified(from, sequence, digest, valid),
        };
        // Votes held earlier and found badly signed during this input are refusals too.
        self.take_bad_votes(None);
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
        result
    }

    fn handle_propose(&mut self, from: Origin, value: V) -> Result<(), RejectReason> {
        if from != Origin::Local {
            return Err(RejectReason::WrongOrigin { what: "proposal" });
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
        let pre_prepare = PrePrepare::new(&self.secret, self.view, sequence, value);
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
        self.stats.values_accepted += 1;
        let vote = Vote::prepare(&self.secret, self.view, sequence, digest, self.index);
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
        let sender = self
            .validators
            .index_of(&id)
            .ok_or(RejectReason::NotValidator { from: id })?;
        let sender = u16::try_from(sender).expect("validator indices fit u16");
        if sender == self.index {
            return Err(RejectReason::WrongOrigin {
                what: "message from this replica itself",
            });
        }
        trace!(target: "consensus", replica = self.index, sender, kind = message.kind(),
            sequence = message.sequence(), "message");
        match message {
            Message::PrePrepare(pre_prepare) => self.handle_pre_prepare(sender, pre_prepare),
            Message::Prepare(vote) => self.handle_vote(VoteKind::Prepare, id, sender, vote),
            Message::Commit(vote) => self.handle_vote(VoteKind::Commit, id, sender, vote),
            Message::Checkpoint(checkpoint) => self.handle_checkpoint(id, sender, checkpoint),
        }
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
        let digest = pre_prepare.value.digest();
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
                signature: proposal.pre_prepare.signature,
            };
            return self.conflicting_pre_prepare(sequence, first, &pre_prepare, digest);
        }
        self.stats.signature_checks += 1;
        pre_prepare.verify(&self.validators.validators()[primary].key, &digest)?;
        // Past every check: from here on the message is accepted.
        self.events.push_back(ReplicaEvent::Verify {
            sequence,
            value: pre_prepare.value.clone(),
        });
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
            pre_prepare.verify(&self.validators.validators()[primary].key, &digest)?;
            let second = Signed {
                digest,
                signature: pre_prepare.signature,
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

    /// Checks one vote's signature against its voter's key (one pairing check).
    fn verify_vote(&mut self, kind: VoteKind, vote: &Vote) -> Result<(), RejectReason> {
        self.stats.signature_checks += 1;
        let key = &self.validators.validators()[usize::from(vote.replica)].key;
        match kind {
            VoteKind::Prepare => vote.verify_prepare(key),
            VoteKind::Commit => vote.verify_commit(key),
        }
    }

    /// Checks the signatures of `votes` (one kind, one view, sequence and digest) with one
    /// aggregate verification: `fast_aggregate_verify` over the voters' keys.
    fn verify_aggregate(&mut self, kind: VoteKind, votes: &[Vote]) -> bool {
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
        let message = match kind {
            VoteKind::Prepare => prepare_message(first.view, first.sequence, &first.digest),
            VoteKind::Commit => commit_message(first.sequence, &first.digest),
        };
        let signatures: Vec<(usize, BlsSignature)> = votes
            .iter()
            .map(|vote| (usize::from(vote.replica), vote.signature))
            .collect();
        let Ok(aggregate) = Certificate::aggregate(&signatures) else {
            return false;
        };
        aggregate
            .verify(&message, &self.validators.keys(), votes.len())
            .is_ok()
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
            if unverified.is_empty() {
                return Some(chosen);
            }
            if unverified.len() >= 2 && self.verify_aggregate(kind, &unverified) {
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
        self.check_window(sequence)?;
        if !sequence.is_multiple_of(CHECKPOINT_INTERVAL) {
            return Err(RejectReason::NotCheckpoint { sequence });
        }
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
        checkpoint.verify(&self.validators.validators()[usize::from(sender)].key)?;
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
            && self
                .verified_quorum(sequence, VoteKind::Prepare, digest, quorum - 1)
                .is_some()
        {
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
                .map(|voter| (usize::from(*voter), slot.commits[voter].vote.signature))
                .collect();
            let certificate =
                Certificate::aggregate(&votes).expect("verified signatures aggregate");
            assert!(certificate.signers.count() == quorum, "one vote per signer");
            slot.certificate = Some(certificate);
        }
        self.emit_committed();
    }

    /// Broadcasts this replica's commit for the prepared `digest` at `sequence`.
    fn send_commit(&mut self, sequence: u64, digest: B256) {
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
        let vote = Vote::commit(&self.secret, self.view, sequence, digest, self.index);
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
            let (Some(proposal), Some(certificate)) = (&slot.proposal, &slot.certificate) else {
                return;
            };
            assert!(
                sequence > self.low_watermark,
                "decided sequences are in the window"
            );
            self.history = chain_history(&self.history, sequence, &proposal.digest);
            self.last_committed = sequence;
            self.stats.committed += 1;
            debug!(target: "consensus", replica = self.index, sequence, digest = %proposal.digest,
                "committed");
            self.events.push_back(ReplicaEvent::Committed {
                sequence,
                value: proposal.pre_prepare.value.clone(),
                certificate: certificate.clone(),
            });
            if sequence.is_multiple_of(CHECKPOINT_INTERVAL) {
                self.send_checkpoint(sequence);
            }
        }
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
        self.slots = self.slots.split_off(&(sequence + 1));
        self.checkpoint_votes = self.checkpoint_votes.split_off(&(sequence + 1));
        self.checkpoint_histories = self.checkpoint_histories.split_off(&(sequence + 1));
        self.stats.checkpoints_stable += 1;
        debug!(target: "consensus", replica = self.index, sequence, "checkpoint stable");
    }

    /// Queues `message` for every other validator.
    fn broadcast(&mut self, message: &Message<V>) {
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
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        assert!(now >= self.time_last, "time never goes backwards");
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn poll_event(&mut self) -> Option<ReplicaEvent<V>> {
        self.events.pop_front()
    }
}
