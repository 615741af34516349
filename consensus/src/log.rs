//! The message log: one slot per sequence of the window, and the checkpoint votes.
//!
//! Everything here is bounded by the window: at most [`SEQUENCE_WINDOW`] slots, each holding at
//! most one prepare and one commit per validator, and at most one checkpoint vote per validator
//! for each checkpoint sequence of the window.
//!
//! [`SEQUENCE_WINDOW`]: crate::constants::SEQUENCE_WINDOW

use std::collections::{BTreeMap, BTreeSet};

use primitives::{B256, bls::Certificate};

use crate::{
    evidence::EvidenceKind,
    message::{Checkpoint, PrePrepare, PreparedProof, Vote},
};

/// What the application said about a proposed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// This replica proposed it, as primary: valid by construction, and never prepared (the
    /// pre-prepare is the primary's vote).
    Own,
    /// `Verify` was emitted; no answer yet.
    Pending,
    /// The application found it valid; this replica has sent its prepare.
    Valid,
    /// The application refused it; this replica will not prepare or commit it.
    Invalid,
}

/// The pre-prepare accepted for a slot.
#[derive(Clone, Debug)]
pub(crate) struct Proposal<V> {
    /// The primary's signed pre-prepare, kept whole: view change carries it as evidence.
    pub(crate) pre_prepare: PrePrepare<V>,
    /// The digest of `pre_prepare.value` ([`crate::message::NULL_DIGEST`] for a null),
    /// computed once.
    pub(crate) digest: B256,
    pub(crate) verdict: Verdict,
}

/// Which of the two votes of the normal case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum VoteKind {
    Prepare,
    Commit,
}

impl VoteKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            VoteKind::Prepare => "prepare",
            VoteKind::Commit => "commit",
        }
    }
}

/// A vote in the log. A vote that passed the cheap checks (member, sender, view, window,
/// duplicate, conflict) is held with `verified: false`; its signature is checked, in aggregate
/// with the other unverified votes of a quorum, only when a quorum would count it.
#[derive(Clone)]
pub(crate) struct Held {
    pub(crate) vote: Vote,
    /// Whether the signature has been checked. A pure function of `vote`, so it is left out of
    /// `Debug` (and of the replica's fingerprint): checking a signature changes no protocol state.
    pub(crate) verified: bool,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.vote, f)
    }
}

/// Votes of one kind at one slot, by validator index.
pub(crate) type Votes = BTreeMap<u16, Held>;

/// Everything the replica knows about one sequence in its current view.
#[derive(Clone, Debug)]
pub(crate) struct Slot<V> {
    pub(crate) proposal: Option<Proposal<V>>,
    /// Prepares by validator index, this replica's own included (never the primary's).
    pub(crate) prepares: Votes,
    /// Commits by validator index, this replica's own included.
    pub(crate) commits: Votes,
    /// Whether this replica has sent its commit.
    pub(crate) commit_sent: bool,
    /// Set once a quorum of commits matches the proposal: the value is decided. With the view
    /// the commits were cast in, which the certificate signs.
    pub(crate) certificate: Option<(u64, Certificate)>,
    /// The proof that this replica prepared the slot's value, from the highest view it did:
    /// kept across views for the view-change messages it sends.
    pub(crate) prepared: Option<PreparedProof<V>>,
    /// Offenders this replica has already emitted equivocation evidence for, at this slot, by
    /// kind of message (at most one piece of evidence per offender and kind).
    pub(crate) evidence: BTreeSet<(EvidenceKind, u16)>,
}

impl<V> Default for Slot<V> {
    fn default() -> Self {
        Slot {
            proposal: None,
            prepares: BTreeMap::new(),
            commits: BTreeMap::new(),
            commit_sent: false,
            certificate: None,
            prepared: None,
            evidence: BTreeSet::new(),
        }
    }
}

impl<V> Slot<V> {
    /// Forgets what belongs to the view being left: the proposal (unless decided, whose value
    /// must still be delivered), the votes, and whether this replica committed. The prepared
    /// proof and the certificate stay.
    pub(crate) fn leave_view(&mut self) {
        if self.certificate.is_none() {
            self.proposal = None;
        }
        self.prepares.clear();
        self.commits.clear();
        self.commit_sent = false;
    }

    /// The votes of `kind`.
    pub(crate) fn votes(&self, kind: VoteKind) -> &Votes {
        match kind {
            VoteKind::Prepare => &self.prepares,
            VoteKind::Commit => &self.commits,
        }
    }

    /// The votes of `kind`, mutably.
    pub(crate) fn votes_mut(&mut self, kind: VoteKind) -> &mut Votes {
        match kind {
            VoteKind::Prepare => &mut self.prepares,
            VoteKind::Commit => &mut self.commits,
        }
    }

    /// Whether this replica stands behind the slot's pre-prepare: its own proposal, or one the
    /// application found valid. Only then may it count prepares towards `prepared`.
    pub(crate) fn stands_behind(&self) -> bool {
        self.proposal
            .as_ref()
            .is_some_and(|proposal| matches!(proposal.verdict, Verdict::Own | Verdict::Valid))
    }
}

/// The voters of `needed` votes for `digest`, verified votes first (then by index), or `None`
/// if fewer than `needed` votes match.
pub(crate) fn quorum_candidates(votes: &Votes, digest: &B256, needed: usize) -> Option<Vec<u16>> {
    let matching = || votes.iter().filter(|(_, held)| held.vote.digest == *digest);
    let chosen: Vec<u16> = matching()
        .filter(|(_, held)| held.verified)
        .chain(matching().filter(|(_, held)| !held.verified))
        .take(needed)
        .map(|(voter, _)| *voter)
        .collect();
    (chosen.len() == needed).then_some(chosen)
}

/// Checkpoint votes at one checkpoint sequence, by validator index.
pub(crate) type CheckpointVotes = BTreeMap<u16, Checkpoint>;

/// The history digest after committing `digest` at `sequence`: a hash chain over every committed
/// digest, which checkpoints compare.
pub(crate) fn chain_history(history: &B256, sequence: u64, digest: &B256) -> B256 {
    let mut bytes = [0u8; 32 + 8 + 32];
    bytes[..32].copy_from_slice(history.as_slice());
    bytes[32..40].copy_from_slice(&sequence.to_be_bytes());
    bytes[40..].copy_from_slice(digest.as_slice());
    primitives::keccak256(bytes)
}
