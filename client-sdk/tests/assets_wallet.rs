//! The asset wallet against a real EVM: Hardhat's dev node from npm (started by
//! `upper_chain::devnode`), the bridge and rollup contracts with verifiers generated from
//! freshly set-up key files, as `assets/tests/assets_evm.rs` runs them.
//!
//! Alice deposits an ERC-20 and sees it in her balance; she pays Bob, who finds the output by
//! scanning the notes (and Carol, paid nothing, finds none); Bob withdraws part of it to an
//! upper-chain account and claims it there. Three proofs in all: a deposit, a transfer, a
//! withdraw.
//!
//! Without Node.js the tests are skipped with a message, except under `CI=true`, where that
//! fails them.

#![allow(missing_docs, clippy::unwrap_used)]

use std::{path::PathBuf, sync::OnceLock};

use assets::{U256, asset, prover, solidity, state::AssetState};
use client_sdk::assets::{AssetKeys, AssetWallet, RollupConfig, Stage, WalletError};
use primitives::AccountKey;
use upper_chain::{
    devnode::{CHAIN_ID, compile_solidity, devnode, funded_key},
    rollup::{EvmAssets, RollupError, RollupEvent},
};

/// Seed of the dev setup these tests use.
const SETUP_SEED: u64 = 17;

struct Keys {
    directory: tempfile::TempDir,
    verifier_code: Vec<u8>,
    deposit_verifier_code: Vec<u8>,
}

/// Key files set up once; the Solidity verifiers generated from them and compiled.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let directory = tempfile::tempdir().unwrap();
        let (proving_key, verifying_key) = prover::dev_setup(SETUP_SEED).unwrap();
        prover::write_keys(directory.path(), &proving_key, &verifying_key).unwrap();
        let (proving_key, verifying_key) = prover::dev_setup_deposit(SETUP_SEED).unwrap();
        prover::write_deposit_keys(directory.path(), &proving_key, &verifying_key).unwrap();
        let compiled = |key, name: &str| {
            let source = solidity::verifier_source(&key, name, "the test's key files");
            let path = directory.path().join(format!("{name}.sol"));
            std::fs::write(&path, source).unwrap();
            compile_solidity(&path, name).unwrap()
        };
        let verifier_code = compiled(
            prover::read_verifying_key(directory.path()).unwrap(),
            "TransferVerifier",
        );
        let deposit_verifier_code = compiled(
            prover::read_deposit_verifying_key(directory.path()).unwrap(),
            "DepositVerifier",
        );
        Keys {
            directory,
            verifier_code,
            deposit_verifier_code,
        }
    })
}

/// Deploys the bridge and its rollup; returns the operator's adapter and the wallets' config.
fn deploy(url: &str) -> (EvmAssets, RollupConfig) {
    let keys = keys();
    let chain = EvmAssets::deploy(
        url,
        CHAIN_ID,
        &funded_key(),
        keys.verifier_code.clone(),
        keys.deposit_verifier_code.clone(),
        solidity::fr_to_u256(AssetState::new().root()),
    )
    .unwrap();
    let config = RollupConfig {
        url: url.to_string(),
        chain_id: CHAIN_ID,
        bridge: chain.bridge(),
        deploy_block: chain.deploy_block(),
        proving_keys: PathBuf::from(keys.directory.path()),
    };
    (chain, config)
}

/// Records the stages a wallet reports.
fn recorder(stages: &mut Vec<Stage>) -> impl FnMut(Stage) + '_ {
    move |stage| stages.push(stage)
}

#[test]
fn a_deposit_is_paid_on_found_by_scanning_withdrawn_and_claimed() {
    let Some(url) = devnode() else {
        return;
    };
    let (operator, config) = deploy(url);
    let alice_keys = AssetKeys::from_parts([0xa1; 32], funded_key());
    let bob_keys = AssetKeys::from_parts([0xb0; 32], funded_key());
    // Carol's account holds nothing: scanning sends no transaction.
    let carol_keys = AssetKeys::generate(None);

    let mut alice = AssetWallet::open(&alice_keys, &config).unwrap();
    let token = alice
        .chain()
        .deploy_test_erc20("GOLD", U256::from(1_000))
        .unwrap();
    let gold = asset::erc20(token);
    assert!(alice.balances().is_empty());

    // Alice deposits 100: locked in the bridge, minted by her wallet (one deposit proof).
    let mut stages = Vec::new();
    let deposit = alice
        .deposit_erc20(token, U256::from(100), &mut recorder(&mut stages))
        .unwrap();
    assert_eq!((deposit.asset, deposit.amount), (gold, U256::from(100)));
    assert!(stages.contains(&Stage::Proving("deposit")));
    assert_eq!(alice.balances().get(&gold), Some(&U256::from(100)));
    assert!(alice.pending_deposits().is_empty());
    assert_eq!(operator.deposits_minted().unwrap(), 1);
    assert_eq!(
        alice.chain().erc20_balance(token, config.bridge).unwrap(),
        U256::from(100)
    );

    // More than she holds is refused before any proof, and spends nothing.
    let mut bob = AssetWallet::open(&bob_keys, &config).unwrap();
    let mut stages = Vec::new();
    assert!(matches!(
        alice.transfer(
            &bob.payment_address(),
            gold,
            U256::from(101),
            &mut recorder(&mut stages)
        ),
        Err(WalletError::InsufficientFunds { have, want, .. })
            if have == U256::from(100) && want == U256::from(101)
    ));
    assert!(
        !stages
            .iter()
            .any(|stage| matches!(stage, Stage::Proving(_)))
    );

    // Alice pays Bob 30 and keeps 70 as change, both found through their notes.
    let paid_leaf = alice
        .transfer(&bob.payment_address(), gold, U256::from(30), &mut |_| {})
        .unwrap();
    assert_eq!(alice.balances().get(&gold), Some(&U256::from(70)));
    let spent: Vec<_> = alice.outputs().into_iter().filter(|o| o.spent).collect();
    assert_eq!(spent.len(), 1, "the deposit is spent");
    bob.sync().unwrap();
    assert_eq!(bob.balances().get(&gold), Some(&U256::from(30)));
    let found = bob.outputs();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].leaf_index, paid_leaf);
    assert_eq!(found[0].output.owner, bob_keys.spending_key().address());
    let carol = AssetWallet::open(&carol_keys, &config).unwrap();
    assert!(carol.outputs().is_empty(), "Carol finds no output");
    assert_eq!(carol.state().root(), bob.state().root());

    // A tampered copy of Bob's note, and garbage, published for his leaf: refused on scanning,
    // nothing counted twice. A note for a leaf not in the tree is refused by the rollup.
    let history = operator.history(config.deploy_block).unwrap();
    let note = history
        .events
        .iter()
        .find_map(|event| match event {
            RollupEvent::OutputNote { leaf_index, note } if *leaf_index == paid_leaf => {
                Some(note.clone())
            }
            _ => None,
        })
        .unwrap();
    let mut tampered = note.clone();
    tampered[40] ^= 1;
    operator.publish_note(paid_leaf, tampered).unwrap();
    operator.publish_note(paid_leaf, vec![7; 20]).unwrap();
    assert_eq!(
        operator.publish_note(99, note.clone()),
        Err(RollupError::NoSuchLeaf(99))
    );
    assert_eq!(
        operator.publish_note(paid_leaf, vec![0; 257]),
        Err(RollupError::NoteTooLong(257))
    );
    bob.sync().unwrap();
    assert_eq!(bob.outputs().len(), 1);
    assert_eq!(bob.balances().get(&gold), Some(&U256::from(30)));

    // Bob withdraws 20 to an upper-chain account and claims it there.
    let recipient = AccountKey::from_seed(0xb0b).address();
    let mut stages = Vec::new();
    let withdrawal = bob
        .withdraw(recipient, gold, U256::from(20), &mut recorder(&mut stages))
        .unwrap();
    assert!(stages.contains(&Stage::Proving("withdraw")));
    assert_eq!(
        (withdrawal.recipient, withdrawal.asset, withdrawal.amount),
        (recipient, gold, U256::from(20))
    );
    assert_eq!(bob.balances().get(&gold), Some(&U256::from(10)));
    assert_eq!(
        bob.unclaimed_withdrawals(recipient).unwrap(),
        vec![withdrawal]
    );
    bob.claim(&withdrawal, &mut |_| {}).unwrap();
    assert_eq!(
        bob.chain().erc20_balance(token, recipient).unwrap(),
        U256::from(20)
    );
    assert_eq!(
        bob.chain().erc20_balance(token, config.bridge).unwrap(),
        U256::from(80)
    );
    assert!(bob.unclaimed_withdrawals(recipient).unwrap().is_empty());
    assert!(matches!(
        bob.claim(&withdrawal, &mut |_| {}),
        Err(WalletError::Chain(RollupError::AlreadyReleased(_)))
    ));
    let mut inflated = withdrawal;
    inflated.amount = U256::from(80);
    assert!(matches!(
        bob.claim(&inflated, &mut |_| {}),
        Err(WalletError::UnknownWithdrawal(_))
    ));

    // Everyone's replica agrees with the rollup, and Alice still holds her change.
    alice.sync().unwrap();
    assert_eq!(alice.balances().get(&gold), Some(&U256::from(70)));
    assert_eq!(
        solidity::fr_to_u256(alice.state().root()),
        operator.root().unwrap()
    );
    assert_eq!(alice.state().leaf_count(), operator.leaf_count().unwrap());
}
