//! Output discovery: how a recipient finds the outputs sent to it.
//!
//! A transfer publishes only commitments, which hide their outputs, so the recipient needs the
//! output's data (asset, amount, blinding) to know it was paid and later to spend it. Each new
//! output therefore travels with a *note*: that data encrypted to the recipient's viewing key,
//! published on the upper chain with the transfer (the rollup's `OutputNote` event, keyed by the
//! output's leaf index). A wallet scans every note, tries to open it with its viewing key and
//! keeps what opens; this is the trial decryption of Zcash's in-band notes and of Tornado Nova's
//! encrypted outputs.
//!
//! **Encryption** (ECIES on Baby Jubjub): the sender draws an ephemeral scalar `e`, publishes
//! `E = e·G`, and both sides reach the shared point `S = e·V = v·E`, where `V = v·G` is the
//! recipient's viewing key. The symmetric key is `blake3::derive_key("tickrate assets note key
//! v1", E ‖ S)` (compressed encodings); the data is sealed with ChaCha20-Poly1305 under it, with
//! a zero nonce (each key seals exactly one message) and the output's commitment as associated
//! data. Hence:
//! - only the recipient (and the sender, who drew `e`) can read a note;
//! - a note altered in any byte, or attached to another leaf than its output's, fails
//!   authentication ([`NoteError::Undecryptable`], which is also what a note for someone else
//!   gives: the two cannot be told apart, by design);
//! - an authentic note whose content is not the output committed at its leaf (a sender that
//!   encrypted other values than it committed to) is refused after decryption
//!   ([`NoteError::CommitmentMismatch`]): the wallet recomputes the commitment from the content
//!   and its own address.
//!
//! Notes are not bound to the proof: whoever submits a proof could publish other notes with it.
//! Nothing is lost by that: a note counts only if it opens to the commitment of its leaf, and the
//! sender, who knows the output, can publish its note again for the same leaf.
//!
//! The viewing key is derived from the spending key's seed apart from the signing and nullifier
//! keys ([`crate::keys::SpendingKey::viewing_key`]): a watch-only wallet holding it finds and
//! reads outputs but cannot spend them or compute their nullifiers. Deposits need no note: their
//! data is public in the bridge's `Deposit` event.
//!
//! A note is [`NOTE_BYTES`] bytes: `E` (32, compressed) ‖ the sealed asset type (32, big-endian),
//! amount (32, big-endian) and blinding (32, canonical little-endian) ‖ the tag (16).
//!
//! Senders name a recipient by its [`PaymentAddress`]: the owner's [`Address`] (what outputs
//! commit to) and its viewing key, written as text `tka` + 192 hex digits.

use std::{fmt, str::FromStr};

use alloy_primitives::{U256, hex};
use ark_bn254::Fr;
use ark_ec::{AffineRepr, CurveGroup};
use ark_ed_on_bn254::{EdwardsAffine, Fr as SubgroupScalar};
use ark_ff::{BigInteger, PrimeField, UniformRand, Zero};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use ark_std::rand::{CryptoRng, RngCore};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit,
    aead::{Aead, Payload},
};

use crate::{deposit::canonical, keys::Address, output::Output};

/// Bytes of a compressed Baby Jubjub point.
pub const POINT_BYTES: usize = 32;
/// Bytes of a note's plaintext: asset type, amount, blinding.
pub const NOTE_PLAINTEXT_BYTES: usize = 3 * 32;
/// Bytes of the authentication tag.
pub const NOTE_TAG_BYTES: usize = 16;
/// Bytes of a note: the ephemeral key, the sealed plaintext and its tag.
pub const NOTE_BYTES: usize = POINT_BYTES + NOTE_PLAINTEXT_BYTES + NOTE_TAG_BYTES;
/// Bytes of a payment address: signing key, nullifier-key hash, viewing key.
pub const PAYMENT_ADDRESS_BYTES: usize = 3 * 32;
/// The text prefix of a payment address.
pub const PAYMENT_ADDRESS_PREFIX: &str = "tka";

const NOTE_KEY_CONTEXT: &str = "tickrate assets note key v1";

/// Why a note was not opened, or a payment address not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A note has another length than [`NOTE_BYTES`].
    #[error("a note is {expected} bytes, got {got}")]
    Length {
        /// [`NOTE_BYTES`].
        expected: usize,
        /// The length offered.
        got: usize,
    },
    /// The note's ephemeral key is not a point of the prime-order subgroup, or is the identity.
    #[error("the note's ephemeral key is not a valid Baby Jubjub point")]
    EphemeralKeyInvalid,
    /// The note does not authenticate under this viewing key and this leaf's commitment: it is
    /// for someone else, or it was altered, or it belongs to another leaf.
    #[error("the note does not open with this key for this output")]
    Undecryptable,
    /// The note opened, but its content is not the output committed at its leaf.
    #[error("the note's content does not match its output's commitment")]
    CommitmentMismatch,
    /// The note opened, but its blinding is not a canonical field element.
    #[error("the note's blinding is not a canonical field element")]
    NotCanonical,
    /// The output to seal is not owned by the payment address it is sealed to.
    #[error("the output is not owned by the payment address it is sealed to")]
    WrongRecipient,
    /// A payment address does not decode.
    #[error("malformed payment address: {0}")]
    AddressMalformed(String),
}

/// Where outputs are sent: the owner's address (what the output commits to) and the viewing key
/// its notes are sealed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentAddress {
    /// The owner's address.
    pub owner: Address,
    /// The public viewing key `V = v·G`.
    pub viewing_key: EdwardsAffine,
}

impl PaymentAddress {
    /// The address as [`PAYMENT_ADDRESS_BYTES`] bytes: signing key (compressed), nullifier-key
    /// hash (little-endian), viewing key (compressed).
    pub fn to_bytes(&self) -> [u8; PAYMENT_ADDRESS_BYTES] {
        let mut bytes = [0u8; PAYMENT_ADDRESS_BYTES];
        bytes[..32].copy_from_slice(&point_bytes(&self.owner.signing_key));
        bytes[32..64].copy_from_slice(&fr_bytes(self.owner.nullifier_key_hash));
        bytes[64..].copy_from_slice(&point_bytes(&self.viewing_key));
        bytes
    }

    /// Reads an address from untrusted bytes: both keys must be points of the prime-order
    /// subgroup and the hash a canonical field element.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() != PAYMENT_ADDRESS_BYTES {
            return Err(NoteError::AddressMalformed(format!(
                "{} bytes, expected {PAYMENT_ADDRESS_BYTES}",
                bytes.len()
            )));
        }
        let signing_key = subgroup_point(&bytes[..32])
            .ok_or_else(|| NoteError::AddressMalformed("signing key".into()))?;
        let nullifier_key_hash = canonical(U256::from_le_slice(&bytes[32..64]))
            .map_err(|_| NoteError::AddressMalformed("nullifier-key hash".into()))?;
        let viewing_key = subgroup_point(&bytes[64..])
            .filter(|point| !AffineRepr::is_zero(point))
            .ok_or_else(|| NoteError::AddressMalformed("viewing key".into()))?;
        Ok(Self {
            owner: Address {
                signing_key,
                nullifier_key_hash,
            },
            viewing_key,
        })
    }

    /// Seals `output` (owned by this address) into a note with a fresh ephemeral key from `rng`.
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        output: &Output,
        rng: &mut R,
    ) -> Result<[u8; NOTE_BYTES], NoteError> {
        if output.owner != self.owner {
            return Err(NoteError::WrongRecipient);
        }
        let mut ephemeral = SubgroupScalar::rand(rng);
        while ephemeral.is_zero() {
            ephemeral = SubgroupScalar::rand(rng);
        }
        let ephemeral_key = (EdwardsAffine::generator() * ephemeral).into_affine();
        let shared = (self.viewing_key * ephemeral).into_affine();
        let cipher = note_cipher(&ephemeral_key, &shared);
        let mut plaintext = [0u8; NOTE_PLAINTEXT_BYTES];
        plaintext[..32].copy_from_slice(&output.asset.to_be_bytes::<32>());
        plaintext[32..64].copy_from_slice(&output.amount.to_be_bytes::<32>());
        plaintext[64..].copy_from_slice(&fr_bytes(output.blinding));
        let sealed = cipher
            .encrypt(
                &Default::default(),
                Payload {
                    msg: &plaintext,
                    aad: &fr_bytes(output.commitment()),
                },
            )
            .expect("ChaCha20-Poly1305 seals any message below its length limit");
        let mut note = [0u8; NOTE_BYTES];
        note[..POINT_BYTES].copy_from_slice(&point_bytes(&ephemeral_key));
        note[POINT_BYTES..].copy_from_slice(&sealed);
        Ok(note)
    }
}

impl fmt::Display for PaymentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PAYMENT_ADDRESS_PREFIX}{}",
            hex::encode(self.to_bytes())
        )
    }
}

impl FromStr for PaymentAddress {
    type Err = NoteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text
            .trim()
            .strip_prefix(PAYMENT_ADDRESS_PREFIX)
            .ok_or_else(|| {
                NoteError::AddressMalformed(format!("does not start with {PAYMENT_ADDRESS_PREFIX}"))
            })?;
        let bytes =
            hex::decode(digits).map_err(|error| NoteError::AddressMalformed(error.to_string()))?;
        Self::from_bytes(&bytes)
    }
}

/// A note as published: the leaf its output was appended at and the note's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedNote<'a> {
    /// The output's leaf index.
    pub leaf_index: u64,
    /// The commitment at that leaf.
    pub commitment: Fr,
    /// The note.
    pub note: &'a [u8],
}

/// An incoming viewing key: opens the notes sent to its owner. Cannot spend.
#[derive(Clone)]
pub struct ViewingKey {
    scalar: SubgroupScalar,
    public: EdwardsAffine,
    owner: Address,
}

impl fmt::Debug for ViewingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("ViewingKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl ViewingKey {
    /// The viewing key with secret `scalar` for the outputs of `owner` (see
    /// [`crate::keys::SpendingKey::viewing_key`]).
    pub(crate) fn new(scalar: SubgroupScalar, owner: Address) -> Self {
        assert!(!scalar.is_zero(), "a zero viewing key would open nothing");
        Self {
            scalar,
            public: (EdwardsAffine::generator() * scalar).into_affine(),
            owner,
        }
    }

    /// Where senders send: the owner's address and this key's public point.
    pub fn payment_address(&self) -> PaymentAddress {
        PaymentAddress {
            owner: self.owner,
            viewing_key: self.public,
        }
    }

    /// Opens `note`, published for the output with `commitment`, as an output of this key's
    /// owner. Every failure is typed; none changes anything.
    pub fn open(&self, commitment: Fr, note: &[u8]) -> Result<Output, NoteError> {
        if note.len() != NOTE_BYTES {
            return Err(NoteError::Length {
                expected: NOTE_BYTES,
                got: note.len(),
            });
        }
        let ephemeral_key = subgroup_point(&note[..POINT_BYTES])
            .filter(|point| !AffineRepr::is_zero(point))
            .ok_or(NoteError::EphemeralKeyInvalid)?;
        let shared = (ephemeral_key * self.scalar).into_affine();
        let plaintext = note_cipher(&ephemeral_key, &shared)
            .decrypt(
                &Default::default(),
                Payload {
                    msg: &note[POINT_BYTES..],
                    aad: &fr_bytes(commitment),
                },
            )
            .map_err(|_| NoteError::Undecryptable)?;
        let output = Output {
            owner: self.owner,
            asset: U256::from_be_slice(&plaintext[..32]),
            amount: U256::from_be_slice(&plaintext[32..64]),
            blinding: canonical(U256::from_le_slice(&plaintext[64..]))
                .map_err(|_| NoteError::NotCanonical)?,
        };
        if output.commitment() != commitment {
            return Err(NoteError::CommitmentMismatch);
        }
        Ok(output)
    }

    /// The outputs among `notes` that this key opens, with their leaf indices. Notes that do not
    /// open (for someone else, altered, or lying about their output) are passed over.
    pub fn scan<'a>(
        &self,
        notes: impl IntoIterator<Item = PublishedNote<'a>>,
    ) -> Vec<(u64, Output)> {
        notes
            .into_iter()
            .filter_map(|published| {
                self.open(published.commitment, published.note)
                    .ok()
                    .map(|output| (published.leaf_index, output))
            })
            .collect()
    }
}

fn note_cipher(ephemeral_key: &EdwardsAffine, shared: &EdwardsAffine) -> ChaCha20Poly1305 {
    let mut material = [0u8; 2 * POINT_BYTES];
    material[..POINT_BYTES].copy_from_slice(&point_bytes(ephemeral_key));
    material[POINT_BYTES..].copy_from_slice(&point_bytes(shared));
    let key = blake3::derive_key(NOTE_KEY_CONTEXT, &material);
    ChaCha20Poly1305::new(&key.into())
}

fn point_bytes(point: &EdwardsAffine) -> [u8; POINT_BYTES] {
    let mut bytes = [0u8; POINT_BYTES];
    point
        .serialize_compressed(&mut bytes[..])
        .expect("a compressed Baby Jubjub point is 32 bytes");
    bytes
}

/// A point of the prime-order subgroup from its compressed encoding, or `None`.
fn subgroup_point(bytes: &[u8]) -> Option<EdwardsAffine> {
    EdwardsAffine::deserialize_with_mode(bytes, Compress::Yes, Validate::Yes).ok()
}

fn fr_bytes(value: Fr) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&value.into_bigint().to_bytes_le());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SpendingKey;
    use ark_rand_chacha::ChaCha20Rng;
    use ark_std::rand::SeedableRng;

    fn output_for(key: &SpendingKey, amount: u64, blinding: u64) -> Output {
        Output {
            owner: key.address(),
            asset: U256::from(0x70),
            amount: U256::from(amount),
            blinding: Fr::from(blinding),
        }
    }

    #[test]
    fn a_recipient_finds_exactly_its_outputs_and_others_none() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let bob = SpendingKey::from_seed([0xb0; 32]);
        let carol = SpendingKey::from_seed([0xc0; 32]);
        let dave = SpendingKey::from_seed([0xd0; 32]);
        // Leaves 0..4: to Bob, to Carol, to Bob, and one to Bob whose note was lost.
        let outputs = [
            output_for(&bob, 10, 1),
            output_for(&carol, 20, 2),
            output_for(&bob, 30, 3),
            output_for(&bob, 40, 4),
        ];
        let recipients = [&bob, &carol, &bob];
        let notes: Vec<[u8; NOTE_BYTES]> = recipients
            .iter()
            .zip(&outputs)
            .map(|(key, output)| {
                key.viewing_key()
                    .payment_address()
                    .seal(output, &mut rng)
                    .expect("valid in this test")
            })
            .collect();
        let published = || {
            notes.iter().enumerate().map(|(leaf, note)| PublishedNote {
                leaf_index: leaf as u64,
                commitment: outputs[leaf].commitment(),
                note,
            })
        };
        assert_eq!(
            bob.viewing_key().scan(published()),
            vec![(0, outputs[0]), (2, outputs[2])]
        );
        assert_eq!(carol.viewing_key().scan(published()), vec![(1, outputs[1])]);
        assert_eq!(dave.viewing_key().scan(published()), vec![]);
        // A note for someone else is indistinguishable from noise.
        assert_eq!(
            dave.viewing_key().open(outputs[0].commitment(), &notes[0]),
            Err(NoteError::Undecryptable)
        );
        // Two notes of the same output look unrelated (fresh ephemeral keys).
        let again = bob
            .viewing_key()
            .payment_address()
            .seal(&outputs[0], &mut rng)
            .expect("valid in this test");
        assert_ne!(again, notes[0]);
        assert_eq!(
            bob.viewing_key().open(outputs[0].commitment(), &again),
            Ok(outputs[0])
        );
    }

    #[test]
    fn tampered_misplaced_or_lying_notes_are_refused_with_typed_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let bob = SpendingKey::from_seed([0xb1; 32]);
        let viewing = bob.viewing_key();
        let address = viewing.payment_address();
        let output = output_for(&bob, 5, 9);
        let commitment = output.commitment();
        let note = address.seal(&output, &mut rng).expect("valid in this test");
        assert_eq!(viewing.open(commitment, &note), Ok(output));

        // Any byte of the sealed part flipped.
        for at in [POINT_BYTES, POINT_BYTES + 40, NOTE_BYTES - 1] {
            let mut tampered = note;
            tampered[at] ^= 1;
            assert_eq!(
                viewing.open(commitment, &tampered),
                Err(NoteError::Undecryptable)
            );
        }
        // The ephemeral key replaced: by an invalid encoding, the identity, another point.
        let mut broken = note;
        broken[..POINT_BYTES].fill(0xff);
        assert_eq!(
            viewing.open(commitment, &broken),
            Err(NoteError::EphemeralKeyInvalid)
        );
        let mut identity = note;
        identity[..POINT_BYTES]
            .copy_from_slice(&point_bytes(&<EdwardsAffine as AffineRepr>::zero()));
        assert_eq!(
            viewing.open(commitment, &identity),
            Err(NoteError::EphemeralKeyInvalid)
        );
        let mut other_point = note;
        other_point[..POINT_BYTES].copy_from_slice(&point_bytes(&address.viewing_key));
        assert_eq!(
            viewing.open(commitment, &other_point),
            Err(NoteError::Undecryptable)
        );
        // Attached to another leaf.
        let other = output_for(&bob, 6, 9).commitment();
        assert_eq!(viewing.open(other, &note), Err(NoteError::Undecryptable));
        // Cut short, or padded.
        assert_eq!(
            viewing.open(commitment, &note[..NOTE_BYTES - 1]),
            Err(NoteError::Length {
                expected: NOTE_BYTES,
                got: NOTE_BYTES - 1
            })
        );
        // A sender that seals other values than it commits to: the note authenticates (the
        // sender chose the associated data) but its content is not the leaf's output.
        let lie = {
            let shown = output_for(&bob, 500, 9);
            let mut note = address.seal(&shown, &mut rng).expect("valid in this test");
            // Reseal with the committed output's commitment as associated data.
            let ephemeral_key = subgroup_point(&note[..POINT_BYTES]).expect("valid in this test");
            let shared = (ephemeral_key * viewing.scalar).into_affine();
            let cipher = note_cipher(&ephemeral_key, &shared);
            let plaintext = cipher
                .decrypt(
                    &Default::default(),
                    Payload {
                        msg: &note[POINT_BYTES..],
                        aad: &fr_bytes(shown.commitment()),
                    },
                )
                .expect("valid in this test");
            let resealed = cipher
                .encrypt(
                    &Default::default(),
                    Payload {
                        msg: &plaintext,
                        aad: &fr_bytes(commitment),
                    },
                )
                .expect("valid in this test");
            note[POINT_BYTES..].copy_from_slice(&resealed);
            note
        };
        assert_eq!(
            viewing.open(commitment, &lie),
            Err(NoteError::CommitmentMismatch)
        );
        // Sealing someone else's output to Bob is refused.
        let carol = SpendingKey::from_seed([0xc1; 32]);
        assert_eq!(
            address.seal(&output_for(&carol, 1, 1), &mut rng),
            Err(NoteError::WrongRecipient)
        );
    }

    #[test]
    fn payment_addresses_round_trip_and_refuse_malformed_text() {
        let bob = SpendingKey::from_seed([0xb2; 32]);
        let address = bob.viewing_key().payment_address();
        assert_eq!(address.owner, bob.address());
        let text = address.to_string();
        assert!(text.starts_with(PAYMENT_ADDRESS_PREFIX));
        assert_eq!(
            text.len(),
            PAYMENT_ADDRESS_PREFIX.len() + 2 * PAYMENT_ADDRESS_BYTES
        );
        assert_eq!(text.parse::<PaymentAddress>(), Ok(address));
        // The viewing key is not the signing key.
        assert_ne!(address.viewing_key, address.owner.signing_key);
        let malformed = |text: &str| {
            assert!(
                matches!(
                    text.parse::<PaymentAddress>(),
                    Err(NoteError::AddressMalformed(_))
                ),
                "{text} was accepted"
            )
        };
        malformed(&text[PAYMENT_ADDRESS_PREFIX.len()..]);
        malformed(&text[..text.len() - 2]);
        malformed(&format!("{text}00"));
        malformed(&text.replace(PAYMENT_ADDRESS_PREFIX, "tkb"));
        // A nullifier-key hash at or above the modulus.
        let mut bytes = address.to_bytes();
        bytes[32..64].fill(0xff);
        malformed(&format!("{PAYMENT_ADDRESS_PREFIX}{}", hex::encode(bytes)));
        // A viewing key that is not a point.
        let mut bytes = address.to_bytes();
        bytes[64..].fill(0xff);
        malformed(&format!("{PAYMENT_ADDRESS_PREFIX}{}", hex::encode(bytes)));
    }
}
