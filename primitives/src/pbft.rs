//! What PBFT votes sign, and the equivocation evidence built from two of them.
//!
//! These live here rather than in `consensus` because the upper chain checks evidence too, and
//! it may not depend on `consensus`: it must rebuild the exact bytes a sequencer signed from the
//! evidence alone, with the offender's key from its own registry.

use crate::{
    B256, Decode, DecodeError, Decoder, Encode, NodeId, Signature,
    bls::{BlsPublicKey, BlsSignature},
    keccak256,
};

/// Domain of a pre-prepare's signed bytes.
pub const PRE_PREPARE_DOMAIN: &[u8] = b"tickrate:pre-prepare";
/// Domain of a prepare's signed bytes.
pub const PREPARE_DOMAIN: &[u8] = b"tickrate:prepare";
/// Domain of a commit's signed bytes.
pub const COMMIT_DOMAIN: &[u8] = b"tickrate:commit";

const EVIDENCE_VERSION: u8 = 1;

/// The layout every PBFT signature covers: `domain || view || sequence || digest`, integers
/// big-endian, the view left out for messages that name none (checkpoints).
pub fn signed_bytes(domain: &[u8], view: Option<u64>, sequence: u64, digest: &B256) -> Vec<u8> {
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
/// `b"tickrate:commit" || view || sequence || digest` (integers big-endian).
pub fn commit_message(view: u64, sequence: u64, digest: &B256) -> Vec<u8> {
    signed_bytes(COMMIT_DOMAIN, Some(view), sequence, digest)
}

/// The view, sequence and digest a commit's signed bytes ([`commit_message`]) name, or `None`
/// for bytes that are not a commit's: what the upper chain reads from a certified commitment to
/// learn which sequence (and so which sequencer epoch) it certifies.
pub fn parse_commit_message(bytes: &[u8]) -> Option<(u64, u64, B256)> {
    let rest = bytes.strip_prefix(COMMIT_DOMAIN)?;
    if rest.len() != 8 + 8 + 32 {
        return None;
    }
    let view = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let sequence = u64::from_be_bytes(rest[8..16].try_into().ok()?);
    Some((view, sequence, B256::from_slice(&rest[16..])))
}

/// The bytes a pre-prepare signs: `b"tickrate:pre-prepare" || view || sequence || digest`.
pub fn pre_prepare_message(view: u64, sequence: u64, digest: &B256) -> Vec<u8> {
    signed_bytes(PRE_PREPARE_DOMAIN, Some(view), sequence, digest)
}

/// What a primary's operator key signs for a pre-prepare: the keccak-256 of
/// [`pre_prepare_message`], so the upper chain checks it with `ecrecover`.
pub fn pre_prepare_prehash(view: u64, sequence: u64, digest: &B256) -> B256 {
    keccak256(pre_prepare_message(view, sequence, digest))
}

/// The bytes a prepare signs: `b"tickrate:prepare" || view || sequence || digest`.
pub fn prepare_message(view: u64, sequence: u64, digest: &B256) -> Vec<u8> {
    signed_bytes(PREPARE_DOMAIN, Some(view), sequence, digest)
}

/// What a backup's operator key signs for a prepare: the keccak-256 of [`prepare_message`], so
/// the upper chain checks it with `ecrecover`.
pub fn prepare_prehash(view: u64, sequence: u64, digest: &B256) -> B256 {
    keccak256(prepare_message(view, sequence, digest))
}

/// Which key signs a PBFT message kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// The sender's operator key (secp256k1), over the keccak-256 of the kind's message.
    Operator,
    /// The sender's BLS key, over the kind's message.
    Bls,
}

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
    /// The kind's byte in the evidence encoding (and the contract's `kind` argument).
    pub fn tag(self) -> u8 {
        match self {
            EvidenceKind::PrePrepare => 0,
            EvidenceKind::Prepare => 1,
            EvidenceKind::Commit => 2,
        }
    }

    /// The key that signs messages of this kind.
    pub fn scheme(self) -> Scheme {
        match self {
            EvidenceKind::PrePrepare | EvidenceKind::Prepare => Scheme::Operator,
            EvidenceKind::Commit => Scheme::Bls,
        }
    }

    /// The kind a tag names.
    pub fn from_tag(tag: u8) -> Result<Self, DecodeError> {
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

/// A signature on a PBFT message of one replica. Pre-prepares and prepares are signed by the
/// sender's operator key (the secp256k1 key its node ID is the address of): neither ever
/// leaves the validators except inside a view change or as evidence, and recovering a signer
/// costs a small fraction of the pairing a BLS check is, on the critical path of every batch.
/// Commits are signed by the voter's BLS key, so a quorum of them aggregates into the one
/// commit certificate that leaves the set (to the upper chain, to a replica catching up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PbftSignature {
    /// A pre-prepare's or a prepare's, over the keccak-256 of the kind's message.
    Operator(Signature),
    /// A commit's, over the kind's message.
    Bls(BlsSignature),
}

impl PbftSignature {
    /// The operator-key signature, if that is the scheme.
    pub fn operator(&self) -> Option<Signature> {
        match self {
            PbftSignature::Operator(signature) => Some(*signature),
            PbftSignature::Bls(_) => None,
        }
    }

    /// The BLS signature, if that is the scheme.
    pub fn bls(&self) -> Option<BlsSignature> {
        match self {
            PbftSignature::Bls(signature) => Some(*signature),
            PbftSignature::Operator(_) => None,
        }
    }

    /// Writes the signature, untagged: the message kind decides the scheme.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            PbftSignature::Operator(signature) => signature.encode(out),
            PbftSignature::Bls(signature) => signature.encode(out),
        }
    }

    /// The signature a message of `kind` carries: the kind decides the scheme, so the encoding
    /// needs no tag of its own.
    pub fn decode(kind: EvidenceKind, decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match kind.scheme() {
            Scheme::Operator => PbftSignature::Operator(Signature::decode(decoder)?),
            Scheme::Bls => PbftSignature::Bls(BlsSignature::decode(decoder)?),
        })
    }
}

/// One signed digest of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The digest signed.
    pub digest: B256,
    /// The offender's signature over the kind's message naming `digest`.
    pub signature: PbftSignature,
}

/// Validator `offender` signed two different digests where a correct validator signs one.
///
/// The pair alone, with the offender's key, proves the offence: no correct validator signs two
/// pre-prepares, prepares or commits for one `(view, sequence)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EquivocationEvidence {
    /// What was signed twice.
    pub kind: EvidenceKind,
    /// The offender's index in the validator set the votes were cast in.
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

/// Why a piece of evidence proves nothing against a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The digests are equal or out of canonical order.
    #[error("not a canonical pair of different digests")]
    NotCanonical,
    /// A signature does not verify against the offender's key.
    #[error("bad signature")]
    BadSignature,
}

impl EquivocationEvidence {
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
        EquivocationEvidence {
            kind,
            offender,
            view,
            sequence,
            first,
            second,
        }
    }

    /// The bytes the offender signed for `digest`: the kind's message at the evidence's view
    /// and sequence.
    pub fn signed_message(&self, digest: &B256) -> Vec<u8> {
        match self.kind {
            EvidenceKind::PrePrepare => pre_prepare_message(self.view, self.sequence, digest),
            EvidenceKind::Prepare => prepare_message(self.view, self.sequence, digest),
            EvidenceKind::Commit => commit_message(self.view, self.sequence, digest),
        }
    }

    /// Checks that the offender — node `offender_id` (whose operator key signs pre-prepares and
    /// prepares) holding `offender_key` (which signs commits) — signed both digests, and that they differ
    /// and are in canonical order. Whether these are the offender's in some validator set (and,
    /// for pre-prepares, that view's primary) is the caller's to check.
    pub fn verify(
        &self,
        offender_id: &NodeId,
        offender_key: &BlsPublicKey,
    ) -> Result<(), EvidenceError> {
        // Equal digests are no offence; the wrong order is a second encoding of one offence.
        if self.first.digest >= self.second.digest {
            return Err(EvidenceError::NotCanonical);
        }
        for signed in [&self.first, &self.second] {
            let message = self.signed_message(&signed.digest);
            let signed_by_offender = match (self.kind.scheme(), &signed.signature) {
                (Scheme::Operator, PbftSignature::Operator(signature)) => {
                    signature.recover_address(&keccak256(&message)).ok() == Some(offender_id.0)
                }
                (Scheme::Bls, PbftSignature::Bls(signature)) => {
                    offender_key.verify(&message, signature).is_ok()
                }
                _ => false,
            };
            if !signed_by_offender {
                return Err(EvidenceError::BadSignature);
            }
        }
        Ok(())
    }
}

impl Encode for EquivocationEvidence {
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

impl Decode for EquivocationEvidence {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("evidence", &[EVIDENCE_VERSION])?;
        let kind = EvidenceKind::from_tag(decoder.u8()?)?;
        let offender = decoder.u16()?;
        let view = decoder.u64()?;
        let sequence = decoder.u64()?;
        let mut signed = || -> Result<Signed, DecodeError> {
            Ok(Signed {
                digest: decoder.b256()?,
                signature: PbftSignature::decode(kind, decoder)?,
            })
        };
        let first = signed()?;
        let second = signed()?;
        Ok(EquivocationEvidence {
            kind,
            offender,
            view,
            sequence,
            first,
            second,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountKey, bls::BlsSecretKey};

    fn digest(byte: u8) -> B256 {
        B256::repeat_byte(byte)
    }

    fn commit(secret: &BlsSecretKey, digest: B256) -> Signed {
        Signed {
            digest,
            signature: PbftSignature::Bls(secret.sign(&commit_message(3, 7, &digest))),
        }
    }

    fn pre_prepare(operator: &AccountKey, digest: B256) -> Signed {
        Signed {
            digest,
            signature: PbftSignature::Operator(
                operator.sign_prehash(&pre_prepare_prehash(3, 7, &digest)),
            ),
        }
    }

    fn prepare(operator: &AccountKey, digest: B256) -> Signed {
        Signed {
            digest,
            signature: PbftSignature::Operator(
                operator.sign_prehash(&prepare_prehash(3, 7, &digest)),
            ),
        }
    }

    #[test]
    fn message_bytes_are_the_documented_layout() {
        let d = digest(0xab);
        let mut expected = b"tickrate:commit".to_vec();
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(d.as_slice());
        assert_eq!(commit_message(3, 7, &d), expected);
        assert!(prepare_message(3, 7, &d).starts_with(b"tickrate:prepare"));
        assert!(pre_prepare_message(3, 7, &d).starts_with(b"tickrate:pre-prepare"));
        assert_eq!(signed_bytes(b"x", None, 1, &d).len(), 1 + 8 + 32);
    }

    #[test]
    fn evidence_verifies_under_its_signer_only_and_round_trips() {
        let secret = BlsSecretKey::from_seed(&[1; 32]);
        let stranger = BlsSecretKey::from_seed(&[2; 32]).public_key();
        let evidence = EquivocationEvidence::new(
            EvidenceKind::Commit,
            0,
            3,
            7,
            commit(&secret, digest(9)),
            commit(&secret, digest(2)),
        );
        let id = NodeId(AccountKey::from_seed(1).address());
        assert!(evidence.first.digest < evidence.second.digest);
        assert_eq!(evidence.verify(&id, &secret.public_key()), Ok(()));
        assert_eq!(
            evidence.verify(&id, &stranger),
            Err(EvidenceError::BadSignature)
        );
        assert_eq!(
            EquivocationEvidence::from_bytes(&evidence.to_bytes()),
            Ok(evidence.clone())
        );
        let mut swapped = evidence.clone();
        std::mem::swap(&mut swapped.first, &mut swapped.second);
        assert_eq!(
            swapped.verify(&id, &secret.public_key()),
            Err(EvidenceError::NotCanonical)
        );
        let mut equal = evidence.clone();
        equal.second = equal.first;
        assert_eq!(
            equal.verify(&id, &secret.public_key()),
            Err(EvidenceError::NotCanonical)
        );
        // The same signatures say nothing as prepares, nor as pre-prepares.
        let mut prepares = evidence.clone();
        prepares.kind = EvidenceKind::Prepare;
        assert_eq!(
            prepares.verify(&id, &secret.public_key()),
            Err(EvidenceError::BadSignature)
        );
        let mut pre_prepares = evidence;
        pre_prepares.kind = EvidenceKind::PrePrepare;
        assert_eq!(
            pre_prepares.verify(&id, &secret.public_key()),
            Err(EvidenceError::BadSignature)
        );
    }

    #[test]
    fn prepare_evidence_is_signed_by_the_offenders_operator_key() {
        let operator = AccountKey::from_seed(6);
        let id = NodeId(operator.address());
        let key = BlsSecretKey::from_seed(&[1; 32]).public_key();
        let evidence = EquivocationEvidence::new(
            EvidenceKind::Prepare,
            1,
            3,
            7,
            prepare(&operator, digest(4)),
            prepare(&operator, digest(5)),
        );
        assert_eq!(evidence.verify(&id, &key), Ok(()));
        let stranger = NodeId(AccountKey::from_seed(7).address());
        assert_eq!(
            evidence.verify(&stranger, &key),
            Err(EvidenceError::BadSignature)
        );
        assert_eq!(
            EquivocationEvidence::from_bytes(&evidence.to_bytes()),
            Ok(evidence.clone())
        );
        // A prepare's signature is no pre-prepare's: the domains differ.
        let mut pre_prepares = evidence;
        pre_prepares.kind = EvidenceKind::PrePrepare;
        assert_eq!(
            pre_prepares.verify(&id, &key),
            Err(EvidenceError::BadSignature)
        );
    }

    #[test]
    fn pre_prepare_evidence_is_signed_by_the_offenders_operator_key() {
        let operator = AccountKey::from_seed(4);
        let id = NodeId(operator.address());
        let stranger = NodeId(AccountKey::from_seed(5).address());
        let key = BlsSecretKey::from_seed(&[1; 32]).public_key();
        let evidence = EquivocationEvidence::new(
            EvidenceKind::PrePrepare,
            2,
            3,
            7,
            pre_prepare(&operator, digest(1)),
            pre_prepare(&operator, digest(8)),
        );
        assert_eq!(evidence.verify(&id, &key), Ok(()));
        assert_eq!(
            evidence.verify(&stranger, &key),
            Err(EvidenceError::BadSignature)
        );
        let bytes = evidence.to_bytes();
        assert_eq!(
            EquivocationEvidence::from_bytes(&bytes),
            Ok(evidence.clone())
        );
        // The same signatures say nothing as commits, whose signatures are BLS.
        let mut retagged = bytes;
        retagged[1] = EvidenceKind::Commit.tag();
        assert!(EquivocationEvidence::from_bytes(&retagged).is_err());
    }

    #[test]
    fn a_commit_message_parses_back_and_nothing_else_does() {
        let digest = B256::repeat_byte(7);
        let message = commit_message(3, 41, &digest);
        assert_eq!(parse_commit_message(&message), Some((3, 41, digest)));
        assert_eq!(parse_commit_message(&prepare_message(3, 41, &digest)), None);
        assert_eq!(parse_commit_message(&message[..message.len() - 1]), None);
        assert_eq!(
            parse_commit_message(&[message.clone(), vec![0]].concat()),
            None
        );
    }
}
