//! The transfer circuit (two inputs, two outputs) in R1CS with `ark-r1cs-std`.
//!
//! Public inputs (see [`TransferPublic::to_field_elements`]): old root, new root, first new
//! leaf index, two nullifiers, two output commitments, and the withdrawal (recipient, asset
//! limbs, amount limbs; all zero for a plain transfer). For each input it enforces:
//! - the commitment is `Poseidon(COMMITMENT; A, Poseidon(NULLIFIER_KEY; nk), asset, amount,
//!   blinding)` for the witnessed owner key `A` and nullifier key `nk`;
//! - its Merkle path (positions as two booleans a level, never both set) leads to the old
//!   root, unless the amount is zero (a dummy input);
//! - the public nullifier is `Poseidon(NULLIFIER; nk, commitment, leaf index)`, the leaf index
//!   being the path's positions read in base 3;
//! - an EdDSA signature by `A` on the hash of the transfer's effects (the public inputs but the
//!   first three): `S·G = R + h·A`, with `R` and `A` allocated as prime-order points.
//!
//! For the outputs: the first commitment is public; the second is public unless the transfer is
//! a withdraw (nonzero recipient), in which case its public commitment is zero and its asset
//! and amount are the public withdrawal. Asset types and amounts are u256, carried as two
//! 128-bit limbs, each range-checked. Conservation holds per asset type: for the type of every
//! note, the spent minus the created amounts of that type is zero as an integer (see
//! [`enforce_conservation`]). The two nullifiers differ.
//!
//! The state transition ([`enforce_insertion`]): the two public commitments are appended as
//! leaves `leaf index` and `leaf index + 1`. For each, one witnessed path must lead from an empty
//! leaf (zero) to the root before it and from the commitment to the root after it; the first
//! starts at the old root, the second ends at the new root. A withdraw's public second
//! commitment is zero, so its slot stays empty and the root does not move for it.
//!
//! [`DepositCircuit`] proves a deposit's mint the same way: the output's commitment, computed
//! from the public deposit (blinding = deposit id), is appended at the leaf index.

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
    deposit::{DepositPublic, DepositWitness},
    keys::signature_scalar_in_field,
    output::limbs,
    poseidon::hash_var,
    transfer::{TransferPublic, TransferWitness},
    tree::MerklePath,
};

/// Bits of the signature scalar `S`: it is reduced modulo the subgroup order (251 bits).
const SIGNATURE_SCALAR_BITS: usize = 251;

/// The transfer circuit over one signed transfer placed in the state. The circuit's shape does
/// not depend on the values, so any valid transfer (see [`TransferCircuit::blank`]) serves for
/// the key setup.
#[derive(Debug, Clone)]
pub struct TransferCircuit {
    witness: TransferWitness,
}

impl TransferCircuit {
    /// The circuit proving `witness`.
    pub fn new(witness: TransferWitness) -> Self {
        Self { witness }
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
        let witness = crate::state::AssetState::new()
            .prepare(&plan.sign([&key, &key]))
            .expect("an empty tree has room");
        Self::new(witness)
    }
}

/// The public input variables.
struct PublicVars {
    old_root: FpVar<Fr>,
    new_root: FpVar<Fr>,
    leaf_index: FpVar<Fr>,
    nullifiers: [FpVar<Fr>; TRANSFER_INPUTS],
    commitments: [FpVar<Fr>; TRANSFER_OUTPUTS],
    recipient: FpVar<Fr>,
    withdrawn_asset: [FpVar<Fr>; 2],
    withdrawn_amount: [FpVar<Fr>; 2],
    /// The effects the owners sign: every public input but the first three.
    effects: Vec<FpVar<Fr>>,
}

/// An asset type and amount, as range-checked limbs `[high, low]`.
struct Value {
    asset: [FpVar<Fr>; 2],
    amount: [FpVar<Fr>; 2],
}

impl ConstraintSynthesizer<Fr> for TransferCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let witness = &self.witness;
        let transfer = &witness.transfer;
        let public = alloc_public(cs.clone(), &witness.public())?;
        let message = hash_var(cs.clone(), domain::TRANSFER_MESSAGE, &public.effects)?;
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
        enforce_conservation(&spent, &created)?;
        enforce_insertion(&cs, &witness.insertion.paths, &public)
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
        old_root: all[0].clone(),
        new_root: all[1].clone(),
        leaf_index: all[2].clone(),
        nullifiers: [all[3].clone(), all[4].clone()],
        commitments: [all[5].clone(), all[6].clone()],
        recipient: all[7].clone(),
        withdrawn_asset: [all[8].clone(), all[9].clone()],
        withdrawn_amount: [all[10].clone(), all[11].clone()],
        effects: all[3..].to_vec(),
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
    transfer: &crate::transfer::SignedTransfer,
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

    let (roots, leaf_index) = path_roots(&cs, &note.path, std::slice::from_ref(&commitment))?;
    let is_dummy = amount[0].is_zero()? & amount[1].is_zero()?;
    roots[0].conditional_enforce_equal(&public.old_root, &!is_dummy)?;

    let nullifier = hash_var(
        cs.clone(),
        domain::NULLIFIER,
        &[nullifier_key, commitment, leaf_index],
    )?;
    nullifier.enforce_equal(&public.nullifiers[input])?;

    enforce_signature(&cs, &signing_key, transfer, input, message)?;
    Ok(Value { asset, amount })
}

/// The roots reached from each of `leaves` along one witnessed path (the path's positions and
/// siblings are allocated once and shared), and the leaf index the path encodes.
fn path_roots(
    cs: &ConstraintSystemRef<Fr>,
    path: &MerklePath,
    leaves: &[FpVar<Fr>],
) -> Result<(Vec<FpVar<Fr>>, FpVar<Fr>), SynthesisError> {
    let mut nodes = leaves.to_vec();
    let mut leaf_index = FpVar::<Fr>::zero();
    let mut weight = Fr::ONE;
    for (position, [first, second]) in path.positions.iter().zip(path.siblings.iter()) {
        let is_middle = Boolean::new_witness(cs.clone(), || Ok(*position == 1))?;
        let is_right = Boolean::new_witness(cs.clone(), || Ok(*position == 2))?;
        // Positions 0, 1, 2 only: both flags set would be a fourth, ambiguous one.
        (&is_middle & &is_right).enforce_equal(&Boolean::FALSE)?;
        let first = witness(cs, *first)?;
        let second = witness(cs, *second)?;
        let not_left = &is_middle | &is_right;
        for node in nodes.iter_mut() {
            let child_0 = not_left.select(&first, node)?;
            let child_1 = is_middle.select(node, &is_right.select(&second, &first)?)?;
            let child_2 = is_right.select(node, &second)?;
            *node = hash_var(cs.clone(), domain::NODE, &[child_0, child_1, child_2])?;
        }
        leaf_index += FpVar::from(is_middle) * weight + FpVar::from(is_right) * weight.double();
        weight *= Fr::from(TREE_ARITY as u64);
    }
    Ok((nodes, leaf_index))
}

/// Appends the public commitments at `leaf index` and `leaf index + 1` (see the module doc).
fn enforce_insertion(
    cs: &ConstraintSystemRef<Fr>,
    paths: &[MerklePath; TRANSFER_OUTPUTS],
    public: &PublicVars,
) -> Result<(), SynthesisError> {
    let empty = FpVar::<Fr>::zero();
    let mut root = public.old_root.clone();
    for (offset, (path, commitment)) in paths.iter().zip(&public.commitments).enumerate() {
        let (roots, leaf_index) = path_roots(cs, path, &[empty.clone(), commitment.clone()])?;
        leaf_index.enforce_equal(&(&public.leaf_index + Fr::from(offset as u64)))?;
        roots[0].enforce_equal(&root)?;
        root = roots[1].clone();
    }
    root.enforce_equal(&public.new_root)
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
    transfer: &crate::transfer::SignedTransfer,
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
    transfer: &crate::transfer::SignedTransfer,
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

/// The deposit circuit over one deposit placed in the state. Public inputs: see
/// [`DepositPublic::to_field_elements`]. The asset and amount limbs are not range-checked here:
/// whoever verifies derives them from the deposit's u256 values (the rollup contract from the
/// bridge's record), so they are canonical 128-bit limbs, the ones the transfer circuit
/// range-checks when the output is spent.
#[derive(Debug, Clone)]
pub struct DepositCircuit {
    witness: DepositWitness,
}

impl DepositCircuit {
    /// The circuit proving `witness`.
    pub fn new(witness: DepositWitness) -> Self {
        Self { witness }
    }

    /// A circuit over a valid deposit into an empty tree, for the key setup.
    pub fn blank() -> Self {
        let deposit = crate::deposit::Deposit {
            deposit_id: 0,
            owner: crate::keys::SpendingKey::from_seed([0x5e; 32]).address(),
            asset: U256::ZERO,
            amount: U256::ZERO,
        };
        let witness = crate::state::AssetState::new()
            .prepare_deposit(&deposit)
            .expect("an empty tree has room for deposit 0");
        Self::new(witness)
    }
}

impl ConstraintSynthesizer<Fr> for DepositCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let public: &DepositPublic = &self.witness.public;
        let inputs = public
            .to_field_elements()
            .iter()
            .map(|value| FpVar::new_input(cs.clone(), || Ok(*value)))
            .collect::<Result<Vec<_>, _>>()?;
        // old root, new root, leaf index, deposit id (the blinding), then the output's fields in
        // the commitment's order.
        let [
            old_root,
            new_root,
            leaf_index,
            deposit_id,
            owner_x,
            owner_y,
            nullifier_key_hash,
            asset_high,
            asset_low,
            amount_high,
            amount_low,
        ] = <[FpVar<Fr>; crate::constants::DEPOSIT_PUBLIC_INPUTS]>::try_from(inputs)
            .map_err(|_| SynthesisError::Unsatisfiable)?;
        let commitment = hash_var(
            cs.clone(),
            domain::COMMITMENT,
            &[
                owner_x,
                owner_y,
                nullifier_key_hash,
                asset_high,
                asset_low,
                amount_high,
                amount_low,
                deposit_id,
            ],
        )?;
        let (roots, path_index) =
            path_roots(&cs, &self.witness.path, &[FpVar::zero(), commitment])?;
        path_index.enforce_equal(&leaf_index)?;
        roots[0].enforce_equal(&old_root)?;
        roots[1].enforce_equal(&new_root)
    }
}

/// Constraints of one transfer (the figure the `assets` benchmark reports).
pub fn constraint_count() -> Result<usize, SynthesisError> {
    count(TransferCircuit::blank())
}

/// Constraints of one deposit mint.
pub fn deposit_constraint_count() -> Result<usize, SynthesisError> {
    count(DepositCircuit::blank())
}

fn count(circuit: impl ConstraintSynthesizer<Fr>) -> Result<usize, SynthesisError> {
    let cs = ark_relations::gr1cs::ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(ark_relations::gr1cs::OptimizationGoal::Constraints);
    circuit.generate_constraints(cs.clone())?;
    cs.finalize();
    Ok(cs.num_constraints())
}
