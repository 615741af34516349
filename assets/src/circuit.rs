//! The transfer circuit (two inputs, two outputs) in R1CS with `ark-r1cs-std`.
//!
//! Public inputs (see [`TransferPublic::to_field_elements`]): root, two nullifiers, two output
//! commitments, and the withdrawal (recipient, asset limbs, amount limbs; all zero for a plain
//! transfer). For each input it enforces:
//! - the commitment is `Poseidon(COMMITMENT; A, Poseidon(NULLIFIER_KEY; nk), asset, amount,
//!   blinding)` for the witnessed owner key `A` and nullifier key `nk`;
//! - its Merkle path (positions as two booleans a level, never both set) leads to the root,
//!   unless the amount is zero (a dummy input);
//! - the public nullifier is `Poseidon(NULLIFIER; nk, commitment, leaf index)`, the leaf index
//!   being the path's positions read in base 3;
//! - an EdDSA signature by `A` on the hash of all public inputs: `S·G = R + h·A`, with `R` and
//!   `A` allocated as prime-order points.
//!
//! For the outputs: the first commitment is public; the second is public unless the transfer is
//! a withdraw (nonzero recipient), in which case its public commitment is zero and its asset
//! and amount are the public withdrawal. Asset types and amounts are u256, carried as two
//! 128-bit limbs, each range-checked. Conservation holds per asset type: for the type of every
//! note, the spent minus the created amounts of that type is zero as an integer (see
//! [`enforce_conservation`]). The two nullifiers differ.

use std::sync::OnceLock;

use alloy_primitives::U256;
use ark_bn254::Fr;
use ark_ec::AffineRepr;
use ark_ed_on_bn254::{EdwardsAffine, EdwardsProjective, constraints::EdwardsVar};
use ark_ff::{AdditiveGroup, Field};
use ark_r1cs_std::{
    alloc::AllocVar,
    boolean::Boolean,
    convert::ToBitsGadget,
    eq::EqGadget,
    fields::{FieldVar, fp::FpVar},
    groups::CurveVar,
};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::{
    constants::{LIMB_BITS, RECIPIENT_BITS, TRANSFER_INPUTS, TRANSFER_OUTPUTS, TREE_ARITY, domain},
    keys::signature_scalar_in_field,
    output::limbs,
    poseidon::hash_var,
    transfer::{SignedTransfer, TransferPublic},
};

/// Bits of the signature scalar `S`: it is reduced modulo the subgroup order (251 bits).
const SIGNATURE_SCALAR_BITS: usize = 251;

/// The transfer circuit over one signed transfer. The circuit's shape does not depend on the
/// values, so any valid transfer (see [`TransferCircuit::blank`]) serves for the key setup.
#[derive(Debug, Clone)]
pub struct TransferCircuit {
    transfer: SignedTransfer,
}

impl TransferCircuit {
    /// The circuit proving `transfer`.
    pub fn new(transfer: SignedTransfer) -> Self {
        Self { transfer }
    }

    /// A circuit over a valid transfer of nothing (two dummy inputs, two empty outputs), for the
    /// key setup and for counting constraints.
    pub fn blank() -> Self {
        use crate::{
            keys::SpendingKey,
            output::Output,
            transfer::{InputNote, TransferPlan},
        };
        let key = SpendingKey::from_seed([0x5e; 32]);
        let owner = key.address();
        let asset = U256::ZERO;
        let empty = Output {
            owner,
            asset,
            amount: U256::ZERO,
            blinding: Fr::from(3u64),
        };
        let plan = TransferPlan {
            root: crate::tree::OutputTree::new().root(),
            inputs: [
                InputNote::dummy(owner, asset, Fr::from(1u64)),
                InputNote::dummy(owner, asset, Fr::from(2u64)),
            ],
            outputs: [empty, empty],
            withdraw_to: None,
        };
        Self::new(plan.sign([&key, &key]))
    }
}

/// The public input variables.
struct PublicVars {
    root: FpVar<Fr>,
    nullifiers: [FpVar<Fr>; TRANSFER_INPUTS],
    commitments: [FpVar<Fr>; TRANSFER_OUTPUTS],
    recipient: FpVar<Fr>,
    withdrawn_asset: [FpVar<Fr>; 2],
    withdrawn_amount: [FpVar<Fr>; 2],
    all: Vec<FpVar<Fr>>,
}

/// An asset type and amount, as range-checked limbs `[high, low]`.
struct Value {
    asset: [FpVar<Fr>; 2],
    amount: [FpVar<Fr>; 2],
}

impl ConstraintSynthesizer<Fr> for TransferCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let transfer = &self.transfer;
        let public = alloc_public(cs.clone(), &transfer.public)?;
        let message = hash_var(cs.clone(), domain::TRANSFER_MESSAGE, &public.all)?;
        let mut spent = Vec::with_capacity(TRANSFER_INPUTS);
        for input in 0..TRANSFER_INPUTS {
            spent.push(enforce_input(
                cs.clone(),
                transfer,
                input,
                &public,
                &message,
            )?);
        }
        public.nullifiers[0].enforce_not_equal(&public.nullifiers[1])?;
        let created = enforce_outputs(cs.clone(), transfer, &public)?;
        enforce_conservation(&spent, &created)
    }
}

fn alloc_public(
    cs: ConstraintSystemRef<Fr>,
    public: &TransferPublic,
) -> Result<PublicVars, SynthesisError> {
    let values = public.to_field_elements();
    let all = values
        .iter()
        .map(|value| FpVar::new_input(cs.clone(), || Ok(*value)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PublicVars {
        root: all[0].clone(),
        nullifiers: [all[1].clone(), all[2].clone()],
        commitments: [all[3].clone(), all[4].clone()],
        recipient: all[5].clone(),
        withdrawn_asset: [all[6].clone(), all[7].clone()],
        withdrawn_amount: [all[8].clone(), all[9].clone()],
        all,
    })
}

fn witness(cs: &ConstraintSystemRef<Fr>, value: Fr) -> Result<FpVar<Fr>, SynthesisError> {
    FpVar::new_witness(cs.clone(), || Ok(value))
}

/// A u256 as two witnessed limbs, each range-checked to 128 bits, so limb sums never wrap.
fn alloc_u256(cs: &ConstraintSystemRef<Fr>, value: U256) -> Result<[FpVar<Fr>; 2], SynthesisError> {
    let [high, low] = limbs(value);
    let high = witness(cs, high)?;
    let low = witness(cs, low)?;
    // The decomposition itself is the range check; the bits are not needed afterwards.
    let _ = high.to_bits_le_with_top_bits_zero(LIMB_BITS)?;
    let _ = low.to_bits_le_with_top_bits_zero(LIMB_BITS)?;
    Ok([high, low])
}

/// Enforces input `input` (membership, nullifier, signature) and returns its value.
fn enforce_input(
    cs: ConstraintSystemRef<Fr>,
    transfer: &SignedTransfer,
    input: usize,
    public: &PublicVars,
    message: &FpVar<Fr>,
) -> Result<Value, SynthesisError> {
    let note = &transfer.plan.inputs[input];
    let output = &note.output;
    // Allocating a point as a witness enforces that it lies in the prime-order subgroup.
    let signing_key =
        EdwardsVar::new_witness(cs.clone(), || Ok(output.owner.signing_key.into_group()))?;
    let nullifier_key = witness(&cs, transfer.nullifier_keys[input])?;
    let nullifier_key_hash = hash_var(
        cs.clone(),
        domain::NULLIFIER_KEY,
        std::slice::from_ref(&nullifier_key),
    )?;
    let asset = alloc_u256(&cs, output.asset)?;
    let amount = alloc_u256(&cs, output.amount)?;
    let blinding = witness(&cs, output.blinding)?;
    let commitment = hash_var(
        cs.clone(),
        domain::COMMITMENT,
        &[
            signing_key.x.clone(),
            signing_key.y.clone(),
            nullifier_key_hash,
            asset[0].clone(),
            asset[1].clone(),
            amount[0].clone(),
            amount[1].clone(),
            blinding,
        ],
    )?;

    let (root, leaf_index) = merkle_root(&cs, note, commitment.clone())?;
    let is_dummy = amount[0].is_zero()? & amount[1].is_zero()?;
    root.conditional_enforce_equal(&public.root, &!is_dummy)?;

    let nullifier = hash_var(
        cs.clone(),
        domain::NULLIFIER,
        &[nullifier_key, commitment, leaf_index],
    )?;
    nullifier.enforce_equal(&public.nullifiers[input])?;

    enforce_signature(&cs, &signing_key, transfer, input, message)?;
    Ok(Value { asset, amount })
}

/// The root reached from `leaf` along the input's witnessed path, and the leaf index the path
/// encodes.
fn merkle_root(
    cs: &ConstraintSystemRef<Fr>,
    note: &crate::transfer::InputNote,
    leaf: FpVar<Fr>,
) -> Result<(FpVar<Fr>, FpVar<Fr>), SynthesisError> {
    let mut node = leaf;
    let mut leaf_index = FpVar::<Fr>::zero();
    let mut weight = Fr::ONE;
    for (position, [first, second]) in note.path.positions.iter().zip(note.path.siblings.iter()) {
        let is_middle = Boolean::new_witness(cs.clone(), || Ok(*position == 1))?;
        let is_right = Boolean::new_witness(cs.clone(), || Ok(*position == 2))?;
        // Positions 0, 1, 2 only: both flags set would be a fourth, ambiguous one.
        (&is_middle & &is_right).enforce_equal(&Boolean::FALSE)?;
        let first = witness(cs, *first)?;
        let second = witness(cs, *second)?;
        let not_left = &is_middle | &is_right;
        let child_0 = not_left.select(&first, &node)?;
        let child_1 = is_middle.select(&node, &is_right.select(&second, &first)?)?;
        let child_2 = is_right.select(&node, &second)?;
        node = hash_var(cs.clone(), domain::NODE, &[child_0, child_1, child_2])?;
        leaf_index += FpVar::from(is_middle) * weight + FpVar::from(is_right) * weight.double();
        weight *= Fr::from(TREE_ARITY as u64);
    }
    Ok((node, leaf_index))
}

/// `2^i·G` for every bit of the signature scalar, for the fixed-base multiplication.
fn generator_powers() -> &'static [EdwardsProjective] {
    static POWERS: OnceLock<Vec<EdwardsProjective>> = OnceLock::new();
    POWERS.get_or_init(|| {
        let mut power = EdwardsAffine::generator().into_group();
        (0..SIGNATURE_SCALAR_BITS)
            .map(|_| {
                let current = power;
                power = power.double();
                current
            })
            .collect()
    })
}

/// `S·G = R + h·A` with `h = Poseidon(SIGNATURE; R, A, message)`.
fn enforce_signature(
    cs: &ConstraintSystemRef<Fr>,
    signing_key: &EdwardsVar,
    transfer: &SignedTransfer,
    input: usize,
    message: &FpVar<Fr>,
) -> Result<(), SynthesisError> {
    let signature = &transfer.signatures[input];
    let r = EdwardsVar::new_witness(cs.clone(), || Ok(signature.r.into_group()))?;
    let s = witness(cs, signature_scalar_in_field(signature))?;
    let h = hash_var(
        cs.clone(),
        domain::SIGNATURE,
        &[
            r.x.clone(),
            r.y.clone(),
            signing_key.x.clone(),
            signing_key.y.clone(),
            message.clone(),
        ],
    )?;
    // h is any field element: all 254 bits, canonical, so h·A is the integer multiple the
    // native verifier computes.
    let h_bits = h.to_bits_le()?;
    let (s_bits, _) = s.to_bits_le_with_top_bits_zero(SIGNATURE_SCALAR_BITS)?;
    let mut lhs = EdwardsVar::zero();
    lhs.precomputed_base_scalar_mul_le(s_bits.iter().zip(generator_powers().iter()))?;
    let rhs = r + signing_key.scalar_mul_le(h_bits.iter())?;
    lhs.enforce_equal(&rhs)
}

/// Enforces the output commitments and the withdrawal, and returns the outputs' values.
fn enforce_outputs(
    cs: ConstraintSystemRef<Fr>,
    transfer: &SignedTransfer,
    public: &PublicVars,
) -> Result<Vec<Value>, SynthesisError> {
    let mut values = Vec::with_capacity(TRANSFER_OUTPUTS);
    let mut commitments = Vec::with_capacity(TRANSFER_OUTPUTS);
    for output in &transfer.plan.outputs {
        let asset = alloc_u256(&cs, output.asset)?;
        let amount = alloc_u256(&cs, output.amount)?;
        let commitment = hash_var(
            cs.clone(),
            domain::COMMITMENT,
            &[
                witness(&cs, output.owner.signing_key.x)?,
                witness(&cs, output.owner.signing_key.y)?,
                witness(&cs, output.owner.nullifier_key_hash)?,
                asset[0].clone(),
                asset[1].clone(),
                amount[0].clone(),
                amount[1].clone(),
                witness(&cs, output.blinding)?,
            ],
        )?;
        commitments.push(commitment);
        values.push(Value { asset, amount });
    }
    commitments[0].enforce_equal(&public.commitments[0])?;

    // An EVM account is 160 bits; a canonical encoding keeps one recipient one field element.
    let _ = public
        .recipient
        .to_bits_le_with_top_bits_zero(RECIPIENT_BITS)?;
    let is_withdraw = !public.recipient.is_zero()?;
    let zero = FpVar::<Fr>::zero();
    let second = is_withdraw.select(&zero, &commitments[1])?;
    second.enforce_equal(&public.commitments[1])?;
    let withdrawn = &values[1];
    for (public_limb, limb) in public
        .withdrawn_asset
        .iter()
        .zip(&withdrawn.asset)
        .chain(public.withdrawn_amount.iter().zip(&withdrawn.amount))
    {
        is_withdraw
            .select(limb, &zero)?
            .enforce_equal(public_limb)?;
    }
    Ok(values)
}

/// Conservation per asset type. For the type `t` of every note, let
/// `d_high = Σ spent high limbs of type t - Σ created high limbs of type t`, `d_low` likewise.
/// Each limb is below 2^128 and at most two notes add on each side, so both differences lie
/// strictly between -2^129 and 2^129, far from the field modulus: the field values determine
/// the integers. Enforcing `d_high ∈ {-1, 0, 1}` and `d_low + d_high·2^128 = 0` therefore
/// enforces the integer `d_high·2^128 + d_low = 0`: the u256 amounts of type `t` balance.
fn enforce_conservation(spent: &[Value], created: &[Value]) -> Result<(), SynthesisError> {
    let notes: Vec<(&Value, bool)> = spent
        .iter()
        .map(|v| (v, true))
        .chain(created.iter().map(|v| (v, false)))
        .collect();
    let limb_base = FpVar::Constant(Fr::from(2u64).pow([LIMB_BITS as u64]));
    for (index, (of_type, _)) in notes.iter().enumerate() {
        let mut difference_high = FpVar::<Fr>::zero();
        let mut difference_low = FpVar::<Fr>::zero();
        for (other, (note, is_spent)) in notes.iter().enumerate() {
            let same_type = if other == index {
                Boolean::TRUE
            } else {
                note.asset[0].is_eq(&of_type.asset[0])? & note.asset[1].is_eq(&of_type.asset[1])?
            };
            let high = FpVar::from(same_type.clone()) * &note.amount[0];
            let low = FpVar::from(same_type) * &note.amount[1];
            if *is_spent {
                difference_high += high;
                difference_low += low;
            } else {
                difference_high -= high;
                difference_low -= low;
            }
        }
        let one = FpVar::<Fr>::one();
        let cube_minus_self =
            (&difference_high - &one) * &difference_high * (&difference_high + &one);
        cube_minus_self.enforce_equal(&FpVar::zero())?;
        (difference_low + difference_high * &limb_base).enforce_equal(&FpVar::zero())?;
    }
    Ok(())
}

/// Constraints of one transfer (the figure the `assets` benchmark reports).
pub fn constraint_count() -> Result<usize, SynthesisError> {
    let cs = ark_relations::gr1cs::ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(ark_relations::gr1cs::OptimizationGoal::Constraints);
    TransferCircuit::blank().generate_constraints(cs.clone())?;
    cs.finalize();
    Ok(cs.num_constraints())
}
