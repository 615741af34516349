//! What the accounting integration tests share: node registration on the `Registry`, and the
//! asset rollup deployed over verifiers generated from fresh circuit keys.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use assets::{prover, solidity, state::AssetState};
use primitives::{AccountKey, Address, NodeId, bls::BlsSecretKey};
use upper_chain::{
    Registration, UpperChain,
    devnode::{CHAIN_ID, compile_solidity},
    rollup::EvmAssets,
};

/// Seed of the dev setup of the rollup's circuits.
const SETUP_SEED: u64 = 17;

/// Registers the node of `key` (which sends its own registration) with `wallet` and
/// `features`.
pub fn register(
    chain: &dyn UpperChain,
    key: &AccountKey,
    wallet: Address,
    features: &[&str],
) -> NodeId {
    let bls = BlsSecretKey::from_seed(&key.secret_bytes());
    let registration = Registration {
        endpoint: "127.0.0.1:9000".into(),
        reward_wallet: wallet,
        wallet_features: features.iter().map(|f| f.to_string()).collect(),
        bls_key: bls.public_key(),
        bls_possession: bls.proof_of_possession(),
    };
    let signature = key.sign_prehash(&registration.signing_hash());
    chain.register_node(registration, &signature).unwrap()
}

/// The circuits' keys written to `directory`, and the bridge and rollup deployed over the
/// verifiers generated from them, sent to by `treasury`.
pub fn deploy_rollup(url: &str, treasury: &AccountKey, directory: &std::path::Path) -> EvmAssets {
    let (proving_key, verifying_key) = prover::dev_setup(SETUP_SEED).unwrap();
    prover::write_keys(directory, &proving_key, &verifying_key).unwrap();
    let (proving_key, verifying_key) = prover::dev_setup_deposit(SETUP_SEED).unwrap();
    prover::write_deposit_keys(directory, &proving_key, &verifying_key).unwrap();
    let compiled = |key, name: &str| {
        let source = solidity::verifier_source(&key, name, "the test's key files");
        let path = directory.join(format!("{name}.sol"));
        std::fs::write(&path, source).unwrap();
        compile_solidity(&path, name).unwrap()
    };
    let transfer_verifier = compiled(
        prover::read_verifying_key(directory).unwrap(),
        "TransferVerifier",
    );
    let deposit_verifier = compiled(
        prover::read_deposit_verifying_key(directory).unwrap(),
        "DepositVerifier",
    );
    EvmAssets::deploy(
        url,
        CHAIN_ID,
        treasury,
        transfer_verifier,
        deposit_verifier,
        solidity::fr_to_u256(AssetState::new().root()),
    )
    .unwrap()
}
