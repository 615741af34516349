//! Equivocation evidence: two messages one validator signed for one slot that no correct
//! validator signs both of. Anyone holding the validator set checks it with [`verify_evidence`],
//! so it can be recorded on the upper chain to expel the offender.
//!
//! The evidence itself, its codec and the signature check are
//! [`primitives::pbft::EquivocationEvidence`] (the upper chain checks it against the offender's
//! registered key without this crate); what needs the validator set (the offender's index, the
//! primary of the view) is here.

use primitives::pbft;

pub use primitives::pbft::{EvidenceKind, PbftSignature, Signed};

use crate::validator::ValidatorSet;

/// Validator `offender` signed two different digests where a correct validator signs one.
pub type Evidence = pbft::EquivocationEvidence;

/// Why a piece of evidence proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The offender is not in the validator set.
    #[error("validator {offender} is not in the set")]
    UnknownOffender {
        /// The index named.
        offender: u16,
    },
    /// The pre-prepares are not signed by the primary of their view.
    #[error("validator {offender} is not the primary of view {view}")]
    NotPrimary {
        /// The index named.
        offender: u16,
        /// The view named.
        view: u64,
    },
    /// The digests are equal or out of canonical order.
    #[error("not a canonical pair of different digests")]
    NotCanonical,
    /// A signature does not verify against the offender's key.
    #[error("bad signature")]
    BadSignature,
}

impl From<pbft::EvidenceError> for EvidenceError {
    fn from(error: pbft::EvidenceError) -> Self {
        match error {
            pbft::EvidenceError::NotCanonical => EvidenceError::NotCanonical,
            pbft::EvidenceError::BadSignature => EvidenceError::BadSignature,
        }
    }
}

/// Checks that the offender, a member of `validators`, signed both digests (and, for
/// pre-prepares, was the primary of the view).
pub fn verify_evidence(
    evidence: &Evidence,
    validators: &ValidatorSet,
) -> Result<(), EvidenceError> {
    let offender =
        validators
            .get(usize::from(evidence.offender))
            .ok_or(EvidenceError::UnknownOffender {
                offender: evidence.offender,
            })?;
    if evidence.kind == EvidenceKind::PrePrepare
        && validators.primary_index(evidence.view) != usize::from(evidence.offender)
    {
        return Err(EvidenceError::NotPrimary {
            offender: evidence.offender,
            view: evidence.view,
        });
    }
    evidence.verify(&offender.id, &offender.key)?;
    Ok(())
}
