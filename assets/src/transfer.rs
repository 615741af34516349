//! Transfers and withdrawals out of circuit: what a client builds, signs and checks before it
//! proves, and the public inputs the proof is verified against.
//!
//! A transfer spends two inputs and creates two outputs. A one-input spend uses a *dummy* input:
//! an output of amount zero owned by the sender, which need not be in the tree (the circuit
//! skips the membership check of a zero-amount input; it has nothing to steal) but still
//! publishes a nullifier. A withdraw is a transfer whose second output is addressed to an
//! upper-chain account: its asset and amount are public and it never enters the tree, so it can
//! never be spent again on Tickrate, only claimed upstream.
//!
//! Owners sign the transfer's [`TransferEffects`]; its proof also shows where it lands in the
//! state ([`TransferWitness`]: the old root its inputs are members of, the leaves its outputs
//! take and the new root), which is what lets the upper chain's rollup contract move its root
//! with the proof alone.

use std::collections::BTreeMap;

use alloy_primitives::U256;
use ark_bn254::Fr;
use ark_ff::Zero;

use crate::{
    constants::{
        TRANSFER_EFFECT_INPUTS, TRANSFER_INPUTS, TRANSFER_OUTPUTS, TRANSFER_PUBLIC_INPUTS,
        TREE_DEPTH, domain,
    },
    error::AssetsError,
    keys::{self, Address, Signature, SpendingKey},
    output::{Output, limbs, nullifier, recipient_field},
    poseidon,
    tree::MerklePath,
};

/// An output being spent, with where it sits in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputNote {
    /// The output spent.
    pub output: Output,
    /// Its leaf index.
    pub leaf_index: u64,
    /// Its path to the root the transfer is proven against.
    pub path: MerklePath,
}

impl InputNote {
    /// A zero-amount input owned by `owner`, for a spend with one real input. `blinding` must be
    /// fresh (random) so its nullifier is too.
    pub fn dummy(owner: Address, asset: U256, blinding: Fr) -> Self {
        Self {
            output: Output {
                owner,
                asset,
                amount: U256::ZERO,
                blinding,
            },
            leaf_index: 0,
            path: MerklePath {
                positions: [0; TREE_DEPTH],
                siblings: [[Fr::zero(); 2]; TREE_DEPTH],
            },
        }
    }
}

/// A withdrawal: an amount of one asset released to an upper-chain account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withdrawal {
    /// The upper-chain account that may claim it.
    pub recipient: alloy_primitives::Address,
    /// The asset type.
    pub asset: U256,
    /// The amount.
    pub amount: U256,
}

/// A transfer before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferPlan {
    /// The root the inputs' paths lead to.
    pub root: Fr,
    /// The outputs spent.
    pub inputs: [InputNote; TRANSFER_INPUTS],
    /// The outputs created; with `withdraw_to`, the second is the withdrawal (its owner and
    /// blinding are then ignored).
    pub outputs: [Output; TRANSFER_OUTPUTS],
    /// Makes this a withdraw of the second output to this upper-chain account.
    pub withdraw_to: Option<alloy_primitives::Address>,
}

/// What a transfer does, as everyone sees it: the nullifiers it publishes, the commitments it
/// appends and the withdrawal it makes. Its owners sign exactly this, not where in the state it
/// lands, so whoever proves it (the client or a prover service) may place it after transfers
/// that came first without asking the owners again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferEffects {
    /// The inputs' nullifiers.
    pub nullifiers: [Fr; TRANSFER_INPUTS],
    /// Commitments of the new outputs; zero for the second output of a withdraw.
    pub commitments: [Fr; TRANSFER_OUTPUTS],
    /// The withdrawal, for a withdraw.
    pub withdrawal: Option<Withdrawal>,
}

impl TransferEffects {
    /// The effects as public inputs (the last [`TRANSFER_EFFECT_INPUTS`] of the circuit's).
    pub fn to_field_elements(&self) -> [Fr; TRANSFER_EFFECT_INPUTS] {
        let (recipient, [asset_high, asset_low], [amount_high, amount_low]) = match &self.withdrawal
        {
            Some(w) => (
                recipient_field(w.recipient),
                limbs(w.asset),
                limbs(w.amount),
            ),
            None => (Fr::zero(), [Fr::zero(); 2], [Fr::zero(); 2]),
        };
        [
            self.nullifiers[0],
            self.nullifiers[1],
            self.commitments[0],
            self.commitments[1],
            recipient,
            asset_high,
            asset_low,
            amount_high,
            amount_low,
        ]
    }

    /// The message every input owner signs: a hash of the effects, so a signature authorizes
    /// exactly this spend, these outputs and this withdrawal.
    pub fn message(&self) -> Fr {
        poseidon::hash(domain::TRANSFER_MESSAGE, &self.to_field_elements())
    }

    /// The leaves the transfer appends to the output tree, as the circuit appends them: the
    /// second is zero (an empty leaf, so the root does not move) for a withdraw.
    pub fn appended(&self) -> [Fr; TRANSFER_OUTPUTS] {
        self.commitments
    }

    /// Leaves the tree holds after the transfer that it did not before: a withdraw's second
    /// output never enters it.
    pub fn leaves_added(&self) -> u64 {
        if self.withdrawal.is_some() { 1 } else { 2 }
    }
}

/// What a transfer's proof is verified against: its effects and where in the state they land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferPublic {
    /// The root the inputs are members of and the outputs are appended to.
    pub old_root: Fr,
    /// The root after appending the outputs.
    pub new_root: Fr,
    /// The leaf index of the first output.
    pub leaf_index: u64,
    /// What the transfer does.
    pub effects: TransferEffects,
}

impl TransferPublic {
    /// The circuit's public inputs, in the order of
    /// [`TRANSFER_PUBLIC_INPUTS`](crate::constants::TRANSFER_PUBLIC_INPUTS).
    pub fn to_field_elements(&self) -> [Fr; TRANSFER_PUBLIC_INPUTS] {
        let effects = self.effects.to_field_elements();
        let mut all = [Fr::zero(); TRANSFER_PUBLIC_INPUTS];
        all[0] = self.old_root;
        all[1] = self.new_root;
        all[2] = Fr::from(self.leaf_index);
        all[3..].copy_from_slice(&effects);
        all
    }
}

/// Where a transfer's outputs are appended: the paths of the two new leaves, each in the tree
/// as it is just before that leaf is appended, and the roots before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insertion {
    /// The root before.
    pub old_root: Fr,
    /// The root after.
    pub new_root: Fr,
    /// The index of the first new leaf.
    pub leaf_index: u64,
    /// The new leaves' paths.
    pub paths: [MerklePath; TRANSFER_OUTPUTS],
}

impl Insertion {
    /// Whether appending `leaves` along these paths leads from the old root to the new one, at
    /// leaves `leaf_index` and on.
    pub fn check(&self, leaves: &[Fr; TRANSFER_OUTPUTS]) -> Result<(), AssetsError> {
        let mut root = self.old_root;
        for (offset, (path, leaf)) in self.paths.iter().zip(leaves).enumerate() {
            let in_place = path.leaf_index() == self.leaf_index + offset as u64
                && path.root_from(Fr::zero()) == Some(root);
            if !in_place {
                return Err(AssetsError::InsertionInvalid);
            }
            root = path.root_from(*leaf).ok_or(AssetsError::InsertionInvalid)?;
        }
        if root != self.new_root {
            return Err(AssetsError::InsertionInvalid);
        }
        Ok(())
    }
}

/// A signed transfer placed in the state: everything the circuit takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferWitness {
    /// The transfer, its inputs' paths leading to `insertion.old_root`.
    pub transfer: SignedTransfer,
    /// Where its outputs are appended.
    pub insertion: Insertion,
}

impl TransferWitness {
    /// The public inputs the proof is verified against.
    pub fn public(&self) -> TransferPublic {
        TransferPublic {
            old_root: self.insertion.old_root,
            new_root: self.insertion.new_root,
            leaf_index: self.insertion.leaf_index,
            effects: self.transfer.effects,
        }
    }

    /// Every rule the circuit enforces, with a typed error (see [`SignedTransfer::check`]).
    pub fn check(&self) -> Result<(), AssetsError> {
        if self.transfer.plan.root != self.insertion.old_root {
            return Err(AssetsError::StaleRoot);
        }
        self.transfer.check()?;
        self.insertion.check(&self.transfer.effects.appended())
    }
}

/// A signed transfer: everything the prover needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransfer {
    /// The plan.
    pub plan: TransferPlan,
    /// Each input owner's nullifier key.
    pub nullifier_keys: [Fr; TRANSFER_INPUTS],
    /// Each input owner's signature on [`TransferEffects::message`].
    pub signatures: [Signature; TRANSFER_INPUTS],
    /// What the transfer does.
    pub effects: TransferEffects,
}

impl TransferPlan {
    /// The effects, with the nullifiers derived from the spenders' nullifier keys.
    pub fn effects(&self, nullifier_keys: [Fr; TRANSFER_INPUTS]) -> TransferEffects {
        let nullifiers = std::array::from_fn(|i| {
            let input = &self.inputs[i];
            nullifier(
                nullifier_keys[i],
                input.output.commitment(),
                input.leaf_index,
            )
        });
        let withdrawal = self.withdraw_to.map(|recipient| Withdrawal {
            recipient,
            asset: self.outputs[1].asset,
            amount: self.outputs[1].amount,
        });
        let second = if withdrawal.is_some() {
            Fr::zero()
        } else {
            self.outputs[1].commitment()
        };
        TransferEffects {
            nullifiers,
            commitments: [self.outputs[0].commitment(), second],
            withdrawal,
        }
    }

    /// Signs with the key of each input's owner (`keys[i]` spends input `i`).
    pub fn sign(self, keys: [&SpendingKey; TRANSFER_INPUTS]) -> SignedTransfer {
        let nullifier_keys = keys.map(SpendingKey::nullifier_key);
        let effects = self.effects(nullifier_keys);
        let message = effects.message();
        let signatures = keys.map(|key| key.sign(message));
        SignedTransfer {
            plan: self,
            nullifier_keys,
            signatures,
            effects,
        }
    }
}

impl SignedTransfer {
    /// Every rule the circuit enforces, checked out of circuit with a typed error, so an honest
    /// client learns what is wrong before spending seconds on a proof that would not verify.
    pub fn check(&self) -> Result<(), AssetsError> {
        let plan = &self.plan;
        if plan
            .withdraw_to
            .is_some_and(|recipient| recipient.is_zero())
        {
            return Err(AssetsError::WithdrawalToZero);
        }
        if self.effects != plan.effects(self.nullifier_keys) {
            // The effects were edited after signing.
            return Err(AssetsError::SignatureInvalid { input: 0 });
        }
        let message = self.effects.message();
        for (input, note) in plan.inputs.iter().enumerate() {
            let owner = note.output.owner;
            if keys::nullifier_key_hash(self.nullifier_keys[input]) != owner.nullifier_key_hash {
                return Err(AssetsError::NotOwner { input });
            }
            let is_real = !note.output.amount.is_zero();
            let reaches_root = note.path.root_from(note.output.commitment()) == Some(plan.root)
                && note.path.leaf_index() == note.leaf_index;
            if is_real && !reaches_root {
                return Err(AssetsError::MerklePathInvalid { input });
            }
            if !keys::verify(&owner.signing_key, message, &self.signatures[input]) {
                return Err(AssetsError::SignatureInvalid { input });
            }
        }
        if self.effects.nullifiers[0] == self.effects.nullifiers[1] {
            return Err(AssetsError::DuplicateNullifier);
        }
        check_balance(
            plan.inputs.iter().map(|note| &note.output),
            plan.outputs.iter(),
        )
    }
}

/// Per asset type, the inputs' amounts add up to the outputs' amounts (in u256, no overflow).
pub fn check_balance<'a>(
    inputs: impl Iterator<Item = &'a Output>,
    outputs: impl Iterator<Item = &'a Output>,
) -> Result<(), AssetsError> {
    fn add(sums: &mut BTreeMap<U256, U256>, output: &Output) -> Result<(), AssetsError> {
        let sum = sums.entry(output.asset).or_default();
        *sum = sum
            .checked_add(output.amount)
            .ok_or(AssetsError::AmountOverflow {
                asset: output.asset,
            })?;
        Ok(())
    }
    let mut spent = BTreeMap::new();
    let mut created = BTreeMap::new();
    for output in inputs {
        add(&mut spent, output)?;
    }
    for output in outputs {
        add(&mut created, output)?;
    }
    spent.retain(|_, amount| !amount.is_zero());
    created.retain(|_, amount| !amount.is_zero());
    let assets = spent
        .keys()
        .chain(created.keys())
        .copied()
        .collect::<Vec<_>>();
    for asset in assets {
        if spent.get(&asset) != created.get(&asset) {
            return Err(AssetsError::Unbalanced { asset });
        }
    }
    Ok(())
}
