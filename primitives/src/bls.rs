//! BLS12-381 keys and aggregate certificates (blst, public keys in G1, signatures in G2).
//!
//! A sequencer's or group member's vote is a BLS signature; a quorum of votes on one message
//! aggregates into one signature plus a signer bitmap ([`Certificate`]). Keys are checked with a
//! proof of possession when they are registered, which is what makes verifying an aggregate
//! against the sum of public keys safe from rogue-key attacks.

use std::fmt;

use blst::{
    BLST_ERROR, Pairing, blst_fp12, blst_p2, blst_p2_affine, blst_scalar,
    min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, SecretKey, Signature},
};

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode, put_bytes},
    constants::VALIDATORS_MAX,
};

const SIGNATURE_DST: &[u8] = b"TICKRATE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
const POSSESSION_DST: &[u8] = b"TICKRATE_BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// Why a BLS key, signature or certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlsError {
    /// Bytes that are not a valid point or scalar.
    #[error("malformed BLS {what}")]
    Malformed {
        /// Key, signature or secret.
        what: &'static str,
    },
    /// The signature does not verify.
    #[error("BLS signature does not verify")]
    BadSignature,
    /// The certificate names fewer signers than the quorum.
    #[error("certificate has {signers} signers, needs {quorum}")]
    TooFewSigners {
        /// Signers named by the bitmap.
        signers: usize,
        /// Signers required.
        quorum: usize,
    },
    /// The bitmap names a signer beyond the validator set.
    #[error("certificate names signer {index} of a set of {validators}")]
    UnknownSigner {
        /// Index of the signer.
        index: usize,
        /// Size of the set.
        validators: usize,
    },
    /// Nothing to aggregate.
    #[error("no signatures to aggregate")]
    Empty,
}

/// A BLS secret key.
#[derive(Clone)]
pub struct BlsSecretKey(SecretKey);

impl fmt::Debug for BlsSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsSecretKey({:?})", self.public_key())
    }
}

impl BlsSecretKey {
    /// Derives a key from at least 32 bytes of keying material (IETF KeyGen).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        BlsSecretKey(SecretKey::key_gen(seed, b"tickrate").expect("32 bytes of keying material"))
    }

    /// The matching public key.
    pub fn public_key(&self) -> BlsPublicKey {
        BlsPublicKey(self.0.sk_to_pk())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> BlsSignature {
        BlsSignature(self.0.sign(message, SIGNATURE_DST, &[]).compress())
    }

    /// Signs a message hashed once with [`HashedMessage::new`]: the same signature as
    /// [`sign`](Self::sign) over its bytes, without hashing them again.
    // blst's Rust binding signs only bytes it hashes itself: signing a point takes its C call.
    #[allow(unsafe_code)]
    pub fn sign_hashed(&self, message: &HashedMessage) -> BlsSignature {
        let scalar: &blst_scalar = (&self.0).into();
        let mut signature = blst_p2::default();
        let mut out = [0u8; 96];
        // SAFETY: every pointer is to a live, initialised value of the type blst expects, and
        // `out` has the 96 bytes a compressed G2 point takes.
        unsafe {
            blst::blst_sign_pk_in_g1(&mut signature, &message.projective, scalar);
            blst::blst_p2_compress(out.as_mut_ptr(), &signature);
        }
        BlsSignature(out)
    }

    /// A proof that this key's owner holds the secret, checked at registration.
    pub fn proof_of_possession(&self) -> BlsSignature {
        BlsSignature(
            self.0
                .sign(&self.public_key().to_bytes(), POSSESSION_DST, &[])
                .compress(),
        )
    }
}

/// A message hashed to G2 (with the signature domain), once.
///
/// Hashing to the curve is about a quarter of a signature check and half of a signing; a
/// replica signs a vote's bytes and then checks the quorum over the same bytes, so it hashes
/// them once for both.
#[derive(Clone)]
pub struct HashedMessage {
    projective: blst_p2,
    affine: blst_p2_affine,
}

impl fmt::Debug for HashedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashedMessage(..)")
    }
}

impl HashedMessage {
    /// Hashes `message` as [`BlsSecretKey::sign`] and the checks here do.
    // blst's Rust binding has no safe hash to G2: it takes the C call.
    #[allow(unsafe_code)]
    pub fn new(message: &[u8]) -> Self {
        let mut projective = blst_p2::default();
        let mut affine = blst_p2_affine::default();
        // SAFETY: the pointers and lengths are those of live slices, no augmentation (null,
        // 0), and the outputs are live, initialised points.
        unsafe {
            blst::blst_hash_to_g2(
                &mut projective,
                message.as_ptr(),
                message.len(),
                SIGNATURE_DST.as_ptr(),
                SIGNATURE_DST.len(),
                std::ptr::null(),
                0,
            );
            blst::blst_p2_to_affine(&mut affine, &projective);
        }
        HashedMessage { projective, affine }
    }
}

/// Checks `signature` (in the subgroup) against `key` over a hashed message: one pairing
/// product `e(key, H(m)) == e(g1, signature)`.
fn verify_hashed_point(
    signature: &Signature,
    message: &HashedMessage,
    key: &PublicKey,
) -> Result<(), BlsError> {
    if !signature.subgroup_check() {
        return Err(BlsError::BadSignature);
    }
    let mut pairing = Pairing::new(true, SIGNATURE_DST);
    pairing.raw_aggregate(&message.affine, key.into());
    pairing.commit();
    let mut gtsig = blst_fp12::default();
    Pairing::aggregated(&mut gtsig, <&blst_p2_affine>::from(signature));
    if pairing.finalverify(Some(&gtsig)) {
        Ok(())
    } else {
        Err(BlsError::BadSignature)
    }
}

/// The first bit of a compressed point's encoding (the ZCash serialization BLS uses).
const COMPRESSED_FLAG: u8 = 0x80;

/// A BLS public key (compressed G1 point, 48 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlsPublicKey(PublicKey);

impl fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BlsPublicKey(0x{}..)",
            alloy_primitives::hex::encode(&self.to_bytes()[..6])
        )
    }
}

impl BlsPublicKey {
    /// The compressed encoding.
    pub fn to_bytes(&self) -> [u8; 48] {
        self.0.compress()
    }

    /// Parses and validates (on the curve, in the subgroup, not infinity) a compressed key.
    pub fn from_bytes(bytes: &[u8; 48]) -> Result<Self, BlsError> {
        let key =
            PublicKey::key_validate(bytes).map_err(|_| BlsError::Malformed { what: "key" })?;
        Ok(BlsPublicKey(key))
    }

    /// Checks a signature by this key over `message`.
    pub fn verify(&self, message: &[u8], signature: &BlsSignature) -> Result<(), BlsError> {
        match signature
            .point()?
            .verify(true, message, SIGNATURE_DST, &[], &self.0, false)
        {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(BlsError::BadSignature),
        }
    }

    /// Checks a proof of possession made by [`BlsSecretKey::proof_of_possession`].
    pub fn verify_possession(&self, proof: &BlsSignature) -> Result<(), BlsError> {
        match proof
            .point()?
            .verify(true, &self.to_bytes(), POSSESSION_DST, &[], &self.0, false)
        {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(BlsError::BadSignature),
        }
    }
}

impl Encode for BlsPublicKey {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

impl Decode for BlsPublicKey {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        BlsPublicKey::from_bytes(&decoder.array::<48>()?).map_err(|_| DecodeError::Invalid {
            what: "BLS public key",
            why: "not a G1 point",
        })
    }
}

/// A BLS signature: a compressed G2 point, 96 bytes.
///
/// It is kept compressed, and decompressed (a square root in Fp2) and checked to be in the
/// subgroup only when it is verified or aggregated: a node decodes many signatures it never
/// needs to check (duplicates, stale messages, signatures whose check it remembers).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlsSignature([u8; 96]);

impl fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BlsSignature(0x{}..)",
            alloy_primitives::hex::encode(&self.to_bytes()[..6])
        )
    }
}

impl BlsSignature {
    /// The compressed encoding.
    pub fn to_bytes(&self) -> [u8; 96] {
        self.0
    }

    /// Takes a compressed signature. Only its form is checked here (the compression flag);
    /// the point itself when it is verified or aggregated, where a bad one is refused.
    pub fn from_bytes(bytes: &[u8; 96]) -> Result<Self, BlsError> {
        if bytes[0] & COMPRESSED_FLAG == 0 {
            return Err(BlsError::Malformed { what: "signature" });
        }
        Ok(BlsSignature(*bytes))
    }

    /// The point, decompressed (not yet checked to be in the subgroup: verification does).
    fn point(&self) -> Result<Signature, BlsError> {
        Signature::from_bytes(&self.0).map_err(|_| BlsError::Malformed { what: "signature" })
    }

    /// Aggregates signatures into one.
    ///
    /// The parts are decompressed but not checked to be in the subgroup (the IETF `Aggregate`):
    /// whoever verifies the aggregate checks it, once, instead of once per part, and an
    /// aggregate with a part outside the group fails that check or the pairing.
    pub fn aggregate(signatures: &[&BlsSignature]) -> Result<BlsSignature, BlsError> {
        if signatures.is_empty() {
            return Err(BlsError::Empty);
        }
        let points = signatures
            .iter()
            .map(|signature| signature.point())
            .collect::<Result<Vec<Signature>, BlsError>>()?;
        let raw: Vec<&Signature> = points.iter().collect();
        AggregateSignature::aggregate(&raw, false)
            .map(|aggregate| BlsSignature(aggregate.to_signature().compress()))
            .map_err(|_| BlsError::Malformed { what: "signature" })
    }
}

impl Encode for BlsSignature {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

impl Decode for BlsSignature {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        BlsSignature::from_bytes(&decoder.array::<96>()?).map_err(|_| DecodeError::Invalid {
            what: "BLS signature",
            why: "not a G2 point",
        })
    }
}

/// Which validators of an ordered set signed: bit `i` is validator `i`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SignerBitmap {
    bits: Vec<u8>,
}

impl SignerBitmap {
    /// An empty bitmap.
    pub fn new() -> Self {
        SignerBitmap::default()
    }

    /// Marks validator `index` as a signer.
    pub fn insert(&mut self, index: usize) {
        assert!(
            index < VALIDATORS_MAX,
            "validator index {index} beyond VALIDATORS_MAX"
        );
        let byte = index / 8;
        if self.bits.len() <= byte {
            self.bits.resize(byte + 1, 0);
        }
        self.bits[byte] |= 1 << (index % 8);
    }

    /// Whether validator `index` signed.
    pub fn contains(&self, index: usize) -> bool {
        self.bits
            .get(index / 8)
            .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
    }

    /// Indices of the signers, ascending.
    pub fn signers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.bits.len() * 8).filter(|index| self.contains(*index))
    }

    /// How many validators signed.
    pub fn count(&self) -> usize {
        self.bits
            .iter()
            .map(|byte| byte.count_ones() as usize)
            .sum()
    }
}

impl Encode for SignerBitmap {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.bits);
    }
}

impl Decode for SignerBitmap {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let bits = decoder
            .bytes("signer bitmap", VALIDATORS_MAX.div_ceil(8))?
            .to_vec();
        Ok(SignerBitmap { bits })
    }
}

/// A quorum certificate: one aggregate signature and the bitmap of who signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// Who signed, by index in the validator set.
    pub signers: SignerBitmap,
    /// The aggregate of their signatures over one message.
    pub signature: BlsSignature,
}

impl Certificate {
    /// Aggregates `(validator index, signature)` votes on one message.
    pub fn aggregate(votes: &[(usize, BlsSignature)]) -> Result<Certificate, BlsError> {
        let mut signers = SignerBitmap::new();
        for (index, _) in votes {
            signers.insert(*index);
        }
        let signatures: Vec<&BlsSignature> = votes.iter().map(|(_, signature)| signature).collect();
        Ok(Certificate {
            signers,
            signature: BlsSignature::aggregate(&signatures)?,
        })
    }

    /// The keys of the signers, if they are at least `quorum` of `validators`.
    fn signer_keys<'a>(
        &self,
        validators: &'a [BlsPublicKey],
        quorum: usize,
    ) -> Result<Vec<&'a PublicKey>, BlsError> {
        let mut keys = Vec::with_capacity(validators.len());
        for index in self.signers.signers() {
            let key = validators.get(index).ok_or(BlsError::UnknownSigner {
                index,
                validators: validators.len(),
            })?;
            keys.push(&key.0);
        }
        if keys.len() < quorum {
            return Err(BlsError::TooFewSigners {
                signers: keys.len(),
                quorum,
            });
        }
        Ok(keys)
    }

    /// [`verify`](Self::verify) over a message hashed once with [`HashedMessage::new`].
    pub fn verify_hashed(
        &self,
        message: &HashedMessage,
        validators: &[BlsPublicKey],
        quorum: usize,
    ) -> Result<(), BlsError> {
        let keys = self.signer_keys(validators, quorum)?;
        if keys.is_empty() {
            return Err(BlsError::Empty);
        }
        let key = AggregatePublicKey::aggregate(&keys, false)
            .map_err(|_| BlsError::Malformed { what: "key" })?
            .to_public_key();
        verify_hashed_point(&self.signature.point()?, message, &key)
    }

    /// Verifies that at least `quorum` of `validators` signed `message`.
    pub fn verify(
        &self,
        message: &[u8],
        validators: &[BlsPublicKey],
        quorum: usize,
    ) -> Result<(), BlsError> {
        let keys = self.signer_keys(validators, quorum)?;
        match self
            .signature
            .point()?
            .fast_aggregate_verify(true, message, SIGNATURE_DST, &keys)
        {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(BlsError::BadSignature),
        }
    }
}

impl Encode for Certificate {
    fn encode(&self, out: &mut Vec<u8>) {
        self.signers.encode(out);
        self.signature.encode(out);
    }
}

impl Decode for Certificate {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Certificate {
            signers: SignerBitmap::decode(decoder)?,
            signature: BlsSignature::decode(decoder)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(count: u8) -> Vec<BlsSecretKey> {
        (0..count)
            .map(|index| BlsSecretKey::from_seed(&[index + 1; 32]))
            .collect()
    }

    #[test]
    fn certificate_verifies_with_quorum_and_fails_otherwise() {
        let secrets = keys(4);
        let publics: Vec<BlsPublicKey> = secrets.iter().map(BlsSecretKey::public_key).collect();
        let message = b"batch 7";
        let votes: Vec<(usize, BlsSignature)> = [0usize, 2, 3]
            .iter()
            .map(|index| (*index, secrets[*index].sign(message)))
            .collect();
        let certificate = Certificate::aggregate(&votes).expect("votes");
        assert_eq!(certificate.verify(message, &publics, 3), Ok(()));
        assert_eq!(
            certificate.verify(message, &publics, 4),
            Err(BlsError::TooFewSigners {
                signers: 3,
                quorum: 4
            })
        );
        assert_eq!(
            certificate.verify(b"batch 8", &publics, 3),
            Err(BlsError::BadSignature)
        );

        // Claiming a signer who did not sign breaks the aggregate.
        let mut forged = certificate.clone();
        forged.signers.insert(1);
        assert_eq!(
            forged.verify(message, &publics, 3),
            Err(BlsError::BadSignature)
        );

        let decoded = Certificate::from_bytes(&certificate.to_bytes()).expect("round trip");
        assert_eq!(decoded, certificate);
    }

    #[test]
    fn a_hashed_message_signs_and_verifies_as_its_bytes_do() {
        let secrets = keys(4);
        let publics: Vec<BlsPublicKey> = secrets.iter().map(BlsSecretKey::public_key).collect();
        let hashed = HashedMessage::new(b"commit 7");
        let other = HashedMessage::new(b"commit 8");
        for secret in &secrets {
            assert_eq!(secret.sign_hashed(&hashed), secret.sign(b"commit 7"));
        }
        let votes: Vec<(usize, BlsSignature)> = [0usize, 2, 3]
            .iter()
            .map(|index| (*index, secrets[*index].sign_hashed(&hashed)))
            .collect();
        let certificate = Certificate::aggregate(&votes).expect("votes");
        assert_eq!(certificate.verify(b"commit 7", &publics, 3), Ok(()));
        assert_eq!(certificate.verify_hashed(&hashed, &publics, 3), Ok(()));
        assert_eq!(
            certificate.verify_hashed(&other, &publics, 3),
            Err(BlsError::BadSignature)
        );
        assert_eq!(
            certificate.verify_hashed(&hashed, &publics, 4),
            Err(BlsError::TooFewSigners {
                signers: 3,
                quorum: 4
            })
        );
        let mut forged = certificate.clone();
        forged.signers.insert(1);
        assert_eq!(
            forged.verify_hashed(&hashed, &publics, 3),
            Err(BlsError::BadSignature)
        );
        // One vote, as a lone validator's certificate.
        let alone = Certificate::aggregate(&votes[..1]).expect("vote");
        assert_eq!(alone.verify_hashed(&hashed, &publics, 1), Ok(()));
        assert_eq!(
            alone.verify_hashed(&other, &publics, 1),
            Err(BlsError::BadSignature)
        );
    }

    #[test]
    fn proof_of_possession_binds_the_key() {
        let secrets = keys(2);
        let proof = secrets[0].proof_of_possession();
        assert_eq!(secrets[0].public_key().verify_possession(&proof), Ok(()));
        assert_eq!(
            secrets[1].public_key().verify_possession(&proof),
            Err(BlsError::BadSignature)
        );
    }

    #[test]
    fn signatures_outside_the_group_never_verify() {
        let secret = &keys(1)[0];
        let mut infinity = [0u8; 96];
        infinity[0] = 0xc0;
        if let Ok(infinity) = BlsSignature::from_bytes(&infinity) {
            assert!(secret.public_key().verify(b"m", &infinity).is_err());
        }
        let mut off_curve = secret.sign(b"m").to_bytes();
        off_curve[40] ^= 0x55;
        if let Ok(off_curve) = BlsSignature::from_bytes(&off_curve) {
            assert!(secret.public_key().verify(b"m", &off_curve).is_err());
        }
        let good = secret.sign(b"m");
        assert_eq!(BlsSignature::from_bytes(&good.to_bytes()), Ok(good));
    }

    #[test]
    fn an_aggregate_with_a_part_outside_the_subgroup_never_verifies() {
        let secrets = keys(3);
        let publics: Vec<BlsPublicKey> = secrets.iter().map(BlsSecretKey::public_key).collect();
        // A point on the curve but (as nearly every one is) outside the prime-order subgroup:
        // the first compressed x that decompresses.
        let outside = (0u8..=255)
            .find_map(|byte| {
                let mut bytes = [0u8; 96];
                bytes[0] = COMPRESSED_FLAG;
                bytes[95] = byte;
                let signature = BlsSignature::from_bytes(&bytes).ok()?;
                let point = signature.point().ok()?;
                (!point.subgroup_check()).then_some(signature)
            })
            .expect("some x in 0..256 is on the curve");
        let votes = [
            (0, secrets[0].sign(b"m")),
            (1, secrets[1].sign(b"m")),
            (2, outside),
        ];
        // Aggregating takes it (parts are not checked one by one) ...
        let certificate = Certificate::aggregate(&votes).expect("parts decompress");
        // ... and the aggregate, outside the subgroup too, is refused when verified.
        assert_eq!(
            certificate.verify(b"m", &publics, 3),
            Err(BlsError::BadSignature)
        );
        assert_eq!(
            certificate.verify_hashed(&HashedMessage::new(b"m"), &publics, 3),
            Err(BlsError::BadSignature)
        );
        let good = Certificate::aggregate(&votes[..2]).expect("good parts");
        assert_eq!(good.verify(b"m", &publics, 2), Ok(()));
    }
}
