//! The EVM side of the proofs: a Solidity Groth16 verifier generated from a verifying key, and
//! proofs and public inputs encoded the way that verifier (and the EVM's BN254 precompiles)
//! reads them. Nothing here touches a network; the upper-chain adapter and the tests deploy the
//! generated source after compiling it with the repository's solc-js.
//!
//! The verifier checks Groth16's equation `e(A, B) = e(α, β) · e(x, γ) · e(C, δ)` with
//! `x = IC₀ + Σ inputᵢ · ICᵢ₊₁` as one call to the pairing precompile (0x08) over
//! `e(-A, B) · e(α, β) · e(x, γ) · e(C, δ) = 1`, after one ECMUL (0x07) and one ECADD (0x06) per
//! public input. Encodings:
//! - a base-field element (`Fq`) or scalar (`Fr`) is a `uint256` holding its canonical integer;
//! - a G1 point is `(x, y)`, the point at infinity `(0, 0)`;
//! - a G2 point is `(x.c1, x.c0, y.c1, y.c0)`: the precompile (EIP-197) wants each coordinate of
//!   `Fq2 = Fq[u]/(u² + 1)` as its imaginary part first, while arkworks names the real part
//!   `c0`. Writing `c0` first is the classic mistake; the tests catch it on a real EVM.
//!
//! The verifier refuses (returns false, never reverts) a public input not below the scalar field
//! modulus `r` (otherwise `input + r` would verify as a second encoding of `input`, and a
//! contract keyed by a nullifier would see two nullifiers), a proof coordinate not below the
//! base field modulus `q`, and points not on their curve (the precompiles fail on them).

use std::fmt::Write as _;

use alloy_primitives::{U256, keccak256};
use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::PrimeField;
use ark_groth16::{Proof, VerifyingKey};

/// Words of a proof as the generated verifier takes it.
pub const PROOF_WORDS: usize = 8;

/// A scalar-field element (a public input) as its canonical integer.
pub fn fr_to_u256(value: Fr) -> U256 {
    U256::from_limbs(value.into_bigint().0)
}

/// A base-field element as its canonical integer.
pub fn fq_to_u256(value: Fq) -> U256 {
    U256::from_limbs(value.into_bigint().0)
}

fn g1_words(point: &G1Affine) -> [U256; 2] {
    if point.is_zero() {
        return [U256::ZERO; 2];
    }
    [fq_to_u256(point.x), fq_to_u256(point.y)]
}

fn fq2_words(value: &Fq2) -> [U256; 2] {
    // Imaginary part first: EIP-197's order.
    [fq_to_u256(value.c1), fq_to_u256(value.c0)]
}

fn g2_words(point: &G2Affine) -> [U256; 4] {
    if point.is_zero() {
        return [U256::ZERO; 4];
    }
    let [x1, x0] = fq2_words(&point.x);
    let [y1, y0] = fq2_words(&point.y);
    [x1, x0, y1, y0]
}

/// A proof as `[A.x, A.y, B.x.c1, B.x.c0, B.y.c1, B.y.c0, C.x, C.y]`.
pub fn proof_to_words(proof: &Proof<Bn254>) -> [U256; PROOF_WORDS] {
    let [ax, ay] = g1_words(&proof.a);
    let [bx1, bx0, by1, by0] = g2_words(&proof.b);
    let [cx, cy] = g1_words(&proof.c);
    [ax, ay, bx1, bx0, by1, by0, cx, cy]
}

/// Public inputs as `uint256`s.
pub fn inputs_to_words(inputs: &[Fr]) -> Vec<U256> {
    inputs.iter().map(|input| fr_to_u256(*input)).collect()
}

/// An asset address as the bridge takes it: Baby Jubjub key x, y and nullifier-key hash.
pub fn address_words(address: &crate::keys::Address) -> [U256; 3] {
    [
        fr_to_u256(address.signing_key.x),
        fr_to_u256(address.signing_key.y),
        fr_to_u256(address.nullifier_key_hash),
    ]
}

/// The Solidity signature of the verifier's entry point for `inputs` public inputs.
pub fn verify_signature(inputs: usize) -> String {
    format!("verifyProof(uint256[{PROOF_WORDS}],uint256[{inputs}])")
}

/// The calldata of `verifyProof(proof, inputs)` on the generated verifier.
pub fn verify_calldata(proof: &[U256; PROOF_WORDS], inputs: &[U256]) -> Vec<u8> {
    let selector = keccak256(verify_signature(inputs.len()).as_bytes());
    let mut data = Vec::with_capacity(4 + 32 * (PROOF_WORDS + inputs.len()));
    data.extend_from_slice(&selector[..4]);
    for word in proof.iter().chain(inputs) {
        data.extend_from_slice(&word.to_be_bytes::<32>());
    }
    data
}

/// Public inputs of the circuit `verifying_key` verifies.
pub fn public_input_count(verifying_key: &VerifyingKey<Bn254>) -> usize {
    assert!(
        !verifying_key.gamma_abc_g1.is_empty(),
        "a verifying key has IC₀"
    );
    verifying_key.gamma_abc_g1.len() - 1
}

/// The Solidity source of a contract `contract_name` whose `verifyProof(uint256[8],
/// uint256[N])` accepts exactly the proofs `verifying_key` accepts. `origin` names the key file
/// in the header comment.
pub fn verifier_source(
    verifying_key: &VerifyingKey<Bn254>,
    contract_name: &str,
    origin: &str,
) -> String {
    assert!(
        !contract_name.is_empty()
            && contract_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !contract_name.starts_with(|c: char| c.is_ascii_digit()),
        "a Solidity identifier"
    );
    let inputs = public_input_count(verifying_key);
    let mut constants = String::new();
    let mut constant = |name: &str, value: U256| {
        writeln!(constants, "    uint256 internal constant {name} = {value};")
            .expect("writing to a String cannot fail");
    };
    let [alpha_x, alpha_y] = g1_words(&verifying_key.alpha_g1);
    constant("ALPHA_X", alpha_x);
    constant("ALPHA_Y", alpha_y);
    for (name, point) in [
        ("BETA", &verifying_key.beta_g2),
        ("GAMMA", &verifying_key.gamma_g2),
        ("DELTA", &verifying_key.delta_g2),
    ] {
        let [x1, x0, y1, y0] = g2_words(point);
        constant(&format!("{name}_X1"), x1);
        constant(&format!("{name}_X0"), x0);
        constant(&format!("{name}_Y1"), y1);
        constant(&format!("{name}_Y0"), y0);
    }
    for (index, point) in verifying_key.gamma_abc_g1.iter().enumerate() {
        let [x, y] = g1_words(point);
        constant(&format!("IC{index}_X"), x);
        constant(&format!("IC{index}_Y"), y);
    }
    let mut accumulate = String::new();
    for index in 0..inputs {
        let next = index + 1;
        writeln!(
            accumulate,
            "        if (input[{index}] >= R || !_accumulate(x, IC{next}_X, IC{next}_Y, \
             input[{index}])) return false;"
        )
        .expect("writing to a String cannot fail");
    }
    let r = fr_modulus();
    let q = fq_modulus();
    format!(
        r#"// SPDX-License-Identifier: Apache-2.0
// Groth16 verifier over BN254 with {inputs} public inputs, generated by `assets-setup
// export-verifier` from {origin}. Do not edit: the constants below are that verifying key, and
// the contract accepts exactly the proofs the key accepts.
pragma solidity ^0.8.24;

contract {contract_name} {{
    /// BN254's scalar field modulus: every public input must be below it.
    uint256 internal constant R = {r};
    /// BN254's base field modulus: every proof coordinate must be below it.
    uint256 internal constant Q = {q};
    /// Public inputs of the circuit.
    uint256 public constant PUBLIC_INPUTS = {inputs};

{constants}
    /// Whether `proof` = [A.x, A.y, B.x.c1, B.x.c0, B.y.c1, B.y.c0, C.x, C.y] proves `input`.
    /// Never reverts: malformed proofs and out-of-range inputs are refused with false.
    function verifyProof(uint256[{PROOF_WORDS}] calldata proof, uint256[{inputs}] calldata input)
        external
        view
        returns (bool)
    {{
        for (uint256 i = 0; i < {PROOF_WORDS}; i++) {{
            if (proof[i] >= Q) return false;
        }}
        uint256[2] memory x = [uint256(IC0_X), uint256(IC0_Y)];
{accumulate}
        uint256[24] memory p;
        // e(-A, B): the negation of (x, y) is (x, q - y), and the point at infinity stays (0, 0).
        p[0] = proof[0];
        p[1] = proof[1] == 0 ? 0 : Q - proof[1];
        p[2] = proof[2];
        p[3] = proof[3];
        p[4] = proof[4];
        p[5] = proof[5];
        p[6] = ALPHA_X;
        p[7] = ALPHA_Y;
        p[8] = BETA_X1;
        p[9] = BETA_X0;
        p[10] = BETA_Y1;
        p[11] = BETA_Y0;
        p[12] = x[0];
        p[13] = x[1];
        p[14] = GAMMA_X1;
        p[15] = GAMMA_X0;
        p[16] = GAMMA_Y1;
        p[17] = GAMMA_Y0;
        p[18] = proof[6];
        p[19] = proof[7];
        p[20] = DELTA_X1;
        p[21] = DELTA_X0;
        p[22] = DELTA_Y1;
        p[23] = DELTA_Y0;
        uint256[1] memory out;
        bool ok;
        assembly ("memory-safe") {{
            ok := staticcall(gas(), 0x08, p, 768, out, 32)
        }}
        return ok && out[0] == 1;
    }}

    /// x += s · (px, py), with the ECMUL and ECADD precompiles; false if either fails.
    function _accumulate(uint256[2] memory x, uint256 px, uint256 py, uint256 s)
        private
        view
        returns (bool ok)
    {{
        uint256[4] memory buffer;
        buffer[0] = px;
        buffer[1] = py;
        buffer[2] = s;
        assembly ("memory-safe") {{
            ok := staticcall(gas(), 0x07, buffer, 96, buffer, 64)
            mstore(add(buffer, 64), mload(x))
            mstore(add(buffer, 96), mload(add(x, 32)))
            ok := and(ok, staticcall(gas(), 0x06, buffer, 128, x, 64))
        }}
    }}
}}
"#
    )
}

fn fr_modulus() -> U256 {
    U256::from_limbs(Fr::MODULUS.0)
}

fn fq_modulus() -> U256 {
    U256::from_limbs(Fq::MODULUS.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_put_the_imaginary_part_first_and_infinity_at_zero() {
        let generator = G2Affine::generator();
        let words = g2_words(&generator);
        assert_eq!(words[0], fq_to_u256(generator.x.c1));
        assert_eq!(words[1], fq_to_u256(generator.x.c0));
        assert_eq!(words[2], fq_to_u256(generator.y.c1));
        assert_eq!(words[3], fq_to_u256(generator.y.c0));
        // EIP-197's generator of G2, imaginary part first.
        assert_eq!(
            words[0].to_string(),
            "11559732032986387107991004021392285783925812861821192530917403151452391805634"
        );
        assert_eq!(g1_words(&G1Affine::zero()), [U256::ZERO; 2]);
        assert_eq!(
            fr_modulus().to_string(),
            "21888242871839275222246405745257275088548364400416034343698204186575808495617"
        );
        let calldata = verify_calldata(&[U256::from(1); PROOF_WORDS], &[U256::from(2)]);
        assert_eq!(calldata.len(), 4 + 32 * 9);
        assert_eq!(calldata[4 + 32 * 9 - 1], 2);
    }
}
