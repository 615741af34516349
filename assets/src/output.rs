//! Outputs (the UTXOs), their commitments and nullifiers.

use alloy_primitives::U256;
use ark_bn254::Fr;

use crate::{constants::domain, keys::Address, poseidon};

/// An output: an amount of one asset type owned by an address. Its commitment is a leaf of the
/// output tree; the output itself is known only to its owner (and its sender), except for
/// deposits, whose data is public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Who may spend it.
    pub owner: Address,
    /// The asset type: the upper-chain token contract and, for an NFT, its id.
    pub asset: U256,
    /// The amount (1 for an NFT).
    pub amount: U256,
    /// Randomness that hides the output inside its commitment.
    pub blinding: Fr,
}

impl Output {
    /// `Poseidon(COMMITMENT; A.x, A.y, nk hash, asset hi, asset lo, amount hi, amount lo,
    /// blinding)`.
    pub fn commitment(&self) -> Fr {
        let [asset_high, asset_low] = limbs(self.asset);
        let [amount_high, amount_low] = limbs(self.amount);
        poseidon::hash(
            domain::COMMITMENT,
            &[
                self.owner.signing_key.x,
                self.owner.signing_key.y,
                self.owner.nullifier_key_hash,
                asset_high,
                asset_low,
                amount_high,
                amount_low,
                self.blinding,
            ],
        )
    }
}

/// The nullifier that spending the output with `commitment` at `leaf_index` publishes:
/// `Poseidon(NULLIFIER; nk, commitment, leaf index)`. The leaf index makes two equal outputs
/// (say, two identical deposits) two different spends.
pub fn nullifier(nullifier_key: Fr, commitment: Fr, leaf_index: u64) -> Fr {
    poseidon::hash(
        domain::NULLIFIER,
        &[nullifier_key, commitment, Fr::from(leaf_index)],
    )
}

/// A u256 as two field elements `[high 128 bits, low 128 bits]`.
pub fn limbs(value: U256) -> [Fr; 2] {
    let words = value.as_limbs();
    let low = u128::from(words[0]) | (u128::from(words[1]) << 64);
    let high = u128::from(words[2]) | (u128::from(words[3]) << 64);
    [Fr::from(high), Fr::from(low)]
}

/// An upper-chain account as a field element (its 160 bits, big-endian as an integer).
pub fn recipient_field(recipient: alloy_primitives::Address) -> Fr {
    use ark_ff::PrimeField;
    Fr::from_be_bytes_mod_order(recipient.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SpendingKey;

    #[test]
    fn commitments_bind_every_field() {
        let owner = SpendingKey::from_seed([3; 32]).address();
        let other = SpendingKey::from_seed([4; 32]).address();
        let output = Output {
            owner,
            asset: U256::from(5),
            amount: U256::from(10),
            blinding: Fr::from(9u64),
        };
        let base = output.commitment();
        assert_ne!(
            Output {
                owner: other,
                ..output
            }
            .commitment(),
            base
        );
        assert_ne!(
            Output {
                asset: U256::from(6),
                ..output
            }
            .commitment(),
            base
        );
        assert_ne!(
            Output {
                amount: U256::from(11),
                ..output
            }
            .commitment(),
            base
        );
        assert_ne!(
            Output {
                blinding: Fr::from(8u64),
                ..output
            }
            .commitment(),
            base
        );
        // High and low limbs are not interchangeable.
        assert_ne!(limbs(U256::from(1)), limbs(U256::from(1) << 128));
        assert_ne!(
            nullifier(Fr::from(1u64), base, 0),
            nullifier(Fr::from(1u64), base, 1)
        );
        assert_ne!(
            nullifier(Fr::from(1u64), base, 0),
            nullifier(Fr::from(2u64), base, 0)
        );
    }
}
