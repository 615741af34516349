//! What the accounting integration tests share: node registration on the `Registry`, and the
//! asset rollup deployed over verifiers generated from fresh circuit keys.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use assets::{prover, solidity, state::AssetState};
use primitives::{AccountKey, Address, NodeId, bls::BlsSecretKey};
use upper_chain::{
    AdminOp, EvmChain, EvmConfig, Registration, UpperChain,
    devnode::{CHAIN_ID, compile_solidity, funded_key},
    rollup::EvmAssets,
};

/// A `Registry` deployed on the dev node by a fresh funded treasury key, with a fresh admin.
pub struct DevRegistry {
    /// The dev node.
    pub url: &'static str,
    /// The contract.
    pub registry: Address,
    /// The block it was deployed in.
    pub block: u64,
    /// Its deployer, which pays the upper-chain payouts.
    pub treasury: AccountKey,
    /// Its admin.
    pub admin: AccountKey,
}

impl DevRegistry {
    /// Deploys one on the dev node at `url`.
    pub fn deploy(url: &'static str) -> DevRegistry {
        let treasury = funded_key();
        let admin = funded_key();
        let (registry, block) =
            EvmChain::deploy(url, CHAIN_ID, &treasury, admin.address(), 1_000, None).unwrap();
        DevRegistry {
            url,
            registry,
            block,
            treasury,
            admin,
        }
    }

    /// The contract, sending with `key`.
    pub fn connect(&self, key: &AccountKey) -> EvmChain {
        let mut config = EvmConfig::new(self.url, CHAIN_ID, self.registry, key.clone());
        config.deploy_block = self.block;
        EvmChain::connect(config).unwrap()
    }

    /// Registers the node of `key` (sending its own registration).
    pub fn register(&self, key: &AccountKey, wallet: Address, features: &[&str]) -> NodeId {
        register(&self.connect(key), key, wallet, features)
    }

    /// Advances the registry's epoch, signed by the admin.
    pub fn advance_epoch(&self) {
        let chain = self.connect(&self.treasury);
        let nonce = chain.admin_nonce().unwrap();
        let op = AdminOp::AdvanceEpoch;
        let signature = self.admin.sign_prehash(&op.signing_hash(nonce));
        chain.admin(op, &signature).unwrap();
    }
}

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
