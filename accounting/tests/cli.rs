//! The `tickrate-accounting` command as an operator runs it: `report` from the chain and the
//! nodes' usage files, `plan`, and `pay` on a real EVM dev node, where a node that changed its
//! wallet within the period is paid each epoch's work at the wallet of that epoch, and a second
//! `pay` moves nothing; malformed rate and usage files are clear errors that write nothing.
//!
//! Without Node.js the dev-node test is skipped with a message, except under `CI=true`, where
//! that fails it (`upper_chain::devnode`).

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::DevRegistry;

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Output},
};

use accounting::{
    PayoutMethod, UsageReport,
    report::{self, format_epochs},
    usage::{Figure, Observation, Usage},
};
use primitives::{AccountKey, Address, U256, keyfile::OperatorKeys};
use upper_chain::{
    EmbeddedChain, Genesis, UpperChain, WalletUpdate,
    devnode::{CHAIN_ID, devnode, funded_key},
};

fn accounting(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickrate-accounting"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn write_lines<T: serde::Serialize>(file: &Path, items: &[T]) {
    let text: String = items
        .iter()
        .map(|item| serde_json::to_string(item).unwrap() + "\n")
        .collect();
    std::fs::write(file, text).unwrap();
}

/// `report` for epochs 1 to `to` from `dev`'s Registry and the files a test keeps in `dir`:
/// `usage.jsonl` and `observations.jsonl` (written by the test), `rates.toml` (the example
/// rates), `receipts.jsonl`; the CSV goes to `report.csv`.
fn report_from(dev: &DevRegistry, dir: &Path, to: u64) -> Output {
    let rates = dir.join("rates.toml");
    std::fs::write(&rates, accounting::rates::EXAMPLE).unwrap();
    let (chain_id, registry, to) = (
        CHAIN_ID.to_string(),
        dev.registry.to_string(),
        to.to_string(),
    );
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    accounting(&[
        "report",
        "--chain",
        dev.url,
        "--chain-id",
        &chain_id,
        "--registry",
        &registry,
        "--from",
        "1",
        "--to",
        &to,
        "--rates",
        &file("rates.toml"),
        "--usage",
        &file("usage.jsonl"),
        "--observations",
        &file("observations.jsonl"),
        "--receipts",
        &file("receipts.jsonl"),
        "--out",
        &file("report.csv"),
    ])
}

#[test]
fn malformed_rates_usage_or_period_are_clear_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let chain_dir = dir.path().join("upper-chain");
    drop(EmbeddedChain::open(&chain_dir, &Genesis::default()).unwrap());
    let good_rates = dir.path().join("rates.toml");
    std::fs::write(&good_rates, accounting::rates::EXAMPLE).unwrap();
    let usage = dir.path().join("usage.jsonl");
    std::fs::write(&usage, "").unwrap();
    let out = dir.path().join("report.csv");
    let report = |rates: &Path, usage: &Path, from: &str, to: &str| {
        accounting(&[
            "report",
            "--chain",
            path(&chain_dir),
            "--from",
            from,
            "--to",
            to,
            "--rates",
            path(rates),
            "--usage",
            path(usage),
            "--receipts",
            path(&dir.path().join("receipts.jsonl")),
            "--out",
            path(&out),
        ])
    };

    for (name, text, expected) in [
        ("negative.toml", "moves_executed = -1\n", "moves_executed"),
        ("unknown.toml", "moves_executd = 5\n", "moves_executd"),
        ("garbage.toml", "not toml at all", "garbage.toml"),
    ] {
        let rates = dir.path().join(name);
        std::fs::write(&rates, text).unwrap();
        let run = report(&rates, &usage, "1", "2");
        assert!(!run.status.success(), "{name} was accepted");
        assert!(stderr(&run).contains(expected), "{name}: {}", stderr(&run));
        assert!(!out.exists(), "{name} wrote a report");
    }

    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"report\": 1}\n").unwrap();
    let run = report(&good_rates, &broken, "1", "2");
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("broken.jsonl") && stderr(&run).contains("line 1"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());

    let run = report(&good_rates, &usage, "3", "2");
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("--from 3 is after --to 2"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());

    // The same files with a sound period make an (empty) report.
    let run = report(&good_rates, &usage, "1", "2");
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(out.exists());
}

#[test]
fn an_operator_reports_plans_and_pays_a_period_once_each_epoch_to_its_wallet() {
    let Some(url) = devnode() else {
        return;
    };
    let dev = DevRegistry::deploy(url);
    let (treasury, registry) = (dev.treasury.clone(), dev.registry);
    let chain = dev.connect(&treasury);
    let advance = || dev.advance_epoch();

    // Two nodes; the first moves to a new wallet during epoch 1, so from epoch 2 on.
    let first_wallet = AccountKey::from_seed(0x0c11a1).address();
    let second_wallet = AccountKey::from_seed(0x0c11a2).address();
    let new_wallet = AccountKey::from_seed(0x0c11a3).address();
    let (mover, stayer) = (funded_key(), funded_key());
    dev.register(&mover, first_wallet, &[]);
    dev.register(&stayer, second_wallet, &["flag-from-the-future"]);
    advance();
    let update = WalletUpdate {
        node: primitives::NodeId(mover.address()),
        reward_wallet: new_wallet,
        wallet_features: Vec::new(),
        nonce: 0,
    };
    let signature = mover.sign_prehash(&update.signing_hash());
    dev.connect(&mover)
        .update_wallet(update, &signature)
        .unwrap();
    advance();
    advance();

    // Each node claims 10 moves an epoch, and the other node saw them.
    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    let mut observations = Vec::new();
    for epoch in 1..=2 {
        for (key, witness) in [(&mover, &stayer), (&stayer, &mover)] {
            let usage = Usage {
                moves_executed: 10,
                ..Usage::default()
            };
            reports.push(
                UsageReport {
                    node: key.address(),
                    epoch,
                    usage,
                }
                .sign(key),
            );
            observations.push(Observation {
                witness: witness.address(),
                subject: key.address(),
                epoch,
                figure: Figure::MovesExecuted.into(),
                value: 10,
                group: None,
            });
        }
    }
    let usage = dir.path().join("usage.jsonl");
    let seen = dir.path().join("observations.jsonl");
    write_lines(&usage, &reports);
    write_lines(&seen, &observations);
    let per_move = accounting::Rates::example().rate(Figure::MovesExecuted) as u128;
    let receipts = dir.path().join("receipts.jsonl");
    let csv = dir.path().join("report.csv");
    let registry_text = registry.to_string();
    let chain_id = CHAIN_ID.to_string();
    let report = || {
        let run = report_from(&dev, dir.path(), 2);
        assert!(run.status.success(), "{}", stderr(&run));
        report::read_csv(std::fs::File::open(&csv).unwrap()).unwrap()
    };

    // The mover has a row per wallet, each with its own epoch's moves.
    let rows = report();
    let spans: Vec<(Address, String, u64, u128, u128)> = rows
        .iter()
        .map(|row| {
            (
                row.node.wallet,
                format_epochs(&row.node.epochs),
                row.usage.moves_executed,
                row.owed,
                row.paid,
            )
        })
        .collect();
    let owed = 10 * per_move;
    let mut expected = vec![
        (first_wallet, "1-1".to_string(), 10, owed, 0),
        (new_wallet, "2-2".to_string(), 10, owed, 0),
        (second_wallet, "1-2".to_string(), 20, 2 * owed, 0),
    ];
    if stayer.address() < mover.address() {
        expected.rotate_right(1);
    }
    assert_eq!(spans, expected);

    let plan = accounting(&["plan", "--report", path(&csv)]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let planned = stdout(&plan);
    for wallet in [first_wallet, second_wallet, new_wallet] {
        let line = planned
            .lines()
            .find(|line| line.contains(&wallet.to_string()))
            .unwrap_or_else(|| panic!("no payout to {wallet} in {planned}"));
        assert!(
            line.contains(&PayoutMethod::UpperChain.to_string()),
            "{line}"
        );
    }

    let treasury_key = dir.path().join("treasury.key");
    OperatorKeys::from_entropy(treasury.secret_bytes(), [0x7e; 32])
        .unwrap()
        .save(&treasury_key)
        .unwrap();
    let pay = |report: &Path| {
        let run = accounting(&[
            "pay",
            "--report",
            path(report),
            "--receipts",
            path(&receipts),
            "--chain",
            url,
            "--chain-id",
            &chain_id,
            "--registry",
            &registry_text,
            "--treasury-key",
            path(&treasury_key),
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        stdout(&run)
    };
    let balances = || -> BTreeMap<Address, U256> {
        [first_wallet, second_wallet, new_wallet]
            .into_iter()
            .map(|wallet| (wallet, chain.balance(wallet).unwrap()))
            .collect()
    };
    let before = balances();
    let first_report = dir.path().join("first-report.csv");
    std::fs::copy(&csv, &first_report).unwrap();
    let paid = pay(&first_report);
    assert!(paid.contains("3 payouts made"), "{paid}");
    let after = balances();
    for (wallet, amount) in [
        (first_wallet, owed),
        (new_wallet, owed),
        (second_wallet, 2 * owed),
    ] {
        assert_eq!(
            after[&wallet] - before[&wallet],
            U256::from(amount),
            "{wallet}"
        );
    }

    // Paying the same report again moves nothing; the next report shows every row paid, and
    // calls for no payout.
    let again = pay(&first_report);
    assert!(again.contains("0 payouts made, 3 already paid"), "{again}");
    assert!(
        report()
            .iter()
            .all(|row| row.paid == row.owed && row.owed > 0)
    );
    let from_new_report = pay(&csv);
    assert!(
        from_new_report.contains("0 payouts made, 0 already paid"),
        "{from_new_report}"
    );
    assert_eq!(balances(), after);
}

#[test]
fn an_operator_pays_an_assets_wallet_inside_the_rollup_once_through_the_cli() {
    let Some(url) = devnode() else {
        return;
    };
    let dev = DevRegistry::deploy(url);
    let (treasury, registry) = (dev.treasury.clone(), dev.registry);

    // One node whose wallet takes its payouts in the rollup; the wallet's own key registers
    // where (it pays the gas of that call).
    let (node, wallet) = (funded_key(), funded_key());
    dev.register(&node, wallet.address(), &["assets", "other"]);
    dev.advance_epoch();
    let dir = tempfile::tempdir().unwrap();
    let usage = Usage {
        moves_executed: 10,
        ..Usage::default()
    };
    let usage_file = dir.path().join("usage.jsonl");
    write_lines(
        &usage_file,
        &[UsageReport {
            node: node.address(),
            epoch: 1,
            usage,
        }
        .sign(&node)],
    );
    let seen = dir.path().join("observations.jsonl");
    write_lines(
        &seen,
        &[Observation {
            witness: AccountKey::from_seed(0x0b5e).address(),
            subject: node.address(),
            epoch: 1,
            figure: Figure::MovesExecuted.into(),
            value: 10,
            group: None,
        }],
    );
    let csv = dir.path().join("report.csv");
    let receipts = dir.path().join("receipts.jsonl");
    let (registry_text, chain_id) = (registry.to_string(), CHAIN_ID.to_string());
    let run = report_from(&dev, dir.path(), 1);
    assert!(run.status.success(), "{}", stderr(&run));
    let plan =
        accounting::payout::plan(&report::read_csv(std::fs::File::open(&csv).unwrap()).unwrap());
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].method, PayoutMethod::Rollup);
    let owed = plan[0].amount;
    assert_eq!(
        owed,
        10 * u128::from(accounting::Rates::example().rate(Figure::MovesExecuted))
    );

    // The rollup, its payout directory and the payout token, deployed by the treasury.
    let keys_dir = tempfile::tempdir().unwrap();
    let assets_chain = common::deploy_rollup(url, &treasury, keys_dir.path());
    let directory = assets_chain.deploy_payout_directory().unwrap();
    let token = assets_chain
        .deploy_test_erc20("PAY", U256::from(1_000_000))
        .unwrap();
    let key_file = |name: &str, key: &AccountKey| {
        let file = dir.path().join(name);
        OperatorKeys::from_entropy(key.secret_bytes(), [0x7e; 32])
            .unwrap()
            .save(&file)
            .unwrap();
        file
    };
    let seed_file = |name: &str, seed: [u8; 32]| {
        let file = dir.path().join(name);
        std::fs::write(&file, primitives::B256::from(seed).to_string()).unwrap();
        file
    };
    let (treasury_key, wallet_key) = (
        key_file("treasury.key", &treasury),
        key_file("wallet.key", &wallet),
    );
    let owner = assets::keys::SpendingKey::from_seed([0x0a; 32]);
    let (owner_seed, treasury_seed) = (
        seed_file("owner.seed", [0x0a; 32]),
        seed_file("treasury.seed", [0x7f; 32]),
    );
    let (bridge, directory_text, token_text) = (
        assets_chain.bridge().to_string(),
        directory.to_string(),
        token.to_string(),
    );
    let bridge_block = assets_chain.deploy_block().to_string();
    let notes = dir.path().join("treasury-notes.jsonl");
    let rollup_args = [
        "--bridge",
        bridge.as_str(),
        "--bridge-block",
        &bridge_block,
        "--directory",
        &directory_text,
        "--payout-token",
        &token_text,
        "--prover-keys",
        path(keys_dir.path()),
        "--treasury-asset-seed",
        path(&treasury_seed),
        "--treasury-notes",
        path(&notes),
    ];

    let recipient = accounting(&[
        "set-payout-recipient",
        "--chain",
        url,
        "--chain-id",
        &chain_id,
        "--bridge",
        &bridge,
        "--directory",
        &directory_text,
        "--wallet-key",
        path(&wallet_key),
        "--asset-seed",
        path(&owner_seed),
    ]);
    assert!(recipient.status.success(), "{}", stderr(&recipient));
    assert!(
        stdout(&recipient).contains(&format!(
            "wallet {} takes its rollup payouts",
            wallet.address()
        )),
        "{}",
        stdout(&recipient)
    );

    let mut fund = vec![
        "fund-rollup",
        "--chain",
        url,
        "--chain-id",
        &chain_id,
        "--treasury-key",
        path(&treasury_key),
        "--amount",
        "200000",
    ];
    fund.extend(rollup_args);
    let funded = accounting(&fund);
    assert!(funded.status.success(), "{}", stderr(&funded));
    assert!(
        stdout(&funded).contains("the treasury can spend 200000 in the rollup"),
        "{}",
        stdout(&funded)
    );

    let pay_args = [
        "pay",
        "--report",
        path(&csv),
        "--receipts",
        path(&receipts),
        "--chain",
        url,
        "--chain-id",
        &chain_id,
        "--registry",
        &registry_text,
        "--treasury-key",
        path(&treasury_key),
    ];
    // Without the rollup's options the payout waits, and nothing is recorded.
    let waiting = accounting(&pay_args);
    assert!(waiting.status.success(), "{}", stderr(&waiting));
    assert!(
        stdout(&waiting).contains("0 payouts made, 0 already paid, 1 waiting for the rollup"),
        "{}",
        stdout(&waiting)
    );
    let pay = || {
        let mut args = pay_args.to_vec();
        args.extend(rollup_args);
        let run = accounting(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        stdout(&run)
    };
    let paid = pay();
    assert!(paid.contains("1 payouts made"), "{paid}");
    assert!(
        paid.contains(&format!(
            "paid {owed} to {} by rollup: rollup tx 0x",
            wallet.address()
        )),
        "{paid}"
    );
    // The wallet's output, with the amount owed, is in the rollup's tree.
    let output = accounting::rails::rollup::payout_output(
        plan[0].id(),
        owner.address(),
        assets::asset::erc20(token),
        U256::from(owed),
    );
    let ledger = accounting::rails::rollup::RollupLedger::read(&assets_chain).unwrap();
    assert!(ledger.leaf_of(&output).is_some());
    let leaves = ledger.leaf_count();

    let again = pay();
    assert!(again.contains("0 payouts made, 1 already paid"), "{again}");
    let ledger = accounting::rails::rollup::RollupLedger::read(&assets_chain).unwrap();
    assert_eq!(ledger.leaf_count(), leaves);
}
