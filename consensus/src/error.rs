//! Why the replica refused an input, and why a commit certificate does not verify.

use primitives::{DecodeError, NodeId, bls::BlsError};

/// Why the replica refused an input. A refused input changes nothing but the replica's
/// [`crate::ReplicaStats`]; every variant is counted there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The bytes are not a consensus message (or are longer than the bound).
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    /// A peer message arrived as a local command, or a local command from a peer.
    #[error("{what} from the wrong origin")]
    WrongOrigin {
        /// The kind of input.
        what: &'static str,
    },
    /// The sending node is not in the validator set.
    #[error("{from} is not a validator")]
    NotValidator {
        /// The transport-authenticated sender.
        from: NodeId,
    },
    /// The message claims a validator index other than the sender's.
    #[error("{from} sent a message as validator {claimed}")]
    WrongSender {
        /// The transport-authenticated sender.
        from: NodeId,
        /// The validator index the message claims.
        claimed: u16,
    },
    /// A pre-prepare from a validator that is not the primary of its view, or a proposal given
    /// to a replica that is not the primary.
    #[error("validator {index} is not the primary of view {view}")]
    NotPrimary {
        /// The view.
        view: u64,
        /// The validator that acted as primary.
        index: u16,
    },
    /// A prepare from the primary of its view (the pre-prepare is the primary's vote).
    #[error("prepare from the primary of view {view}")]
    PrepareFromPrimary {
        /// The view.
        view: u64,
    },
    /// The signature does not verify against the sender's key.
    #[error("bad signature")]
    BadSignature,
    /// A message for a view older than the replica's.
    #[error("message for old view {view}, replica is in view {current}")]
    OldView {
        /// The message's view.
        view: u64,
        /// The replica's view.
        current: u64,
    },
    /// A message for a view the replica has not entered.
    #[error("message for future view {view}, replica is in view {current}")]
    FutureView {
        /// The message's view.
        view: u64,
        /// The replica's view.
        current: u64,
    },
    /// A sequence outside the window `(low, high]`.
    #[error("sequence {sequence} outside the window ({low}, {high}]")]
    OutsideWindow {
        /// The message's sequence.
        sequence: u64,
        /// The low watermark (the last stable checkpoint).
        low: u64,
        /// The high watermark.
        high: u64,
    },
    /// A checkpoint at a sequence that is not a checkpoint sequence.
    #[error("checkpoint at sequence {sequence}, not a multiple of the interval")]
    NotCheckpoint {
        /// The message's sequence.
        sequence: u64,
    },
    /// The same vote (or pre-prepare) again.
    #[error("duplicate {what} for sequence {sequence}")]
    Duplicate {
        /// The kind of message.
        what: &'static str,
        /// Its sequence.
        sequence: u64,
    },
    /// A second, different vote (or pre-prepare) from one validator for one sequence: the
    /// sender is faulty. The first one stands; if both are well signed, the replica emits
    /// [`crate::ReplicaEvent::Evidence`] (once per offender, kind and slot).
    #[error("conflicting {what} for sequence {sequence}")]
    Conflicting {
        /// The kind of message.
        what: &'static str,
        /// Its sequence.
        sequence: u64,
    },
    /// The window is full: the primary cannot assign a sequence until a checkpoint is stable.
    #[error("window full: next sequence {sequence} beyond high watermark {high}")]
    WindowFull {
        /// The sequence the proposal would get.
        sequence: u64,
        /// The high watermark.
        high: u64,
    },
    /// A normal-case input while the replica is changing views (it takes none until the new
    /// view starts).
    #[error("view change to view {view} in progress")]
    ViewChanging {
        /// The view the replica is changing to.
        view: u64,
    },
    /// A view change, new view, checkpoint proof or prepared proof that does not prove what it
    /// claims.
    #[error("invalid {what}: {why}")]
    InvalidProof {
        /// The kind of message or proof.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A decided entry whose commit certificate does not verify.
    #[error("decided entry at {sequence} has a bad certificate")]
    BadCertificate {
        /// The entry's sequence.
        sequence: u64,
    },
    /// A message from a node that was a validator of the previous epoch and is not one of the
    /// current epoch: it left the set at the epoch boundary.
    #[error("{from} left the validator set at the start of epoch {epoch}")]
    LeftValidatorSet {
        /// The transport-authenticated sender.
        from: NodeId,
        /// The epoch it is not a member of.
        epoch: u64,
    },
    /// A next epoch that does not follow the current one: not the next number, or not starting
    /// right after the current epoch's last sequence (or the current epoch has no end).
    #[error("epoch {epoch} starting after {start} does not follow: {why}")]
    BadEpoch {
        /// The epoch offered.
        epoch: u64,
        /// The sequence it would start after.
        start: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// This replica is not a member of the current epoch's set: it left, and takes no input.
    #[error("this replica left the validator set at the start of epoch {epoch}")]
    Retired {
        /// The epoch it is not a member of.
        epoch: u64,
    },
    /// A verdict for a value the replica did not ask about (or no longer waits for).
    #[error("unexpected verdict for sequence {sequence}")]
    UnexpectedVerdict {
        /// The verdict's sequence.
        sequence: u64,
    },
}

/// Why a commit certificate does not prove a value committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The validator set given to check against is empty.
    #[error("no validators to check the certificate against")]
    NoValidators,
    /// The aggregate signature, the bitmap or the signer count is wrong.
    #[error(transparent)]
    Bls(#[from] BlsError),
}
