//! The message log: one slot per sequence of the window, and the checkpoint votes.
//!
//! Everything here is bounded by the window: at most [`SEQUENCE_WINDOW`] slots, each holding at
//! most one prepare and one commit per validator, and at most one checkpoint vote per validator
//! for each checkpoint sequence of the window.
//!
//! [`SEQUENCE_WINDOW`]: crate::constants::SEQUENCE_WINDOW

use std::collections::BTreeMap;

use primitives::{
    B256,
    bls::{BlsSignature, Certificate},
};

use crate::message::{Checkpoint, PrePrepare, Vote};

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
    /// The digest of `pre_prepare.value`, computed once.
    pub(crate) digest: B256,
    pub(crate) verdict: Verdict,
}

/// Everything the replica knows about one sequence in its current view.
#[derive(Clone, Debug)]
pub(crate) struct Slot<V> {
    pub(crate) proposal: Option<Proposal<V>>,
    /// Prepares by validator index, this replica's own included (never the primary's).
    pub(crate) prepares: BTreeMap<u16, Vote>,
    /// Commits by validator index, this replica's own included.
    pub(crate) commits: BTreeMap<u16, Vote>,
    /// Whether this replica has sent its commit.
    pub(crate) commit_sent: bool,
    /// Set once a quorum of commits matches the proposal: the value is decided.
    pub(crate) certificate: Option<Certificate>,
}

impl<V> Default for Slot<V> {
    fn default() -> Self {
        Slot {
            proposal: None,
            prepares: BTreeMap::new(),
            commits: BTreeMap::new(),
            commit_sent: false,
            certificate: None,
        }
    }
}

impl<V> Slot<V> {
    /// PBFT's `prepared`: a pre-prepare this replica stands behind (its own proposal, or one the
    /// application found valid) and `quorum - 1` prepares from backups that match it. With the
    /// primary's pre-prepare that is a quorum of validators behind one digest in one view.
    pub(crate) fn is_prepared(&self, quorum: usize) -> bool {
        let Some(proposal) = &self.proposal else {
            return false;
        };
        if !matches!(proposal.verdict, Verdict::Own | Verdict::Valid) {
            return false;
        }
        let matching = self
            .prepares
            .values()
            .filter(|vote| vote.digest == proposal.digest)
            .count();
        matching + 1 >= quorum
    }

    /// The first `quorum` commits (by validator index) that match the proposal, if there are
    /// that many.
    pub(crate) fn commit_quorum(&self, quorum: usize) -> Option<Vec<(usize, BlsSignature)>> {
        let proposal = self.proposal.as_ref()?;
        let votes: Vec<(usize, BlsSignature)> = self
            .commits
            .values()
            .filter(|vote| vote.digest == proposal.digest)
            .take(quorum)
            .map(|vote| (usize::from(vote.replica), vote.signature))
            .collect();
        (votes.len() == quorum).then_some(votes)
    }
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
