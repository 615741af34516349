//! Sizes and domain tags of the assets engine. Changing any of them changes every commitment,
//! root and proof: the proving and verifying keys must then be set up again.

/// Levels of the output tree. Every branch node has [`TREE_ARITY`] children, so the tree holds
/// 3^20 ≈ 3.5 billion outputs; each level costs one Poseidon permutation per input in the circuit.
pub const TREE_DEPTH: usize = 20;

/// Children of every branch node of the output tree.
pub const TREE_ARITY: usize = 3;

/// Outputs the tree can hold: `TREE_ARITY ^ TREE_DEPTH`.
pub const TREE_LEAVES_MAX: u64 = 3u64.pow(TREE_DEPTH as u32);

/// Inputs (spent outputs) of one transfer.
pub const TRANSFER_INPUTS: usize = 2;

/// Outputs created by one transfer (the second is the withdrawal of a withdraw).
pub const TRANSFER_OUTPUTS: usize = 2;

/// Public inputs of the transfer circuit, in this order: old root (the inputs are members of
/// it and the outputs are appended to it), new root, index of the first appended leaf, two
/// nullifiers, two output commitments, withdrawal recipient, withdrawn asset type (high, low
/// 128 bits), withdrawn amount (high, low 128 bits). The last nine are the transfer's effects,
/// which its owners sign; the first three place it in the state, which the prover picks.
pub const TRANSFER_PUBLIC_INPUTS: usize = 12;

/// Public inputs of the transfer circuit that its owners sign (see [`TRANSFER_PUBLIC_INPUTS`]).
pub const TRANSFER_EFFECT_INPUTS: usize = 9;

/// Public inputs of the deposit circuit, in this order: old root, new root, leaf index, deposit
/// id (the output's blinding), owner key x, owner key y, owner nullifier-key hash, asset type
/// (high, low 128 bits), amount (high, low 128 bits).
pub const DEPOSIT_PUBLIC_INPUTS: usize = 11;

/// Bits of a limb: asset types and amounts are u256, carried as two 128-bit limbs because a
/// BN254 field element holds only 254 bits.
pub const LIMB_BITS: usize = 128;

/// Bits of an upper-chain (EVM) account, the recipient of a withdrawal.
pub const RECIPIENT_BITS: usize = 160;

/// Poseidon domain tags, written into the capacity element before absorbing, so a hash made for
/// one purpose can never be replayed as another (a node as a commitment, a commitment as a
/// nullifier).
pub mod domain {
    /// A branch node of the output tree: three children.
    pub const NODE: u64 = 1;
    /// An output's commitment (its leaf).
    pub const COMMITMENT: u64 = 2;
    /// An output's nullifier.
    pub const NULLIFIER: u64 = 3;
    /// The public hash of a nullifier key, part of an address.
    pub const NULLIFIER_KEY: u64 = 4;
    /// The challenge of an EdDSA signature.
    pub const SIGNATURE: u64 = 5;
    /// The message a transfer's owners sign: its public inputs.
    pub const TRANSFER_MESSAGE: u64 = 6;
}

const _: () = assert!(TRANSFER_INPUTS == 2 && TRANSFER_OUTPUTS == 2);
const _: () = assert!(2 * LIMB_BITS == 256);
const _: () = assert!(TRANSFER_PUBLIC_INPUTS == 3 + TRANSFER_EFFECT_INPUTS);
// Leaf indices are u64 and their field encoding must be unique.
const _: () = assert!(TREE_DEPTH <= 40);
