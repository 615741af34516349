//! Equivocation evidence: two messages one validator signed for one slot that no correct
//! validator signs both of. Anyone holding the validator set checks it, so it can be recorded on
//! the upper chain to expel the offender.

use primitives::{
    B256, Decode, DecodeError, Decoder, Encode,
    bls::{BlsPublicKey, BlsSignature},
};

use crate::{
    message::{commit_message, pre_prepare_message, prepare_message},
    validator::ValidatorSet,
};

const EVIDENCE_VERSION: u8 = 1;

/// What the offender signed twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EvidenceKind {
    /// Two pre-prepares for one `(view, sequence)` by that view's primary.
    PrePrepare,
    /// Two prepares for one `(view, sequence)`.
    Prepare,
    /// Two commits for one `(view, sequence)`.
    Commit,
}

impl EvidenceKind {
    fn tag(self) -> u8 {
        match self {
            EvidenceKind::PrePrepare => 0,
            EvidenceKind::Prepare => 1,
            EvidenceKind::Commit => 2,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        match tag {
            0 => Ok(EvidenceKind::PrePrepare),
            1 => Ok(EvidenceKind::Prepare),
            2 => Ok(EvidenceKind::Commit),
            tag => Err(DecodeError::UnknownTag {
                what: "evidence kind",
                tag,
            }),
        }
    }
}

/// One signed digest of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The digest signed.
    pub digest: B256,
    /// The offender's signature over the kind's message naming `digest`.
    pub signature: BlsSignature,
}

/// Validator `offender` signed two different digests where a correct validator signs one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// What was signed twice.
    pub kind: EvidenceKind,
    /// The offender's index in the validator set.
    pub offender: u16,
    /// The view of both messages.
    pub view: u64,
    /// The sequence of both messages.
    pub sequence: u64,
    /// The signed digest that sorts first (the order is canonical: one offence, one encoding).
    pub first: Signed,
    /// The other one.
    pub second: Signed,
}

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

impl Evidence {
    /// The evidence that `offender` signed both `one` and `other` (in either order).
    ///
    /// # Panics
    /// If the digests are equal: that is no offence.
    pub fn new(
        kind: EvidenceKind,
        offender: u16,
        view: u64,
        sequence: u64,
        one: Signed,
        other: Signed,
    ) -> Self {
        assert!(one.digest != other.digest, "evidence names two digests");
        let (first, second) = if one.digest < other.digest {
            (one, other)
        } else {
            (other, one)
        };
        Evidence {
            kind,
            offender,
            view,
            sequence,
            first,
            second,
        }
    }

    /// The bytes the offender signed for `digest`.
    fn signed_message(&self, digest: &B256) -> Vec<u8> {
        match self.kind {
            EvidenceKind::PrePrepare => pre_prepare_message(self.view, self.sequence, digest),
            EvidenceKind::Prepare => prepare_message(self.view, self.sequence, digest),
            EvidenceKind::Commit => commit_message(self.view, self.sequence, digest),
        }
    }

    /// Checks that the offender, a member of `validators`, signed both digests.
    pub fn verify(&self, validators: &ValidatorSet) -> Result<(), EvidenceError> {
        let offender =
            validators
                .get(usize::from(self.offender))
                .ok_or(EvidenceError::UnknownOffender {
                    offender: self.offender,
                })?;
        if self.kind == EvidenceKind::PrePrepare
            && validators.primary_index(self.view) != usize::from(self.offender)
        {
            return Err(EvidenceError::NotPrimary {
                offender: self.offender,
                view: self.view,
            });
        }
        if self.first.digest >= self.second.digest {
            return Err(EvidenceError::NotCanonical);
        }
        for signed in [&self.first, &self.second] {
            verify_signed(&offender.key, &self.signed_message(&signed.digest), signed)?;
        }
        Ok(())
    }
}

fn verify_signed(key: &BlsPublicKey, message: &[u8], signed: &Signed) -> Result<(), EvidenceError> {
    key.verify(message, &signed.signature)
        .map_err(|_| EvidenceError::BadSignature)
}

impl Encode for Evidence {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(EVIDENCE_VERSION);
        out.push(self.kind.tag());
        out.extend_from_slice(&self.offender.to_be_bytes());
        out.extend_from_slice(&self.view.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        for signed in [&self.first, &self.second] {
            signed.digest.encode(out);
            signed.signature.encode(out);
        }
    }
}

impl Decode for Evidence {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("evidence", &[EVIDENCE_VERSION])?;
        let kind = EvidenceKind::from_tag(decoder.u8()?)?;
        let offender = decoder.u16()?;
        let view = decoder.u64()?;
        let sequence = decoder.u64()?;
        let mut signed = || -> Result<Signed, DecodeError> {
            Ok(Signed {
                digest: decoder.b256()?,
                signature: BlsSignature::decode(decoder)?,
            })
        };
        let first = signed()?;
        let second = signed()?;
        Ok(Evidence {
            kind,
            offender,
            view,
            sequence,
            first,
            second,
        })
    }
}
