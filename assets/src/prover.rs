//! Groth16 over BN254: key setup, key files, proving and verifying transfers and deposit mints.
//!
//! **Dev setup.** [`dev_setup`] runs Groth16's circuit-specific setup with its randomness (the
//! toxic waste τ, α, β, γ, δ) drawn from ChaCha20 seeded with a public `u64`. Anyone who knows
//! the seed can forge proofs, so these keys are for development and tests only; a deployment
//! needs a multi-party ceremony whose output is written to the same files. The keys are
//! files, never code constants: [`write_keys`] writes `transfer.pk` (proving key) and
//! `transfer.vk` (verifying key) in arkworks' compressed canonical encoding, and
//! [`Prover::from_file`] / [`Verifier::from_file`] read them back. The deposit circuit has its
//! own setup ([`dev_setup_deposit`], randomness derived apart from the transfer's) and files,
//! `deposit.pk` and `deposit.vk` ([`write_deposit_keys`], [`DepositProver`],
//! [`DepositVerifier`]).

use std::path::Path;

use ark_bn254::{Bn254, Fr};
use ark_groth16::{
    Groth16, PreparedVerifyingKey, Proof, ProvingKey, VerifyingKey, prepare_verifying_key,
};
use ark_rand_chacha::ChaCha20Rng;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use ark_snark::SNARK;
use ark_std::rand::{CryptoRng, RngCore, SeedableRng};

use crate::{
    circuit::{DepositCircuit, TransferCircuit},
    deposit::{DepositPublic, DepositWitness},
    error::AssetsError,
    transfer::{TransferPublic, TransferWitness},
};

/// File name of the proving key inside a key directory.
pub const PROVING_KEY_FILE: &str = "transfer.pk";
/// File name of the verifying key inside a key directory.
pub const VERIFYING_KEY_FILE: &str = "transfer.vk";
/// File name of the deposit circuit's proving key inside a key directory.
pub const DEPOSIT_PROVING_KEY_FILE: &str = "deposit.pk";
/// File name of the deposit circuit's verifying key inside a key directory.
pub const DEPOSIT_VERIFYING_KEY_FILE: &str = "deposit.vk";
/// Bytes of a compressed Groth16 proof over BN254 (two G1 points and one G2 point).
pub const PROOF_BYTES: usize = 128;

/// A transfer as submitted to the engine: its public inputs and its proof.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferTx {
    /// What the proof is verified against.
    pub public: TransferPublic,
    /// The Groth16 proof.
    pub proof: Proof<Bn254>,
}

/// Encodes a proof (compressed, [`PROOF_BYTES`] bytes).
pub fn proof_to_bytes(proof: &Proof<Bn254>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(PROOF_BYTES);
    proof
        .serialize_compressed(&mut bytes)
        .expect("writing to a Vec cannot fail");
    assert_eq!(bytes.len(), PROOF_BYTES);
    bytes
}

/// Decodes a proof from untrusted bytes: the length is checked first and every point is checked
/// to be on its curve and in its subgroup.
pub fn proof_from_bytes(bytes: &[u8]) -> Result<Proof<Bn254>, AssetsError> {
    if bytes.len() != PROOF_BYTES {
        return Err(AssetsError::ProofMalformed(format!(
            "{} bytes, expected {PROOF_BYTES}",
            bytes.len()
        )));
    }
    Proof::deserialize_with_mode(bytes, Compress::Yes, Validate::Yes)
        .map_err(|error| AssetsError::ProofMalformed(error.to_string()))
}

/// The dev setup: Groth16 keys for the transfer circuit from a public seed (see the module doc).
pub fn dev_setup(seed: u64) -> Result<(ProvingKey<Bn254>, VerifyingKey<Bn254>), AssetsError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Groth16::<Bn254>::circuit_specific_setup(TransferCircuit::blank(), &mut rng)
        .map_err(|error| AssetsError::Proving(error.to_string()))
}

/// The dev setup of the deposit circuit from the same public seed, its randomness derived apart
/// from the transfer circuit's.
pub fn dev_setup_deposit(
    seed: u64,
) -> Result<(ProvingKey<Bn254>, VerifyingKey<Bn254>), AssetsError> {
    let derived = blake3::derive_key("tickrate assets deposit setup", &seed.to_le_bytes());
    let mut rng = ChaCha20Rng::from_seed(derived);
    Groth16::<Bn254>::circuit_specific_setup(DepositCircuit::blank(), &mut rng)
        .map_err(|error| AssetsError::Proving(error.to_string()))
}

/// Writes `deposit.pk` and `deposit.vk` into `directory` (created if missing).
pub fn write_deposit_keys(
    directory: &Path,
    proving_key: &ProvingKey<Bn254>,
    verifying_key: &VerifyingKey<Bn254>,
) -> Result<(), AssetsError> {
    std::fs::create_dir_all(directory).map_err(|error| key_file_error(directory, error))?;
    write_canonical(&directory.join(DEPOSIT_PROVING_KEY_FILE), proving_key)?;
    write_canonical(&directory.join(DEPOSIT_VERIFYING_KEY_FILE), verifying_key)
}

/// Reads `deposit.vk` from a key directory, checking every point.
pub fn read_deposit_verifying_key(directory: &Path) -> Result<VerifyingKey<Bn254>, AssetsError> {
    read_canonical(&directory.join(DEPOSIT_VERIFYING_KEY_FILE), Validate::Yes)
}

/// Writes `transfer.pk` and `transfer.vk` into `directory` (created if missing).
pub fn write_keys(
    directory: &Path,
    proving_key: &ProvingKey<Bn254>,
    verifying_key: &VerifyingKey<Bn254>,
) -> Result<(), AssetsError> {
    std::fs::create_dir_all(directory).map_err(|error| key_file_error(directory, error))?;
    write_canonical(&directory.join(PROVING_KEY_FILE), proving_key)?;
    write_canonical(&directory.join(VERIFYING_KEY_FILE), verifying_key)
}

/// Reads `transfer.vk` from a key directory, checking every point (for the verifier, and for
/// generating the Solidity verifier from it).
pub fn read_verifying_key(directory: &Path) -> Result<VerifyingKey<Bn254>, AssetsError> {
    read_canonical(&directory.join(VERIFYING_KEY_FILE), Validate::Yes)
}

fn write_canonical(path: &Path, value: &impl CanonicalSerialize) -> Result<(), AssetsError> {
    let mut bytes = Vec::with_capacity(value.compressed_size());
    value
        .serialize_compressed(&mut bytes)
        .map_err(|error| key_file_error(path, error))?;
    std::fs::write(path, bytes).map_err(|error| key_file_error(path, error))
}

fn read_canonical<T: CanonicalDeserialize>(
    path: &Path,
    validate: Validate,
) -> Result<T, AssetsError> {
    let bytes = std::fs::read(path).map_err(|error| key_file_error(path, error))?;
    T::deserialize_with_mode(bytes.as_slice(), Compress::Yes, validate)
        .map_err(|error| key_file_error(path, error))
}

fn key_file_error(path: &Path, error: impl std::fmt::Display) -> AssetsError {
    AssetsError::KeyFile {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// The randomness a proof takes, as one object-safe trait, so the prover is instantiated once.
trait ProofRng: RngCore + CryptoRng {}
impl<R: RngCore + CryptoRng> ProofRng for R {}

/// Proves transfers with the proving key.
pub struct Prover {
    proving_key: ProvingKey<Bn254>,
}

impl Prover {
    /// A prover with this key.
    pub fn new(proving_key: ProvingKey<Bn254>) -> Self {
        Self { proving_key }
    }

    /// Reads `transfer.pk` from a key directory. The proving key is the prover's own file, not
    /// peer input, and checking its hundreds of thousands of points would take longer than a
    /// proof, so its points are checked only for being well-formed encodings.
    pub fn from_file(directory: &Path) -> Result<Self, AssetsError> {
        read_canonical(&directory.join(PROVING_KEY_FILE), Validate::No).map(Self::new)
    }

    /// Checks `transfer` (typed errors for every rule the circuit enforces) and proves it.
    pub fn prove<R: RngCore + CryptoRng>(
        &self,
        transfer: &TransferWitness,
        rng: &mut R,
    ) -> Result<TransferTx, AssetsError> {
        transfer.check()?;
        self.prove_with(transfer, rng)
    }

    /// Proves without the native checks, as a dishonest prover would: for an invalid transfer
    /// the result is a proof that does not verify. Tests use it to show that the verifier, not
    /// the honest prover's checks, stops a bad transfer.
    pub fn prove_unchecked<R: RngCore + CryptoRng>(
        &self,
        transfer: &TransferWitness,
        rng: &mut R,
    ) -> Result<TransferTx, AssetsError> {
        self.prove_with(transfer, rng)
    }

    /// The one instantiation of the Groth16 prover, at this crate's optimisation level: were it
    /// generic over the caller's RNG, a debug-profile caller would compile the whole prover
    /// unoptimised and prove many times slower.
    fn prove_with(
        &self,
        transfer: &TransferWitness,
        rng: &mut dyn ProofRng,
    ) -> Result<TransferTx, AssetsError> {
        let proof = Groth16::<Bn254>::prove(
            &self.proving_key,
            TransferCircuit::new(transfer.clone()),
            &mut &mut *rng,
        )
        .map_err(|error| AssetsError::Proving(error.to_string()))?;
        Ok(TransferTx {
            public: transfer.public(),
            proof,
        })
    }
}

/// A deposit mint as the upper chain's rollup takes it: its public values and its proof.
#[derive(Debug, Clone, PartialEq)]
pub struct DepositTx {
    /// What the proof is verified against.
    pub public: DepositPublic,
    /// The Groth16 proof.
    pub proof: Proof<Bn254>,
}

/// Proves deposit mints with the deposit circuit's proving key.
pub struct DepositProver {
    proving_key: ProvingKey<Bn254>,
}

impl DepositProver {
    /// A prover with this key.
    pub fn new(proving_key: ProvingKey<Bn254>) -> Self {
        Self { proving_key }
    }

    /// Reads `deposit.pk` from a key directory (see [`Prover::from_file`] on validation).
    pub fn from_file(directory: &Path) -> Result<Self, AssetsError> {
        read_canonical(&directory.join(DEPOSIT_PROVING_KEY_FILE), Validate::No).map(Self::new)
    }

    /// Checks the witness's paths and proves the mint.
    pub fn prove<R: RngCore + CryptoRng>(
        &self,
        deposit: &DepositWitness,
        rng: &mut R,
    ) -> Result<DepositTx, AssetsError> {
        deposit.check()?;
        self.prove_with(deposit, rng)
    }

    fn prove_with(
        &self,
        deposit: &DepositWitness,
        rng: &mut dyn ProofRng,
    ) -> Result<DepositTx, AssetsError> {
        let proof = Groth16::<Bn254>::prove(
            &self.proving_key,
            DepositCircuit::new(deposit.clone()),
            &mut &mut *rng,
        )
        .map_err(|error| AssetsError::Proving(error.to_string()))?;
        Ok(DepositTx {
            public: deposit.public,
            proof,
        })
    }
}

/// Verifies deposit-mint proofs with the deposit circuit's prepared verifying key.
#[derive(Debug, Clone)]
pub struct DepositVerifier {
    prepared: PreparedVerifyingKey<Bn254>,
}

impl DepositVerifier {
    /// A verifier with this key.
    pub fn new(verifying_key: &VerifyingKey<Bn254>) -> Self {
        Self {
            prepared: prepare_verifying_key(verifying_key),
        }
    }

    /// Reads `deposit.vk` from a key directory, checking every point.
    pub fn from_file(directory: &Path) -> Result<Self, AssetsError> {
        read_deposit_verifying_key(directory).map(|key| Self::new(&key))
    }

    /// Whether `proof` proves the mint with these public values.
    pub fn verify(&self, public: &DepositPublic, proof: &Proof<Bn254>) -> bool {
        let inputs = public.to_field_elements();
        Groth16::<Bn254>::verify_with_processed_vk(&self.prepared, &inputs, proof).unwrap_or(false)
    }
}

/// Verifies transfer proofs with the prepared verifying key.
#[derive(Debug, Clone)]
pub struct Verifier {
    prepared: PreparedVerifyingKey<Bn254>,
}

impl Verifier {
    /// A verifier with this key.
    pub fn new(verifying_key: &VerifyingKey<Bn254>) -> Self {
        Self {
            prepared: prepare_verifying_key(verifying_key),
        }
    }

    /// Reads `transfer.vk` from a key directory, checking every point.
    pub fn from_file(directory: &Path) -> Result<Self, AssetsError> {
        read_verifying_key(directory).map(|key| Self::new(&key))
    }

    /// Whether `proof` proves a valid transfer with these public inputs.
    pub fn verify(&self, public: &TransferPublic, proof: &Proof<Bn254>) -> bool {
        let inputs: [Fr; crate::constants::TRANSFER_PUBLIC_INPUTS] = public.to_field_elements();
        Groth16::<Bn254>::verify_with_processed_vk(&self.prepared, &inputs, proof).unwrap_or(false)
    }
}
