//! Owner keys: EdDSA on Baby Jubjub (`ark-ed-on-bn254`, the twisted Edwards curve whose base
//! field is BN254's scalar field, so the circuit does its arithmetic natively) with Poseidon as
//! the challenge hash, plus a nullifier key.
//!
//! A signature on message `m` by key `a = s·G` is `(R, S)` with `R = r·G` and
//! `S = r + h·s mod l`, where `h = Poseidon(SIGNATURE; R.x, R.y, A.x, A.y, m)` and `l` is the
//! prime order of `G`'s subgroup. It verifies when `S·G = R + h·A` with `h` taken as an integer,
//! and `R`, `A` in the prime-order subgroup (checked here; the circuit enforces it when it
//! allocates them), so `h·A = (h mod l)·A` and the circuit needs no reduction modulo `l`.
//! The nonce `r` is derived from the key's seed and the message, as in RFC 8032, so signing needs
//! no randomness.
//!
//! The nullifier key `nk` lets only the owner compute an output's nullifier: outputs commit to
//! `Poseidon(NULLIFIER_KEY; nk)`, and the nullifier is `Poseidon(NULLIFIER; nk, commitment,
//! leaf index)`, so observers cannot link a nullifier to the output it spends.

use ark_bn254::Fr;
use ark_ec::{AffineRepr, CurveGroup};
use ark_ed_on_bn254::{EdwardsAffine, EdwardsProjective, Fr as SubgroupScalar};
use ark_ff::{BigInteger, PrimeField};

use crate::{constants::domain, poseidon};

/// An owner's public address: where outputs are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The EdDSA public key that must sign spends.
    pub signing_key: EdwardsAffine,
    /// `Poseidon(NULLIFIER_KEY; nk)` of the owner's nullifier key.
    pub nullifier_key_hash: Fr,
}

/// An EdDSA signature on Baby Jubjub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// The nonce point `R`.
    pub r: EdwardsAffine,
    /// The scalar `S`, reduced modulo the subgroup order.
    pub s: SubgroupScalar,
}

/// An owner's secret: signs spends and derives nullifiers.
#[derive(Clone)]
pub struct SpendingKey {
    seed: [u8; 32],
    signing_scalar: SubgroupScalar,
    nullifier_key: Fr,
    address: Address,
}

impl std::fmt::Debug for SpendingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("SpendingKey")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl SpendingKey {
    /// The key derived from a 32-byte secret seed (blake3 key derivation, one context per part).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing_scalar = SubgroupScalar::from_le_bytes_mod_order(&wide_hash(
            "tickrate assets signing key",
            &seed,
        ));
        let nullifier_key =
            Fr::from_le_bytes_mod_order(&wide_hash("tickrate assets nullifier key", &seed));
        let signing_key = (EdwardsAffine::generator() * signing_scalar).into_affine();
        let nullifier_key_hash = nullifier_key_hash(nullifier_key);
        Self {
            seed,
            signing_scalar,
            nullifier_key,
            address: Address {
                signing_key,
                nullifier_key_hash,
            },
        }
    }

    /// Where outputs for this key are sent.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The nullifier key (secret; a witness of the circuit).
    pub fn nullifier_key(&self) -> Fr {
        self.nullifier_key
    }

    /// The incoming viewing key: finds and reads the outputs sent to this key (the notes of
    /// [`crate::note`]) but cannot spend them. Derived from the seed apart from the signing and
    /// nullifier keys, so handing it to a watch-only wallet gives away neither.
    pub fn viewing_key(&self) -> crate::note::ViewingKey {
        let scalar = SubgroupScalar::from_le_bytes_mod_order(&wide_hash(
            "tickrate assets viewing key",
            &self.seed,
        ));
        crate::note::ViewingKey::new(scalar, self.address)
    }

    /// Signs `message` deterministically.
    pub fn sign(&self, message: Fr) -> Signature {
        let mut nonce_input = self.seed.to_vec();
        nonce_input.extend_from_slice(&message.into_bigint().to_bytes_le());
        let nonce = SubgroupScalar::from_le_bytes_mod_order(&wide_hash(
            "tickrate assets eddsa nonce",
            &nonce_input,
        ));
        let r = (EdwardsAffine::generator() * nonce).into_affine();
        let h = challenge(&r, &self.address.signing_key, message);
        let s = nonce + reduce_challenge(h) * self.signing_scalar;
        Signature { r, s }
    }
}

/// `Poseidon(NULLIFIER_KEY; nk)`.
pub fn nullifier_key_hash(nullifier_key: Fr) -> Fr {
    poseidon::hash(domain::NULLIFIER_KEY, &[nullifier_key])
}

/// The challenge `h = Poseidon(SIGNATURE; R.x, R.y, A.x, A.y, m)`.
pub fn challenge(r: &EdwardsAffine, signing_key: &EdwardsAffine, message: Fr) -> Fr {
    poseidon::hash(
        domain::SIGNATURE,
        &[r.x, r.y, signing_key.x, signing_key.y, message],
    )
}

/// Verifies `signature` on `message` by `signing_key`, out of circuit, with the same equation
/// as the circuit: `S·G = R + h·A`, `h` an integer below the BN254 scalar field modulus.
pub fn verify(signing_key: &EdwardsAffine, message: Fr, signature: &Signature) -> bool {
    let in_subgroup =
        |p: &EdwardsAffine| p.is_on_curve() && p.is_in_correct_subgroup_assuming_on_curve();
    if !in_subgroup(signing_key) || !in_subgroup(&signature.r) {
        return false;
    }
    let h = challenge(&signature.r, signing_key, message);
    let lhs: EdwardsProjective = EdwardsAffine::generator() * signature.s;
    let rhs = signature.r.into_group() + signing_key.mul_bigint(h.into_bigint());
    lhs == rhs
}

/// `S` as a BN254 scalar-field element (the subgroup order is below the field modulus), the
/// form the circuit takes it in.
pub fn signature_scalar_in_field(signature: &Signature) -> Fr {
    Fr::from_le_bytes_mod_order(&signature.s.into_bigint().to_bytes_le())
}

fn reduce_challenge(h: Fr) -> SubgroupScalar {
    SubgroupScalar::from_le_bytes_mod_order(&h.into_bigint().to_bytes_le())
}

/// 64 bytes of blake3 output, so reducing them modulo a ~254-bit prime leaves no useful bias.
fn wide_hash(context: &str, input: &[u8]) -> [u8; 64] {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    hasher.update(input);
    let mut out = [0u8; 64];
    hasher.finalize_xof().fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let alice = SpendingKey::from_seed([1; 32]);
        let bob = SpendingKey::from_seed([2; 32]);
        let message = Fr::from(42u64);
        let signature = alice.sign(message);
        assert!(verify(&alice.address().signing_key, message, &signature));
        assert!(!verify(&bob.address().signing_key, message, &signature));
        assert!(!verify(
            &alice.address().signing_key,
            Fr::from(43u64),
            &signature
        ));
        let mut tampered = signature;
        tampered.s += SubgroupScalar::from(1u64);
        assert!(!verify(&alice.address().signing_key, message, &tampered));
        // Deterministic: the same key and message give the same signature.
        assert_eq!(alice.sign(message), signature);
        assert_ne!(alice.address(), bob.address());
    }
}
