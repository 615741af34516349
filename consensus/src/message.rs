//! The wire messages of PBFT's normal case, what each one signs, and their bounded codec.
//!
//! Every message is signed by its sender's BLS key over a domain-separated message that names
//! the sequence and the value's digest. Prepares and commits carry no value, only its digest.
//! A commit signs `b"tickrate:commit" || sequence || digest` and not the view, so that a quorum
//! of commits aggregates into a [`primitives::bls::Certificate`] anyone holding the validator set
//! can check, without knowing in which view the value was committed.

use primitives::{
    B256, Decode, DecodeError, Decoder, Encode,
    bls::{BlsPublicKey, BlsSecretKey, BlsSignature},
};

use crate::{constants::MESSAGE_BYTES_MAX, error::RejectReason, value::Value};

const MESSAGE_VERSION: u8 = 1;

const TAG_PRE_PREPARE: u8 = 0;
const TAG_PREPARE: u8 = 1;
const TAG_COMMIT: u8 = 2;
const TAG_CHECKPOINT: u8 = 3;

const PRE_PREPARE_DOMAIN: &[u8] = b"tickrate:pre-prepare";
const PREPARE_DOMAIN: &[u8] = b"tickrate:prepare";
const COMMIT_DOMAIN: &[u8] = b"tickrate:commit";
const CHECKPOINT_DOMAIN: &[u8] = b"tickrate:checkpoint";

fn signed_bytes(domain: &[u8], view: Option<u64>, sequence: u64, digest: &B256) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + 8 + 8 + 32);
    out.extend_from_slice(domain);
    if let Some(view) = view {
        out.extend_from_slice(&view.to_be_bytes());
    }
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(digest.as_slice());
    out
}

/// The bytes a commit vote signs and a commit certificate is checked against:
/// `b"tickrate:commit" || sequence (u64, big-endian) || digest`.
pub fn commit_message(sequence: u64, digest: &B256) -> Vec<u8> {
    signed_bytes(COMMIT_DOMAIN, None, sequence, digest)
}

/// The bytes a pre-prepare signs: `b"tickrate:pre-prepare" || view || sequence || digest`.
pub fn pre_prepare_message(view: u64, sequence: u64, digest: &B256) -> Vec<u8> {
    signed_bytes(PRE_PREPARE_DOMAIN, Some(view), sequence, digest)
}

/// The bytes a prepare signs: `b"tickrate:prepare" || view || sequence || digest`. The sender is
/// not part of it, so a quorum of prepares aggregates into one prepared certificate.
pub fn prepare_message(view: u64, sequence: u64, digest: &B256) -> Vec<u8> {
    signed_bytes(PREPARE_DOMAIN, Some(view), sequence, digest)
}

/// The bytes a checkpoint signs: `b"tickrate:checkpoint" || sequence || history digest`.
pub fn checkpoint_message(sequence: u64, history: &B256) -> Vec<u8> {
    signed_bytes(CHECKPOINT_DOMAIN, None, sequence, history)
}

fn verify(
    key: &BlsPublicKey,
    message: &[u8],
    signature: &BlsSignature,
) -> Result<(), RejectReason> {
    key.verify(message, signature)
        .map_err(|_| RejectReason::BadSignature)
}

/// The primary's proposal of `value` at `sequence` in `view`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrePrepare<V> {
    /// The view the primary proposes in.
    pub view: u64,
    /// The sequence number it assigned.
    pub sequence: u64,
    /// The value proposed.
    pub value: V,
    /// The primary's signature over [`pre_prepare_message`].
    pub signature: BlsSignature,
}

impl<V: Value> PrePrepare<V> {
    /// A pre-prepare signed by `secret`.
    pub fn new(secret: &BlsSecretKey, view: u64, sequence: u64, value: V) -> Self {
        let signature = secret.sign(&pre_prepare_message(view, sequence, &value.digest()));
        PrePrepare {
            view,
            sequence,
            value,
            signature,
        }
    }

    /// Checks the signature against the primary's `key`, given the value's `digest`.
    pub fn verify(&self, key: &BlsPublicKey, digest: &B256) -> Result<(), RejectReason> {
        let message = pre_prepare_message(self.view, self.sequence, digest);
        verify(key, &message, &self.signature)
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
    /// The voter's signature: over [`prepare_message`] for a prepare, over [`commit_message`]
    /// (which leaves the view out) for a commit.
    pub signature: BlsSignature,
}

impl Vote {
    /// A prepare signed by `secret`, validator `replica`.
    pub fn prepare(
        secret: &BlsSecretKey,
        view: u64,
        sequence: u64,
        digest: B256,
        replica: u16,
    ) -> Self {
        let signature = secret.sign(&prepare_message(view, sequence, &digest));
        Vote {
            view,
            sequence,
            digest,
            replica,
            signature,
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
        let signature = secret.sign(&commit_message(sequence, &digest));
        Vote {
            view,
            sequence,
            digest,
            replica,
            signature,
        }
    }

    /// Checks a prepare's signature against the voter's `key`.
    pub fn verify_prepare(&self, key: &BlsPublicKey) -> Result<(), RejectReason> {
        let message = prepare_message(self.view, self.sequence, &self.digest);
        verify(key, &message, &self.signature)
    }

    /// Checks a commit's signature against the voter's `key`.
    pub fn verify_commit(&self, key: &BlsPublicKey) -> Result<(), RejectReason> {
        let message = commit_message(self.sequence, &self.digest);
        verify(key, &message, &self.signature)
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

impl Decode for Vote {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Vote {
            view: decoder.u64()?,
            sequence: decoder.u64()?,
            digest: decoder.b256()?,
            replica: decoder.u16()?,
            signature: BlsSignature::decode(decoder)?,
        })
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

    /// Checks the signature against the sender's `key`.
    pub fn verify(&self, key: &BlsPublicKey) -> Result<(), RejectReason> {
        let message = checkpoint_message(self.sequence, &self.history);
        verify(key, &message, &self.signature)
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

/// A PBFT message between replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<V> {
    /// The primary assigns a sequence to a value.
    PrePrepare(PrePrepare<V>),
    /// A backup accepts the pre-prepare (after the application verified the value).
    Prepare(Vote),
    /// A replica has prepared the value and votes to commit it.
    Commit(Vote),
    /// A replica has committed every sequence up to a checkpoint.
    Checkpoint(Checkpoint),
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
        }
    }

    /// The sequence the message is about.
    pub fn sequence(&self) -> u64 {
        match self {
            Message::PrePrepare(pre_prepare) => pre_prepare.sequence,
            Message::Prepare(vote) | Message::Commit(vote) => vote.sequence,
            Message::Checkpoint(checkpoint) => checkpoint.sequence,
        }
    }
}

impl<V: Value> Encode for Message<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(MESSAGE_VERSION);
        match self {
            Message::PrePrepare(pre_prepare) => {
                out.push(TAG_PRE_PREPARE);
                out.extend_from_slice(&pre_prepare.view.to_be_bytes());
                out.extend_from_slice(&pre_prepare.sequence.to_be_bytes());
                pre_prepare.value.encode(out);
                pre_prepare.signature.encode(out);
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
        }
    }
}

impl<V: Value> Decode for Message<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("consensus message", &[MESSAGE_VERSION])?;
        match decoder.u8()? {
            TAG_PRE_PREPARE => Ok(Message::PrePrepare(PrePrepare {
                view: decoder.u64()?,
                sequence: decoder.u64()?,
                value: V::decode(decoder)?,
                signature: BlsSignature::decode(decoder)?,
            })),
            TAG_PREPARE => Ok(Message::Prepare(Vote::decode(decoder)?)),
            TAG_COMMIT => Ok(Message::Commit(Vote::decode(decoder)?)),
            TAG_CHECKPOINT => Ok(Message::Checkpoint(Checkpoint::decode(decoder)?)),
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

    #[test]
    fn every_message_round_trips_and_verifies() {
        let secret = secret();
        let key = secret.public_key();
        let value = B256::repeat_byte(3);
        let messages: Vec<Message<B256>> = vec![
            Message::PrePrepare(PrePrepare::new(&secret, 2, 5, value)),
            Message::Prepare(Vote::prepare(&secret, 2, 5, value, 1)),
            Message::Commit(Vote::commit(&secret, 2, 5, value, 1)),
            Message::Checkpoint(Checkpoint::new(&secret, 16, value, 1)),
        ];
        for message in messages {
            let decoded = Message::<B256>::from_wire(&message.to_bytes());
            assert_eq!(decoded.as_ref(), Ok(&message));
            let verified = match &message {
                Message::PrePrepare(pre_prepare) => pre_prepare.verify(&key, &value),
                Message::Prepare(vote) => vote.verify_prepare(&key),
                Message::Commit(vote) => vote.verify_commit(&key),
                Message::Checkpoint(checkpoint) => checkpoint.verify(&key),
            };
            assert_eq!(verified, Ok(()), "{}", message.kind());
        }
    }

    #[test]
    fn signatures_are_domain_separated() {
        let secret = secret();
        let key = secret.public_key();
        let digest = B256::repeat_byte(9);
        // A prepare's signature is not a commit's, though both name the same sequence and digest.
        let mut prepare = Vote::prepare(&secret, 0, 1, digest, 0);
        assert_eq!(prepare.verify_commit(&key), Err(RejectReason::BadSignature));
        // The commit leaves the view out: the same vote signs alike in every view.
        let commit_view_0 = Vote::commit(&secret, 0, 1, digest, 0);
        let commit_view_3 = Vote::commit(&secret, 3, 1, digest, 0);
        assert_eq!(commit_view_0.signature, commit_view_3.signature);
        // The prepare names the view.
        prepare.view = 1;
        assert_eq!(
            prepare.verify_prepare(&key),
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
