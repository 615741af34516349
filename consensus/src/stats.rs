//! What a replica has done and refused, as plain counters (as quinn's `ConnectionStats`).
//!
//! Drivers export these as metrics; the names there are these field names, dotted
//! (`consensus.rejected.bad_signature`).

use crate::error::RejectReason;

/// Counters of one replica since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Inputs handled (peer messages and local commands), accepted or not.
    pub inputs: u64,
    /// Values this replica proposed as primary.
    pub proposals: u64,
    /// Pre-prepares accepted from the primary.
    pub pre_prepares_accepted: u64,
    /// Values the application verified as valid.
    pub values_accepted: u64,
    /// Values the application refused (`Verified { valid: false }`); this replica did not
    /// prepare them.
    pub values_refused: u64,
    /// Prepares sent (one broadcast counts once).
    pub prepares_sent: u64,
    /// Commits sent (one broadcast counts once).
    pub commits_sent: u64,
    /// Checkpoints sent (one broadcast counts once).
    pub checkpoints_sent: u64,
    /// Sequences committed and handed to the owner.
    pub committed: u64,
    /// Checkpoints that became stable (each discarded the log below it).
    pub checkpoints_stable: u64,
    /// Quorums of checkpoints whose history differs from this replica's own: the replica's log
    /// disagrees with a quorum's, which only a bug or more than `f` faults can cause.
    pub checkpoints_diverged: u64,
    /// BLS verifications performed, one pairing check each: eager ones (pre-prepares,
    /// checkpoints, evidence) and those of held votes, alone or in aggregate.
    pub signature_checks: u64,
    /// Of `signature_checks`, the aggregate verifications of several held votes at once.
    pub signature_checks_aggregate: u64,
    /// Prepares and commits from peers held in the log (unverified until a quorum counts them):
    /// what verifying every vote on arrival would cost in signature checks.
    pub votes_held: u64,
    /// Pieces of equivocation evidence emitted.
    pub evidence: u64,
    /// View changes this replica started (timer, or joining `f + 1` others).
    pub view_changes_started: u64,
    /// New views this replica entered.
    pub new_views_entered: u64,
    /// New views this replica sent as the new primary.
    pub new_views_sent: u64,
    /// Messages for a view not yet entered, held until it is.
    pub messages_buffered: u64,
    /// Fetches sent to catch up.
    pub fetches_sent: u64,
    /// Decided entries taken from peers' answers (each certificate checked).
    pub entries_fetched: u64,
    /// Refused inputs, by reason.
    pub rejected: RejectStats,
}

/// Refused inputs, one counter per [`RejectReason`] variant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectStats {
    /// [`RejectReason::Decode`].
    pub decode: u64,
    /// [`RejectReason::WrongOrigin`].
    pub wrong_origin: u64,
    /// [`RejectReason::NotValidator`].
    pub not_validator: u64,
    /// [`RejectReason::WrongSender`].
    pub wrong_sender: u64,
    /// [`RejectReason::NotPrimary`].
    pub not_primary: u64,
    /// [`RejectReason::PrepareFromPrimary`].
    pub prepare_from_primary: u64,
    /// [`RejectReason::BadSignature`].
    pub bad_signature: u64,
    /// [`RejectReason::OldView`].
    pub old_view: u64,
    /// [`RejectReason::FutureView`].
    pub future_view: u64,
    /// [`RejectReason::OutsideWindow`].
    pub outside_window: u64,
    /// [`RejectReason::NotCheckpoint`].
    pub not_checkpoint: u64,
    /// [`RejectReason::Duplicate`].
    pub duplicate: u64,
    /// [`RejectReason::Conflicting`].
    pub conflicting: u64,
    /// [`RejectReason::WindowFull`].
    pub window_full: u64,
    /// [`RejectReason::UnexpectedVerdict`].
    pub unexpected_verdict: u64,
    /// [`RejectReason::ViewChanging`].
    pub view_changing: u64,
    /// [`RejectReason::InvalidProof`].
    pub invalid_proof: u64,
    /// [`RejectReason::BadCertificate`].
    pub bad_certificate: u64,
    /// [`RejectReason::LeftValidatorSet`].
    pub left_validator_set: u64,
    /// [`RejectReason::BadEpoch`].
    pub bad_epoch: u64,
    /// [`RejectReason::Retired`].
    pub retired: u64,
}

impl RejectStats {
    /// Counts one refusal.
    pub(crate) fn count(&mut self, reason: &RejectReason) {
        let counter = match reason {
            RejectReason::Decode(_) => &mut self.decode,
            RejectReason::WrongOrigin { .. } => &mut self.wrong_origin,
            RejectReason::NotValidator { .. } => &mut self.not_validator,
            RejectReason::WrongSender { .. } => &mut self.wrong_sender,
            RejectReason::NotPrimary { .. } => &mut self.not_primary,
            RejectReason::PrepareFromPrimary { .. } => &mut self.prepare_from_primary,
            RejectReason::BadSignature => &mut self.bad_signature,
            RejectReason::OldView { .. } => &mut self.old_view,
            RejectReason::FutureView { .. } => &mut self.future_view,
            RejectReason::OutsideWindow { .. } => &mut self.outside_window,
            RejectReason::NotCheckpoint { .. } => &mut self.not_checkpoint,
            RejectReason::Duplicate { .. } => &mut self.duplicate,
            RejectReason::Conflicting { .. } => &mut self.conflicting,
            RejectReason::WindowFull { .. } => &mut self.window_full,
            RejectReason::UnexpectedVerdict { .. } => &mut self.unexpected_verdict,
            RejectReason::ViewChanging { .. } => &mut self.view_changing,
            RejectReason::InvalidProof { .. } => &mut self.invalid_proof,
            RejectReason::BadCertificate { .. } => &mut self.bad_certificate,
            RejectReason::LeftValidatorSet { .. } => &mut self.left_validator_set,
            RejectReason::BadEpoch { .. } => &mut self.bad_epoch,
            RejectReason::Retired { .. } => &mut self.retired,
        };
        *counter += 1;
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.decode
            + self.wrong_origin
            + self.not_validator
            + self.wrong_sender
            + self.not_primary
            + self.prepare_from_primary
            + self.bad_signature
            + self.old_view
            + self.future_view
            + self.outside_window
            + self.not_checkpoint
            + self.duplicate
            + self.conflicting
            + self.window_full
            + self.unexpected_verdict
            + self.view_changing
            + self.invalid_proof
            + self.bad_certificate
            + self.left_validator_set
            + self.bad_epoch
            + self.retired
    }
}
