//! The sans-IO PBFT core of Tickrate (Castro and Liskov), generic over the value agreed and the
//! validator set.
//!
//! It is used twice: the sequencers agree on a [`Batch`](primitives::Batch) of block headers per sequence number,
//! and the 8 members of an address state group agree on a post-state root ([`B256`]). Both run
//! the same [`Replica`], a [`primitives::machine::Machine`] that takes `(now, origin, input)` and
//! is drained of transmits and events; it never touches a socket, a clock or a thread, so the
//! tokio driver and the simulator run the same code.
//!
//! # Map
//! - [`value`]: the [`Value`] trait (anything with a canonical encoding and a digest).
//! - [`validator`]: the [`ValidatorSet`]: `n`, `f = (n - 1) / 3`, quorum `n - f`, the primary
//!   of view `v` is validator `v mod n`; the set's epoch and the span of sequences it decides.
//! - [`message`]: the wire messages (pre-prepare, prepare, commit, checkpoint, view change, new
//!   view, fetch, decided), what each one signs, and their bounded codec.
//! - [`replica`]: the state machine: the normal case (pre-prepare, application check, prepare,
//!   commit, in-order delivery with a certificate), checkpoints with log garbage collection,
//!   view change with exponential back-off, and state transfer by certified decided entries.
//! - [`view_change`]: checking view changes and new views, and deriving a new view's proposals.
//! - [`error`]: why an input is refused ([`RejectReason`]) and why a certificate does not verify.
//! - [`evidence`]: equivocation [`Evidence`] (two pre-prepares, prepares or commits one
//!   validator signed for one slot), emitted by replicas and checkable by anyone with the set
//!   ([`verify_evidence`]); the evidence type and the signed bytes of pre-prepares, prepares and
//!   commits are [`primitives::pbft`]'s, re-exported here, so the upper chain checks evidence
//!   against the offender's registered key.
//! - [`persist`]: the [`Record`]s a durable replica emits and the [`ReplicaState`] they fold
//!   into; [`store`]: the append-only log that keeps them ([`FileLog`]).
//! - [`stats`]: counters of what a replica did and refused.
//! - [`constants`]: the window, the checkpoint interval, the size bounds, the timeouts.
//! - `harness` (feature `test-utils`): a seeded, untimed in-memory `Cluster` of replicas with
//!   drops, duplicates, reordering and partitions.
//! - `world` (feature `test-utils`): a seeded, timed world with crashes, partitions, lossy links
//!   and byzantine replicas, and the safety and liveness checkers run over many seeds.
//!
//! # Certificates
//! A decided value comes with a [`Certificate`]: the aggregate of a quorum of commit signatures
//! over [`commit_message`]`(view, sequence, digest)`, so anyone holding the validator set checks
//! it with [`ValidatorSet`] and [`verify_commit`] (or [`verify_commit_certificate`] for a
//! [`FinalizedBatch`], which carries its view).
//!
//! # Vote verification
//! Prepares and commits are not verified on arrival. A vote that passes the cheap checks
//! (member, sender, view, window, duplicate, conflict) is held; when a quorum of matching votes
//! is present, the unverified ones among it are checked with one aggregate verification
//! (`fast_aggregate_verify` over their signers' keys, as [`Certificate::verify`] does). Only if
//! that fails are they checked one by one; the bad ones are dropped and refused as
//! [`RejectReason::BadSignature`], and the replica waits for more. Votes beyond a quorum are
//! never checked. With 4 replicas in order this is 11 signature checks per committed sequence,
//! all replicas together, instead of 24 (8 replicas: 23 instead of 112); see
//! [`ReplicaStats::signature_checks`]. Pre-prepares, checkpoints, view changes and new views
//! are checked on arrival.
//!
//! # Epochs
//! The validator set changes at epoch boundaries fixed in advance: each [`ValidatorSet`] knows
//! the last sequence it decides, the replica never goes past it, and once it has delivered that
//! sequence and holds the next set ([`ReplicaInput::NextEpoch`], from the upper chain) it
//! switches, like every correct replica, in the new epoch's first view ([`epoch_first_view`]).
//! Nodes that left are refused ([`RejectReason::LeftValidatorSet`]) and retire themselves; a
//! node that joins starts from [`ReplicaState::joining`].
//!
//! # Persistence
//! A replica built with [`Replica::restore`] is durable: it queues a [`Record`] for every
//! promise (its view, the pre-prepare it stands behind at a slot, its prepared proofs, decided
//! entries, stable checkpoints) and the driver makes them durable before it sends the messages
//! that depend on them ([`Replica::poll_persist`], [`persist`]). After a crash the records fold
//! into a [`ReplicaState`] the replica restarts from, so it never votes for two values at one
//! sequence in one view. [`store`] keeps them in an append-only file ([`FileLog`]) with length
//! and checksum framing, torn-tail truncation and compaction at stable checkpoints. A replica
//! built with [`Replica::new`] keeps everything in memory: if it loses its memory it must
//! rejoin as a new validator (a later epoch), not restart.

pub mod constants;
pub mod error;
pub mod evidence;
#[cfg(feature = "test-utils")]
pub mod harness;
mod log;
pub mod message;
pub mod persist;
pub mod replica;
pub mod stats;
pub mod store;
pub mod validator;
pub mod value;
pub mod view_change;
#[cfg(feature = "test-utils")]
pub mod world;

use primitives::{
    B256, FinalizedBatch,
    bls::{BlsPublicKey, Certificate},
};

pub use error::{CertificateError, RejectReason};
pub use evidence::{Evidence, EvidenceError, EvidenceKind, PbftSignature, Signed, verify_evidence};
pub use message::{
    Checkpoint, Decided, DecidedEntry, Message, NULL_DIGEST, NewView, PrePrepare, PrepareSignature,
    PreparedProof, ViewChange, Vote, checkpoint_message, commit_message, pre_prepare_message,
    prepare_message, proposal_digest,
};
pub use persist::{Record, ReplicaState, StateError};
pub use replica::{Replica, ReplicaConfig, ReplicaEvent, ReplicaInput, ReplicaKeys};
pub use stats::{RejectStats, ReplicaStats};
pub use store::{FileLog, FileMedium, LogError, LogMedium, MemoryMedium, Recovery, ReplicaLog};
pub use validator::{Validator, ValidatorSet, epoch_first_view, faults_max, quorum};
pub use value::Value;

/// Checks that a quorum of `keys` (a validator set, in order) signed, in `view`, the commit of
/// the value with `digest` at `sequence`.
pub fn verify_commit(
    view: u64,
    sequence: u64,
    digest: &B256,
    certificate: &Certificate,
    keys: &[BlsPublicKey],
) -> Result<(), CertificateError> {
    if keys.is_empty() {
        return Err(CertificateError::NoValidators);
    }
    certificate.verify(
        &commit_message(view, sequence, digest),
        keys,
        quorum(keys.len()),
    )?;
    Ok(())
}

/// Checks a finalized batch's certificate against the sequencer set `keys`, in order: a quorum
/// of them committed this batch at its sequence, in its view.
pub fn verify_commit_certificate(
    finalized: &FinalizedBatch,
    keys: &[BlsPublicKey],
) -> Result<(), CertificateError> {
    let batch = &finalized.batch;
    verify_commit(
        finalized.view,
        finalized.sequence,
        &batch.digest(),
        &finalized.certificate,
        keys,
    )
}
