//! `tickrate assets` end to end on the EVM dev node (`upper_chain::devnode`): two wallets made
//! by `keygen`, a deposit, balances, a transfer the recipient finds, and the refusals a user
//! meets most (more than held, a malformed payment address), each a clear message and a failed
//! exit. Two proofs: the deposit's and the transfer's.
//!
//! Without Node.js the test is skipped with a message, except under `CI=true`, where that fails
//! it.

#![allow(missing_docs, clippy::unwrap_used)]

use std::{path::Path, process::Command};

use assets::{U256, prover, solidity, state::AssetState};
use primitives::AccountKey;
use upper_chain::{
    devnode::{CHAIN_ID, compile_solidity, devnode, funded_key},
    rollup::EvmAssets,
};

/// Writes dev-setup key files into `directory`; returns the two verifiers' bytecode.
fn set_up_keys(directory: &Path) -> (Vec<u8>, Vec<u8>) {
    let (proving_key, verifying_key) = prover::dev_setup(18).unwrap();
    prover::write_keys(directory, &proving_key, &verifying_key).unwrap();
    let (proving_key, verifying_key) = prover::dev_setup_deposit(18).unwrap();
    prover::write_deposit_keys(directory, &proving_key, &verifying_key).unwrap();
    let compiled = |key, name: &str| {
        let source = solidity::verifier_source(&key, name, "the test's key files");
        let path = directory.join(format!("{name}.sol"));
        std::fs::write(&path, source).unwrap();
        compile_solidity(&path, name).unwrap()
    };
    (
        compiled(
            prover::read_verifying_key(directory).unwrap(),
            "TransferVerifier",
        ),
        compiled(
            prover::read_deposit_verifying_key(directory).unwrap(),
            "DepositVerifier",
        ),
    )
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `tickrate assets ARGS` with the rollup's settings in the environment.
fn tickrate(env: &[(&str, String)], args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_tickrate"))
        .arg("assets")
        .args(args)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .env_remove("TICKRATE_ACCOUNT_KEY")
        .output()
        .unwrap();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn hex(key: &AccountKey) -> String {
    key.secret_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn deposit_balance_and_transfer_from_the_terminal() {
    let Some(url) = devnode() else {
        return;
    };
    let directory = tempfile::tempdir().unwrap();
    let keys = directory.path().join("keys");
    let (verifier_code, deposit_verifier_code) = set_up_keys(&keys);
    let operator = EvmAssets::deploy(
        url,
        CHAIN_ID,
        &funded_key(),
        verifier_code,
        deposit_verifier_code,
        solidity::fr_to_u256(AssetState::new().root()),
    )
    .unwrap();
    let rollup = |key: &Path| {
        vec![
            ("TICKRATE_ASSET_KEY", key.display().to_string()),
            ("TICKRATE_CHAIN", url.to_string()),
            ("TICKRATE_CHAIN_ID", CHAIN_ID.to_string()),
            ("TICKRATE_BRIDGE", operator.bridge().to_string()),
            ("TICKRATE_BRIDGE_BLOCK", operator.deploy_block().to_string()),
            ("TICKRATE_PROVING_KEYS", keys.display().to_string()),
        ]
    };

    // Two wallets; Alice's account holds the tokens.
    let alice_account = funded_key();
    let alice_key = directory.path().join("alice.key");
    let bob_key = directory.path().join("bob.key");
    let made = tickrate(
        &rollup(&alice_key),
        &["keygen", "--account-key", &hex(&alice_account)],
    );
    assert!(made.success, "{}", made.stderr);
    assert!(
        made.stdout
            .contains(&format!("account: {}", alice_account.address()))
    );
    let made = tickrate(&rollup(&bob_key), &["keygen"]);
    assert!(made.success, "{}", made.stderr);
    let bob_address = made
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("payment address: "))
        .unwrap()
        .to_string();
    assert!(bob_address.starts_with("tka"));
    // keygen never overwrites a key.
    let again = tickrate(&rollup(&bob_key), &["keygen"]);
    assert!(!again.success);
    assert!(again.stderr.contains("bob.key"), "{}", again.stderr);

    let token = EvmAssets::connect(
        url,
        CHAIN_ID,
        &alice_account,
        operator.bridge(),
        operator.deploy_block(),
    )
    .unwrap()
    .deploy_test_erc20("GOLD", U256::from(1_000))
    .unwrap();
    let token_text = token.to_string();

    let empty = tickrate(&rollup(&alice_key), &["balance"]);
    assert!(empty.success, "{}", empty.stderr);
    assert_eq!(empty.stdout.trim(), "no assets");

    let deposited = tickrate(
        &rollup(&alice_key),
        &["deposit", "--token", &token_text, "--amount", "100"],
    );
    assert!(deposited.success, "{}", deposited.stderr);
    assert!(
        deposited.stdout.contains("deposit 0 of 100"),
        "{}",
        deposited.stdout
    );
    let balance = tickrate(&rollup(&alice_key), &["balance"]);
    assert_eq!(balance.stdout.trim(), format!("100 {token}"));

    // Refusals: more than held (before any proof), and a malformed recipient.
    let too_much = tickrate(
        &rollup(&alice_key),
        &[
            "transfer",
            "--to",
            &bob_address,
            "--token",
            &token_text,
            "--amount",
            "1000",
        ],
    );
    assert!(!too_much.success);
    assert!(
        too_much.stderr.contains("insufficient funds"),
        "{}",
        too_much.stderr
    );
    let nobody = tickrate(
        &rollup(&alice_key),
        &[
            "transfer",
            "--to",
            "tka00",
            "--token",
            &token_text,
            "--amount",
            "1",
        ],
    );
    assert!(!nobody.success);
    assert!(
        nobody.stderr.contains("not a payment address"),
        "{}",
        nobody.stderr
    );

    let paid = tickrate(
        &rollup(&alice_key),
        &[
            "transfer",
            "--to",
            &bob_address,
            "--token",
            &token_text,
            "--amount",
            "40",
        ],
    );
    assert!(paid.success, "{}", paid.stderr);
    assert!(paid.stdout.contains("paid 40"), "{}", paid.stdout);
    let bob = tickrate(&rollup(&bob_key), &["balance"]);
    assert!(bob.success, "{}", bob.stderr);
    assert_eq!(bob.stdout.trim(), format!("40 {token}"));
    let alice = tickrate(&rollup(&alice_key), &["balance"]);
    assert_eq!(alice.stdout.trim(), format!("60 {token}"));
}
