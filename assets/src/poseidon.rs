//! Poseidon over the BN254 scalar field, out of circuit and in it.
//!
//! Parameters: width 4 (rate 3, capacity 1), S-box x^5, 8 full rounds and 56 partial rounds —
//! the round numbers the Poseidon paper (Grassi et al., USENIX Security 2021, table 2 and its
//! round-number script) gives for t = 4 over a 254-bit prime at 128-bit security, the same as
//! circomlib's `poseidon` for 3 inputs. Round constants and the MDS matrix come from the paper's
//! Grain LFSR as implemented by arkworks (`find_poseidon_ark_and_mds`, 254-bit field, no skipped
//! matrices). The constants therefore differ from circomlib's (which were produced by another
//! script): hashes are not interchangeable with circom circuits, and the Solidity side must use
//! these constants (they are derived, not copied, so anyone can regenerate them).
//!
//! Rate 3 fits the tree exactly: a branch node with 3 children is one permutation. Each use has
//! its own domain tag in the capacity element (see [`crate::constants::domain`]).

use std::sync::OnceLock;

use ark_bn254::Fr;
use ark_crypto_primitives::sponge::{
    CryptographicSponge,
    constraints::CryptographicSpongeVar,
    poseidon::{
        PoseidonConfig, PoseidonSponge, constraints::PoseidonSpongeVar, find_poseidon_ark_and_mds,
    },
};
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::gr1cs::{ConstraintSystemRef, SynthesisError};

/// Field elements absorbed per permutation.
pub const POSEIDON_RATE: usize = 3;
/// Capacity elements (holds the domain tag).
pub const POSEIDON_CAPACITY: usize = 1;
/// Full rounds (half before, half after the partial rounds).
pub const POSEIDON_FULL_ROUNDS: usize = 8;
/// Partial rounds.
pub const POSEIDON_PARTIAL_ROUNDS: usize = 56;
/// S-box exponent: the smallest alpha with gcd(alpha, p - 1) = 1 for BN254.
pub const POSEIDON_ALPHA: u64 = 5;

/// The one parameter set of the engine, derived once.
pub fn config() -> &'static PoseidonConfig<Fr> {
    static CONFIG: OnceLock<PoseidonConfig<Fr>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(
            254,
            POSEIDON_RATE,
            POSEIDON_FULL_ROUNDS as u64,
            POSEIDON_PARTIAL_ROUNDS as u64,
            0,
        );
        PoseidonConfig::new(
            POSEIDON_FULL_ROUNDS,
            POSEIDON_PARTIAL_ROUNDS,
            POSEIDON_ALPHA,
            mds,
            ark,
            POSEIDON_RATE,
            POSEIDON_CAPACITY,
        )
    })
}

/// Hashes `inputs` under `domain` to one field element.
pub fn hash(domain: u64, inputs: &[Fr]) -> Fr {
    let mut sponge = PoseidonSponge::new(config());
    sponge.state[0] = Fr::from(domain);
    sponge.absorb(&inputs);
    sponge.squeeze_field_elements::<Fr>(1)[0]
}

/// [`hash`] inside a circuit; yields the same value for the same inputs.
pub fn hash_var(
    cs: ConstraintSystemRef<Fr>,
    domain: u64,
    inputs: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut sponge = PoseidonSpongeVar::new(cs, config());
    sponge.state[0] = FpVar::Constant(Fr::from(domain));
    sponge.absorb(&inputs)?;
    let mut out = sponge.squeeze_field_elements(1)?;
    Ok(out.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_r1cs_std::{GR1CSVar, alloc::AllocVar};
    use ark_relations::gr1cs::ConstraintSystem;

    #[test]
    fn native_and_circuit_hashes_agree_and_domains_separate() {
        let inputs: Vec<Fr> = (1..=5u64).map(Fr::from).collect();
        let cs = ConstraintSystem::<Fr>::new_ref();
        let vars: Vec<FpVar<Fr>> = inputs
            .iter()
            .map(|x| FpVar::new_witness(cs.clone(), || Ok(*x)).expect("witness"))
            .collect();
        let in_circuit = hash_var(cs.clone(), 7, &vars).expect("synthesis");
        assert_eq!(in_circuit.value().expect("value"), hash(7, &inputs));
        assert!(cs.is_satisfied().expect("satisfiable"));
        assert_ne!(hash(7, &inputs), hash(8, &inputs));
        assert_ne!(hash(7, &inputs[..4]), hash(7, &inputs));
    }
}
