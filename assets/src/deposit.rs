//! Deposits: tokens locked in the bridge contract upstream, minted here as one output each.
//!
//! A deposit's data is public (it comes from the bridge's `Deposit` event), so Tickrate mints it
//! without a proof. The upper chain's rollup contract, which holds the same tree's root, mints it
//! with a proof of the deposit circuit that appending the deposit's output to the tree of the old
//! root gives the new one ([`DepositWitness`], [`DepositPublic`]); the contract takes the public
//! values from the bridge's record, so the output minted is exactly the one deposited.
//!
//! The output's blinding is the deposit id: the deposit is public anyway, and the id makes two
//! identical deposits two different outputs with the contract able to name the blinding itself.

use alloy_primitives::U256;
use ark_bn254::Fr;
use ark_ed_on_bn254::EdwardsAffine;
use ark_ff::{BigInteger, PrimeField};

use crate::{
    constants::DEPOSIT_PUBLIC_INPUTS,
    error::AssetsError,
    keys::Address,
    output::{Output, limbs},
    tree::MerklePath,
};

/// A deposit as the bridge recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deposit {
    /// The bridge's sequence number of the deposit (from 0); deposits are minted in this order.
    pub deposit_id: u64,
    /// Who may spend the output.
    pub owner: Address,
    /// The asset type (see [`crate::asset`]).
    pub asset: U256,
    /// The amount (1 for an item).
    pub amount: U256,
}

impl Deposit {
    /// The output minted: the deposit's owner, asset and amount, blinded by its id.
    pub fn output(&self) -> Output {
        Output {
            owner: self.owner,
            asset: self.asset,
            amount: self.amount,
            blinding: Fr::from(self.deposit_id),
        }
    }

    /// The deposit of a bridge event: `owner` is the Baby Jubjub key's x and y and the
    /// nullifier-key hash, each a canonical BN254 scalar (the bridge refuses others). The key is
    /// not checked to be on the curve: a deposit to a key no one holds still mints (the output is
    /// unspendable), so that one bad deposit never holds up the ones after it.
    pub fn from_event(
        deposit_id: u64,
        owner: [U256; 3],
        asset: U256,
        amount: U256,
    ) -> Result<Self, AssetsError> {
        let [x, y, nullifier_key_hash] = owner.map(canonical);
        Ok(Self {
            deposit_id,
            owner: Address {
                signing_key: EdwardsAffine::new_unchecked(x?, y?),
                nullifier_key_hash: nullifier_key_hash?,
            },
            asset,
            amount,
        })
    }
}

/// `value` as a field element if it is below the modulus.
pub fn canonical(value: U256) -> Result<Fr, AssetsError> {
    let bytes = value.to_le_bytes::<32>();
    let element = Fr::from_le_bytes_mod_order(&bytes);
    if element.into_bigint().to_bytes_le() != bytes {
        return Err(AssetsError::NotCanonical);
    }
    Ok(element)
}

/// What a deposit's proof is verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositPublic {
    /// The root before the deposit's output is appended.
    pub old_root: Fr,
    /// The root after.
    pub new_root: Fr,
    /// The output's leaf index.
    pub leaf_index: u64,
    /// The deposit.
    pub deposit: Deposit,
}

impl DepositPublic {
    /// The circuit's public inputs, in the order of [`DEPOSIT_PUBLIC_INPUTS`].
    pub fn to_field_elements(&self) -> [Fr; DEPOSIT_PUBLIC_INPUTS] {
        let owner = self.deposit.owner;
        let [asset_high, asset_low] = limbs(self.deposit.asset);
        let [amount_high, amount_low] = limbs(self.deposit.amount);
        [
            self.old_root,
            self.new_root,
            Fr::from(self.leaf_index),
            Fr::from(self.deposit.deposit_id),
            owner.signing_key.x,
            owner.signing_key.y,
            owner.nullifier_key_hash,
            asset_high,
            asset_low,
            amount_high,
            amount_low,
        ]
    }
}

/// A deposit placed in the state: everything the deposit circuit takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositWitness {
    /// The public values.
    pub public: DepositPublic,
    /// The path of the new leaf in the tree of the old root.
    pub path: MerklePath,
}

impl DepositWitness {
    /// Whether the path leads from an empty leaf to the old root and from the deposit's output
    /// to the new root, at the leaf index.
    pub fn check(&self) -> Result<(), AssetsError> {
        let public = &self.public;
        let leaf = public.deposit.output().commitment();
        let in_place = self.path.leaf_index() == public.leaf_index
            && self.path.root_from(Fr::from(0u64)) == Some(public.old_root)
            && self.path.root_from(leaf) == Some(public.new_root);
        if !in_place {
            return Err(AssetsError::InsertionInvalid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_scalars_come_from_the_chain() {
        assert_eq!(canonical(U256::from(7)), Ok(Fr::from(7u64)));
        let modulus = U256::from_limbs(Fr::MODULUS.0);
        assert_eq!(canonical(modulus), Err(AssetsError::NotCanonical));
        assert_eq!(canonical(U256::MAX), Err(AssetsError::NotCanonical));
        assert_eq!(canonical(modulus - U256::from(1)), Ok(-Fr::from(1u64)));
    }
}
