//! The wire messages of PBFT, what each one signs, and their bounded codec.
//!
//! Pre-prepares and prepares are signed by their sender's operator key (the secp256k1 key the
//! node ID is the address of): they stay among the validators (inside view changes, or as
//! evidence), and a replica recovers a signer in tens of microseconds where a BLS check is a
//! pairing of a millisecond or more, on the critical path of every batch, once per prepare
//! quorum at every replica. Commits, checkpoints, view changes and new views are signed by the
//! sender's BLS key: a quorum of commits aggregates into the one commit
//! [`primitives::bls::Certificate`] that leaves the set (to the upper chain, to a replica
//! catching up) and that anyone holding the validator set checks, given the view it was
//! committed in. Each signature covers a domain-separated message that names the view, the
//! sequence and the value's digest. Prepares and commits carry no value, only its digest.
//!
//! A commit names its view, as in Castro and Liskov: a correct replica may commit-vote two
//! different values at one sequence in two views (the first never decided), and only the view
//! keeps those two votes from counting towards one certificate.
//!
//! A sequence the new primary of a view change has no prepared value for is filled with a
//! *null* proposal (`value: None`), whose digest is [`NULL_DIGEST`].

use primitives::{
    AccountKey, B256, Decode, DecodeError, Decoder, Encode, Signature,
    bls::{BlsSecretKey, BlsSignature, Certificate, HashedMessage},
    codec::put_list,
    constants::VALIDATORS_MAX,
    pbft::{EvidenceKind, PbftSignature, pre_prepare_prehash, prepare_prehash, signed_bytes},
};

// What pre-prepares, prepares and commits sign lives in `primitives` so the upper chain can check
// equivocation evidence without depending on this crate; the bytes are unchanged.
pub use primitives::pbft::{commit_message, pre_prepare_message, prepare_message};

use crate::{
    constants::{FETCH_ENTRIES_MAX, MESSAGE_BYTES_MAX, SEQUENCE_WINDOW},
    error::RejectReason,
    validator::ValidatorSet,
    value::Value,
};

const MESSAGE_VERSION: u8 = 2;

const TAG_PRE_PREPARE: u8 = 0;
const TAG_PREPARE: u8 = 1;
const TAG_COMMIT: u8 = 2;
const TAG_CHECKPOINT: u8 = 3;
const TAG_VIEW_CHANGE: u8 = 4;
const TAG_NEW_VIEW: u8 = 5;
const TAG_FETCH: u8 = 6;
const TAG_DECIDED: u8 = 7;

const CHECKPOINT_DOMAIN: &[u8] = b"tickrate:checkpoint";
const VIEW_CHANGE_DOMAIN: &[u8] = b"tickrate:view-change";
const NEW_VIEW_DOMAIN: &[u8] = b"tickrate:new-view";

/// The digest of a null proposal. No value hashes to it (finding one would break keccak/blake3).
pub const NULL_DIGEST: B256 = B256::ZERO;

/// The digest a proposal is voted on by: its value's, or [`NULL_DIGEST`] for a null.
pub fn proposal_digest<V: Value>(value: Option<&V>) -> B256 {
    value.map_or(NULL_DIGEST, Value::digest)
}

/// The bytes a checkpoint signs: `b"tickrate:checkpoint" || sequence || history digest`.
pub fn checkpoint_message(sequence: u64, history: &B256) -> Vec<u8> {
    signed_bytes(CHECKPOINT_DOMAIN, None, sequence, history)
}

/// The primary's proposal of `value` at `sequence` in `view`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrePrepare<V> {
    /// The view the primary proposes in.
    pub view: u64,
    /// The sequence number it assigned.
    pub sequence: u64,
    /// The value proposed; `None` is the null a new view fills a gap with.
    pub value: Option<V>,
    /// The primary's operator-key signature over [`pre_prepare_prehash`].
    pub signature: Signature,
}

impl<V: Value> PrePrepare<V> {
    /// A pre-prepare signed by `operator`.
    pub fn new(operator: &AccountKey, view: u64, sequence: u64, value: V) -> Self {
        Self::proposing(operator, view, sequence, Some(value))
    }

    /// A pre-prepare of `value`, or of a null, signed by `operator`.
    pub fn proposing(operator: &AccountKey, view: u64, sequence: u64, value: Option<V>) -> Self {
        let digest = proposal_digest(value.as_ref());
        let signature = operator.sign_prehash(&pre_prepare_prehash(view, sequence, &digest));
        PrePrepare {
            view,
            sequence,
            value,
            signature,
        }
    }

    /// The digest the proposal is voted on by.
    pub fn digest(&self) -> B256 {
        proposal_digest(self.value.as_ref())
    }

    /// Checks that the primary of its view signed it, given the value's `digest`.
    pub fn verify(&self, validators: &ValidatorSet, digest: &B256) -> Result<(), RejectReason> {
        validators.verify_operator(
            validators.primary_index(self.view),
            &pre_prepare_prehash(self.view, self.sequence, digest),
            &self.signature,
        )
    }
}

/// A prepare or a commit: validator `replica`'s vote for `digest` at `sequence` in `view`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The view the vote is cast in.
    pub view: u64,
    /// The sequence voted on.
    pub sequence: u64,
    /// The digest of the value voted for.
    pub digest: B256,
    /// The voter's index in the validator set.
    pub replica: u16,
    /// The voter's signature: its operator key's over [`prepare_prehash`] for a prepare, its
    /// BLS key's over [`commit_message`] for a commit.
    pub signature: PbftSignature,
}

impl Vote {
    /// A prepare signed by `operator`, validator `replica`.
    pub fn prepare(
        operator: &AccountKey,
        view: u64,
        sequence: u64,
        digest: B256,
        replica: u16,
    ) -> Self {
        let signature = operator.sign_prehash(&prepare_prehash(view, sequence, &digest));
        Vote {
            view,
            sequence,
            digest,
            replica,
            signature: PbftSignature::Operator(signature),
        }
    }

    /// A commit signed over its message hashed once (`hashed` must be [`commit_message`] of the
    /// vote, hashed): the same signature as [`Vote::commit`] makes, for a replica that checks
    /// the quorum over the same message next.
    pub fn signed_over(
        secret: &BlsSecretKey,
        hashed: &HashedMessage,
        view: u64,
        sequence: u64,
        digest: B256,
        replica: u16,
    ) -> Self {
        Vote {
            view,
            sequence,
            digest,
            replica,
            signature: PbftSignature::Bls(secret.sign_hashed(hashed)),
        }
    }

    /// A commit signed by `secret`, validator `replica`.
    pub fn commit(
        secret: &BlsSecretKey,
        view: u64,
        sequence: u64,
        digest: B256,
        replica: u16,
    ) -> Self {
        let signature = secret.sign(&commit_message(view, sequence, &digest));
        Vote {
            view,
            sequence,
            digest,
            replica,
            signature: PbftSignature::Bls(signature),
        }
    }

    /// The BLS signature of a commit (`None` for a prepare).
    pub fn bls_signature(&self) -> Option<BlsSignature> {
        self.signature.bls()
    }

    /// Checks that the validator it names signed it as a prepare.
    pub fn verify_prepare(&self, validators: &ValidatorSet) -> Result<(), RejectReason> {
        let PbftSignature::Operator(signature) = &self.signature else {
            return Err(RejectReason::BadSignature);
        };
        validators.verify_operator(
            usize::from(self.replica),
            &prepare_prehash(self.view, self.sequence, &self.digest),
            signature,
        )
    }

    /// Checks that the validator it names signed it as a commit.
    pub fn verify_commit(&self, validators: &ValidatorSet) -> Result<(), RejectReason> {
        let PbftSignature::Bls(signature) = &self.signature else {
            return Err(RejectReason::BadSignature);
        };
        let message = commit_message(self.view, self.sequence, &self.digest);
        validators.verify_signature(usize::from(self.replica), &message, signature)
    }

    /// Decodes a vote of `kind` (which decides its signature scheme).
    fn decode_as(kind: EvidenceKind, decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Vote {
            view: decoder.u64()?,
            sequence: decoder.u64()?,
            digest: decoder.b256()?,
            replica: decoder.u16()?,
            signature: PbftSignature::decode(kind, decoder)?,
        })
    }
}

impl Encode for Vote {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.view.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        self.digest.encode(out);
        out.extend_from_slice(&self.replica.to_be_bytes());
        self.signature.encode(out);
    }
}

/// Validator `replica` has committed every sequence up to `sequence`, and the chain of committed
/// digests up to there hashes to `history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last sequence the checkpoint covers (a multiple of
    /// [`crate::constants::CHECKPOINT_INTERVAL`]).
    pub sequence: u64,
    /// The hash chain of committed digests up to `sequence` (see [`crate::Replica::history`]).
    pub history: B256,
    /// The sender's index in the validator set.
    pub replica: u16,
    /// The sender's signature over [`checkpoint_message`].
    pub signature: BlsSignature,
}

impl Checkpoint {
    /// A checkpoint signed by `secret`, validator `replica`.
    pub fn new(secret: &BlsSecretKey, sequence: u64, history: B256, replica: u16) -> Self {
        let signature = secret.sign(&checkpoint_message(sequence, &history));
        Checkpoint {
            sequence,
            history,
            replica,
            signature,
        }
    }

    /// Checks that the validator it names signed it.
    pub fn verify(&self, validators: &ValidatorSet) -> Result<(), RejectReason> {
        let message = checkpoint_message(self.sequence, &self.history);
        validators.verify_signature(usize::from(self.replica), &message, &self.signature)
    }
}

impl Encode for Checkpoint {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sequence.to_be_bytes());
        self.history.encode(out);
        out.extend_from_slice(&self.replica.to_be_bytes());
        self.signature.encode(out);
    }
}

impl Decode for Checkpoint {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Checkpoint {
            sequence: decoder.u64()?,
            history: decoder.b256()?,
            replica: decoder.u16()?,
            signature: BlsSignature::decode(decoder)?,
        })
    }
}

impl<V: Value> Encode for PrePrepare<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.view.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        match &self.value {
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
            None => out.push(0),
        }
        self.signature.encode(out);
    }
}

impl<V: Value> Decode for PrePrepare<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let view = decoder.u64()?;
        let sequence = decoder.u64()?;
        let value = if decoder.bool()? {
            Some(V::decode(decoder)?)
        } else {
            None
        };
        Ok(PrePrepare {
            view,
            sequence,
            value,
            signature: Signature::decode(decoder)?,
        })
    }
}

/// One backup's prepare inside a [`PreparedProof`]: its index and its operator-key signature over
/// [`prepare_prehash`] of the proof's view, sequence and digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrepareSignature {
    /// The backup's index in the validator set.
    pub replica: u16,
    /// Its signature.
    pub signature: Signature,
}

impl Encode for PrepareSignature {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.replica.to_be_bytes());
        self.signature.encode(out);
    }
}

impl Decode for PrepareSignature {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PrepareSignature {
            replica: decoder.u16()?,
            signature: Signature::decode(decoder)?,
        })
    }
}

/// Proof that a value was prepared at a sequence in a view: the primary's pre-prepare and
/// `quorum - 1` matching prepares from distinct backups. View change carries one per open
/// sequence, so that a value that may have been decided is proposed again in the next view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedProof<V> {
    /// The primary's pre-prepare (its view is the proof's view).
    pub pre_prepare: PrePrepare<V>,
    /// The backups' prepares for the pre-prepare's view, sequence and digest, by ascending
    /// index.
    pub prepares: Vec<PrepareSignature>,
}

impl<V: Value> Encode for PreparedProof<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.pre_prepare.encode(out);
        put_list(out, &self.prepares);
    }
}

impl<V: Value> Decode for PreparedProof<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PreparedProof {
            pre_prepare: PrePrepare::decode(decoder)?,
            prepares: decoder.list("prepares", VALIDATORS_MAX)?,
        })
    }
}

/// Validator `replica` suspects the primary and asks to move to `view`. It carries what the new
/// primary needs to continue safely: the replica's stable checkpoint with its proof, and a
/// prepared proof for each sequence above it that the replica prepared (in the highest view it
/// did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewChange<V> {
    /// The view asked for.
    pub view: u64,
    /// The sender's index in the validator set.
    pub replica: u16,
    /// The sender's last stable checkpoint (0 at genesis).
    pub stable: u64,
    /// The history digest at `stable` (zero at genesis).
    pub history: B256,
    /// A quorum of checkpoint votes for `(stable, history)`; empty at genesis.
    pub stable_proof: Vec<Checkpoint>,
    /// Prepared proofs for sequences above `stable`, ascending, one per sequence.
    pub prepared: Vec<PreparedProof<V>>,
    /// The sender's signature over [`ViewChange::signed_message`].
    pub signature: BlsSignature,
}

impl<V: Value> ViewChange<V> {
    /// A view change signed by `secret`, validator `replica`.
    pub fn new(
        secret: &BlsSecretKey,
        view: u64,
        replica: u16,
        stable_proof: Vec<Checkpoint>,
        prepared: Vec<PreparedProof<V>>,
    ) -> Self {
        Self::in_epoch(secret, view, replica, 0, stable_proof, prepared)
    }

    /// A view change signed by `secret`, validator `replica` of an epoch that starts after
    /// sequence `start` (the stable checkpoint when `stable_proof` is empty).
    pub fn in_epoch(
        secret: &BlsSecretKey,
        view: u64,
        replica: u16,
        start: u64,
        stable_proof: Vec<Checkpoint>,
        prepared: Vec<PreparedProof<V>>,
    ) -> Self {
        let (stable, history) = stable_proof
            .first()
            .map_or((start, B256::ZERO), |vote| (vote.sequence, vote.history));
        let mut view_change = ViewChange {
            view,
            replica,
            stable,
            history,
            stable_proof,
            prepared,
            signature: secret.sign(b""),
        };
        view_change.signature = secret.sign(&view_change.signed_message());
        view_change
    }

    /// What the sender signs: the domain and the keccak digest of every field but the
    /// signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut body = Vec::new();
        self.encode_body(&mut body);
        let mut message = VIEW_CHANGE_DOMAIN.to_vec();
        message.extend_from_slice(primitives::keccak256(&body).as_slice());
        message
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.view.to_be_bytes());
        out.extend_from_slice(&self.replica.to_be_bytes());
        out.extend_from_slice(&self.stable.to_be_bytes());
        self.history.encode(out);
        put_list(out, &self.stable_proof);
        put_list(out, &self.prepared);
    }
}

impl<V: Value> Encode for ViewChange<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_body(out);
        self.signature.encode(out);
    }
}

impl<V: Value> Decode for ViewChange<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ViewChange {
            view: decoder.u64()?,
            replica: decoder.u16()?,
            stable: decoder.u64()?,
            history: decoder.b256()?,
            stable_proof: decoder.list("checkpoint proof", VALIDATORS_MAX)?,
            prepared: decoder.list("prepared proofs", SEQUENCE_WINDOW as usize)?,
            signature: BlsSignature::decode(decoder)?,
        })
    }
}

/// The new primary starts `view`: a quorum of view changes for it, and the pre-prepares it
/// derives from them (every replica recomputes and compares them): for each sequence between
/// the highest stable checkpoint and the highest prepared sequence, the value prepared in the
/// highest view, or a null.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewView<V> {
    /// The view started.
    pub view: u64,
    /// A quorum of view changes for `view`, from distinct validators.
    pub view_changes: Vec<ViewChange<V>>,
    /// The pre-prepares of `view` for the open sequences, ascending.
    pub pre_prepares: Vec<PrePrepare<V>>,
    /// The new primary's signature over [`NewView::signed_message`].
    pub signature: BlsSignature,
}

impl<V: Value> NewView<V> {
    /// A new view signed by `secret`, the primary of `view`.
    pub fn new(
        secret: &BlsSecretKey,
        view: u64,
        view_changes: Vec<ViewChange<V>>,
        pre_prepares: Vec<PrePrepare<V>>,
    ) -> Self {
        let mut new_view = NewView {
            view,
            view_changes,
            pre_prepares,
            signature: secret.sign(b""),
        };
        new_view.signature = secret.sign(&new_view.signed_message());
        new_view
    }

    /// What the primary signs: the domain and the keccak digest of every field but the
    /// signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut body = Vec::new();
        self.encode_body(&mut body);
        let mut message = NEW_VIEW_DOMAIN.to_vec();
        message.extend_from_slice(primitives::keccak256(&body).as_slice());
        message
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.view.to_be_bytes());
        put_list(out, &self.view_changes);
        put_list(out, &self.pre_prepares);
    }
}

impl<V: Value> Encode for NewView<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_body(out);
        self.signature.encode(out);
    }
}

impl<V: Value> Decode for NewView<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(NewView {
            view: decoder.u64()?,
            view_changes: decoder.list("view changes", VALIDATORS_MAX)?,
            pre_prepares: decoder.list("new-view pre-prepares", SEQUENCE_WINDOW as usize)?,
            signature: BlsSignature::decode(decoder)?,
        })
    }
}

/// A decided sequence with its commit certificate: checkable by anyone holding the validator
/// set, so a replica catching up takes it from any peer without trusting that peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecidedEntry<V> {
    /// The sequence.
    pub sequence: u64,
    /// The view the certificate's commits were cast in.
    pub view: u64,
    /// The value decided (`None`: a null).
    pub value: Option<V>,
    /// A quorum of commits over [`commit_message`]`(view, sequence, digest)`.
    pub certificate: Certificate,
}

impl<V: Value> DecidedEntry<V> {
    /// The digest the certificate covers.
    pub fn digest(&self) -> B256 {
        proposal_digest(self.value.as_ref())
    }
}

impl<V: Value> Encode for DecidedEntry<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.view.to_be_bytes());
        match &self.value {
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
            None => out.push(0),
        }
        self.certificate.encode(out);
    }
}

impl<V: Value> Decode for DecidedEntry<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let sequence = decoder.u64()?;
        let view = decoder.u64()?;
        let value = if decoder.bool()? {
            Some(V::decode(decoder)?)
        } else {
            None
        };
        Ok(DecidedEntry {
            sequence,
            view,
            value,
            certificate: Certificate::decode(decoder)?,
        })
    }
}

/// A peer's answer to [`Message::Fetch`]: decided entries from the sequence asked for, in order,
/// and the peer's stable checkpoint proof, which lets the receiver move its window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided<V> {
    /// The sender's stable checkpoint proof (empty at genesis).
    pub stable_proof: Vec<Checkpoint>,
    /// Consecutive decided entries, ascending.
    pub entries: Vec<DecidedEntry<V>>,
}

impl<V: Value> Encode for Decided<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        put_list(out, &self.stable_proof);
        put_list(out, &self.entries);
    }
}

impl<V: Value> Decode for Decided<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Decided {
            stable_proof: decoder.list("checkpoint proof", VALIDATORS_MAX)?,
            entries: decoder.list("decided entries", FETCH_ENTRIES_MAX)?,
        })
    }
}

/// A PBFT message between replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a message is decoded once and moved into the replica"
)]
pub enum Message<V> {
    /// The primary assigns a sequence to a value.
    PrePrepare(PrePrepare<V>),
    /// A backup accepts the pre-prepare (after the application verified the value).
    Prepare(Vote),
    /// A replica has prepared the value and votes to commit it.
    Commit(Vote),
    /// A replica has committed every sequence up to a checkpoint.
    Checkpoint(Checkpoint),
    /// A replica asks to move to a new view.
    ViewChange(ViewChange<V>),
    /// The new primary starts its view.
    NewView(NewView<V>),
    /// A replica that fell behind asks for the decided entries from `from` on.
    Fetch {
        /// The first sequence wanted.
        from: u64,
    },
    /// Decided entries, in answer to a fetch.
    Decided(Decided<V>),
}

impl<V: Value> Message<V> {
    /// Decodes untrusted bytes, refusing more than [`MESSAGE_BYTES_MAX`] before reading them.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MESSAGE_BYTES_MAX {
            return Err(DecodeError::Oversized {
                what: "consensus message",
                len: bytes.len(),
                max: MESSAGE_BYTES_MAX,
            });
        }
        Message::from_bytes(bytes)
    }

    /// The message's kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::PrePrepare(_) => "pre-prepare",
            Message::Prepare(_) => "prepare",
            Message::Commit(_) => "commit",
            Message::Checkpoint(_) => "checkpoint",
            Message::ViewChange(_) => "view-change",
            Message::NewView(_) => "new-view",
            Message::Fetch { .. } => "fetch",
            Message::Decided(_) => "decided",
        }
    }

    /// The sequence the message is about (0 for the messages about a view, not a sequence).
    pub fn sequence(&self) -> u64 {
        match self {
            Message::PrePrepare(pre_prepare) => pre_prepare.sequence,
            Message::Prepare(vote) | Message::Commit(vote) => vote.sequence,
            Message::Checkpoint(checkpoint) => checkpoint.sequence,
            Message::Fetch { from } => *from,
            Message::Decided(decided) => decided.entries.first().map_or(0, |entry| entry.sequence),
            Message::ViewChange(_) | Message::NewView(_) => 0,
        }
    }
}

impl<V: Value> Encode for Message<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(MESSAGE_VERSION);
        match self {
            Message::PrePrepare(pre_prepare) => {
                out.push(TAG_PRE_PREPARE);
                pre_prepare.encode(out);
            }
            Message::Prepare(vote) => {
                out.push(TAG_PREPARE);
                vote.encode(out);
            }
            Message::Commit(vote) => {
                out.push(TAG_COMMIT);
                vote.encode(out);
            }
            Message::Checkpoint(checkpoint) => {
                out.push(TAG_CHECKPOINT);
                checkpoint.encode(out);
            }
            Message::ViewChange(view_change) => {
                out.push(TAG_VIEW_CHANGE);
                view_change.encode(out);
            }
            Message::NewView(new_view) => {
                out.push(TAG_NEW_VIEW);
                new_view.encode(out);
            }
            Message::Fetch { from } => {
                out.push(TAG_FETCH);
                out.extend_from_slice(&from.to_be_bytes());
            }
            Message::Decided(decided) => {
                out.push(TAG_DECIDED);
                decided.encode(out);
            }
        }
    }
}

impl<V: Value> Decode for Message<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("consensus message", &[MESSAGE_VERSION])?;
        match decoder.u8()? {
            TAG_PRE_PREPARE => Ok(Message::PrePrepare(PrePrepare::decode(decoder)?)),
            TAG_PREPARE => Ok(Message::Prepare(Vote::decode_as(
                EvidenceKind::Prepare,
                decoder,
            )?)),
            TAG_COMMIT => Ok(Message::Commit(Vote::decode_as(
                EvidenceKind::Commit,
                decoder,
            )?)),
            TAG_CHECKPOINT => Ok(Message::Checkpoint(Checkpoint::decode(decoder)?)),
            TAG_VIEW_CHANGE => Ok(Message::ViewChange(ViewChange::decode(decoder)?)),
            TAG_NEW_VIEW => Ok(Message::NewView(NewView::decode(decoder)?)),
            TAG_FETCH => Ok(Message::Fetch {
                from: decoder.u64()?,
            }),
            TAG_DECIDED => Ok(Message::Decided(Decided::decode(decoder)?)),
            tag => Err(DecodeError::UnknownTag {
                what: "consensus message",
                tag,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> BlsSecretKey {
        BlsSecretKey::from_seed(&[7; 32])
    }

    /// Validator `index`'s operator key, which signs its pre-prepares.
    fn operator(index: u64) -> AccountKey {
        AccountKey::from_seed(index + 1)
    }

    /// Four validators that all hold `secret()`'s BLS key, so any index it signs votes as
    /// verifies; each has its own operator key.
    fn one_key_set() -> ValidatorSet {
        let key = secret().public_key();
        ValidatorSet::new(
            (0..4)
                .map(|index| crate::Validator {
                    id: primitives::NodeId(operator(index).address()),
                    key,
                })
                .collect(),
        )
    }

    #[test]
    fn every_message_round_trips_and_verifies() {
        let secret = secret();
        let key = secret.public_key();
        let validators = one_key_set();
        let value = B256::repeat_byte(3);
        let messages: Vec<Message<B256>> = vec![
            Message::PrePrepare(PrePrepare::new(&operator(2), 2, 5, value)),
            Message::Prepare(Vote::prepare(&operator(1), 2, 5, value, 1)),
            Message::Commit(Vote::commit(&secret, 2, 5, value, 1)),
            Message::Checkpoint(Checkpoint::new(&secret, 16, value, 1)),
        ];
        for message in messages {
            let decoded = Message::<B256>::from_wire(&message.to_bytes());
            assert_eq!(decoded.as_ref(), Ok(&message));
            let verified = match &message {
                Message::PrePrepare(pre_prepare) => pre_prepare.verify(&validators, &value),
                Message::Prepare(vote) => vote.verify_prepare(&validators),
                Message::Commit(vote) => vote.verify_commit(&validators),
                Message::Checkpoint(checkpoint) => checkpoint.verify(&validators),
                Message::ViewChange(view_change) => key
                    .verify(&view_change.signed_message(), &view_change.signature)
                    .map_err(|_| RejectReason::BadSignature),
                Message::NewView(new_view) => key
                    .verify(&new_view.signed_message(), &new_view.signature)
                    .map_err(|_| RejectReason::BadSignature),
                Message::Fetch { .. } | Message::Decided(_) => Ok(()),
            };
            assert_eq!(verified, Ok(()), "{}", message.kind());
        }
    }

    #[test]
    fn view_change_messages_round_trip_and_sign_their_whole_body() {
        let secret = secret();
        let key = secret.public_key();
        let value = B256::repeat_byte(3);
        let checkpoint = Checkpoint::new(&secret, 16, value, 1);
        let pre_prepare = PrePrepare::new(&operator(1), 1, 17, value);
        let prepare = Vote::prepare(&operator(2), 1, 17, value, 2);
        let prepares = vec![PrepareSignature {
            replica: 2,
            signature: prepare.signature.operator().expect("an operator signature"),
        }];
        let proof = PreparedProof {
            pre_prepare: pre_prepare.clone(),
            prepares,
        };
        let view_change = ViewChange::new(&secret, 2, 1, vec![checkpoint.clone()], vec![proof]);
        assert_eq!((view_change.stable, view_change.history), (16, value));
        let null = PrePrepare::<B256>::proposing(&operator(2), 2, 18, None);
        assert_eq!(null.digest(), NULL_DIGEST);
        let new_view = NewView::new(
            &secret,
            2,
            vec![view_change.clone()],
            vec![pre_prepare, null],
        );
        let entry = DecidedEntry {
            sequence: 17,
            view: 2,
            value: None,
            certificate: Certificate::aggregate(&[(0, secret.sign(b"y"))]).expect("one vote"),
        };
        let messages: Vec<Message<B256>> = vec![
            Message::ViewChange(view_change.clone()),
            Message::NewView(new_view.clone()),
            Message::Fetch { from: 17 },
            Message::Decided(Decided {
                stable_proof: vec![checkpoint],
                entries: vec![entry],
            }),
        ];
        for message in messages {
            let decoded = Message::<B256>::from_wire(&message.to_bytes());
            assert_eq!(decoded.as_ref(), Ok(&message), "{}", message.kind());
        }
        // The signature covers every field: changing one breaks it.
        let mut tampered = view_change;
        tampered.prepared.clear();
        assert!(
            key.verify(&tampered.signed_message(), &tampered.signature)
                .is_err()
        );
        let mut tampered = new_view;
        tampered.pre_prepares.pop();
        assert!(
            key.verify(&tampered.signed_message(), &tampered.signature)
                .is_err()
        );
    }

    #[test]
    fn a_pre_prepare_verifies_only_under_its_views_primary() {
        let validators = one_key_set();
        let value = B256::repeat_byte(3);
        let pre_prepare = PrePrepare::new(&operator(2), 2, 5, value);
        assert_eq!(pre_prepare.verify(&validators, &value), Ok(()));
        let by_a_backup = PrePrepare::new(&operator(1), 2, 5, value);
        assert_eq!(
            by_a_backup.verify(&validators, &value),
            Err(RejectReason::BadSignature)
        );
        assert_eq!(
            pre_prepare.verify(&validators, &B256::repeat_byte(4)),
            Err(RejectReason::BadSignature)
        );
        // View 6 has the same primary, but the view is signed.
        let mut moved = pre_prepare;
        moved.view = 6;
        assert_eq!(
            moved.verify(&validators, &value),
            Err(RejectReason::BadSignature)
        );
        let mut garbled = PrePrepare::new(&operator(2), 2, 5, value);
        garbled.signature.0[64] = 9;
        assert_eq!(
            garbled.verify(&validators, &value),
            Err(RejectReason::BadSignature)
        );
    }

    #[test]
    fn signatures_are_domain_separated() {
        let secret = secret();
        let validators = one_key_set();
        let digest = B256::repeat_byte(9);
        // A prepare's signature is not a commit's, though both name the same sequence and digest.
        let mut prepare = Vote::prepare(&operator(0), 0, 1, digest, 0);
        assert_eq!(
            prepare.verify_commit(&validators),
            Err(RejectReason::BadSignature)
        );
        // The commit names the view: votes of two views never count towards one certificate.
        let commit_view_0 = Vote::commit(&secret, 0, 1, digest, 0);
        let commit_view_3 = Vote::commit(&secret, 3, 1, digest, 0);
        assert_ne!(commit_view_0.signature, commit_view_3.signature);
        // The prepare names the view.
        prepare.view = 1;
        assert_eq!(
            prepare.verify_prepare(&validators),
            Err(RejectReason::BadSignature)
        );
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let bytes = vec![0u8; MESSAGE_BYTES_MAX + 1];
        assert_eq!(
            Message::<B256>::from_wire(&bytes),
            Err(DecodeError::Oversized {
                what: "consensus message",
                len: MESSAGE_BYTES_MAX + 1,
                max: MESSAGE_BYTES_MAX,
            })
        );
    }
}
