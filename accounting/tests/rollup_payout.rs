//! Both payout rails end to end on a real EVM dev node: one operator's three nodes (no
//! features, `assets`, `assets,other`) registered on the `Registry` contract with one wallet,
//! the report read from the chain, and the plan paid by the right methods: the plain node by a
//! value transfer on the upper chain, the two `assets` nodes by one combined transfer inside the
//! asset rollup (the bridge and rollup contracts, a payout token bridged in by the treasury, a
//! Groth16 proof checked by the rollup's verifier contract) to the asset address the wallet
//! registered in the payout directory. The paid output is found in the rollup's tree; the next
//! report shows everything paid; paying again moves nothing on either rail.
//!
//! Without Node.js the test is skipped with a message, except under `CI=true`, where that fails
//! it (`upper_chain::devnode`).

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::{DevRegistry, deploy_rollup};

use std::sync::Arc;

use accounting::{
    PayoutMethod, Rates, ReceiptBook, UsageReport,
    payout::{self, PayoutError},
    rails::{
        RollupRail, UpperChainRail,
        rollup::{RollupLedger, RollupRailError, payout_output},
    },
    report::{self, Period},
    usage::{Figure, Observation, Usage, summarise},
};
use assets::{asset, keys::SpendingKey, solidity};
use primitives::{AccountKey, Address, U256};
use upper_chain::{
    devnode::{CHAIN_ID, devnode, funded_key},
    rollup::EvmAssets,
};

#[test]
fn three_nodes_of_one_operator_are_paid_by_their_methods_once() {
    let Some(url) = devnode() else {
        return;
    };
    let dev = DevRegistry::deploy(url);
    let treasury = dev.treasury.clone();
    let chain = Arc::new(dev.connect(&treasury));

    // The operator's wallet is a fresh account; the treasury gives it gas to register its asset
    // address (the only transaction it sends).
    let wallet = AccountKey::from_seed(0x0a55e7);
    let plain = funded_key();
    let with_assets = funded_key();
    let with_more = funded_key();
    for (key, features) in [
        (&plain, &[][..]),
        (&with_assets, &["assets"][..]),
        (&with_more, &["assets", "other"][..]),
    ] {
        dev.register(key, wallet.address(), features);
    }
    dev.advance_epoch();
    let period = Period::new(1, 1).unwrap();

    // Each node's own signed usage (10, 20 and 30 moves, 100 s of uptime), its moves witnessed
    // by the next node.
    let keys = [&plain, &with_assets, &with_more];
    let mut reports = Vec::new();
    let mut observations = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let moves = 10 * (index as u64 + 1);
        let usage = Usage {
            moves_executed: moves,
            uptime_seconds: 100,
            ..Usage::default()
        };
        reports.push(
            UsageReport {
                node: key.address(),
                epoch: 1,
                usage,
            }
            .sign(key),
        );
        observations.push(Observation {
            witness: keys[(index + 1) % keys.len()].address(),
            subject: key.address(),
            epoch: 1,
            figure: Figure::MovesExecuted.into(),
            value: moves,
            group: None,
        });
    }
    let summary = summarise(period.epochs(), 3_600, &reports, &observations);
    assert!(summary.refused.is_empty() && summary.discrepancies.is_empty());
    let rates = Rates::new(&[(Figure::MovesExecuted, 1_000), (Figure::UptimeSeconds, 7)]);
    let owed = |moves: u128| moves * 1_000 + 700;

    let dir = tempfile::tempdir().unwrap();
    let receipts = dir.path().join("receipts.jsonl");
    let book = ReceiptBook::open(&receipts).unwrap();
    let nodes = report::registry_over(chain.as_ref(), period).unwrap();
    let rows = report::build(period, &nodes, &summary, &rates, |node| {
        book.paid(period, node)
    });
    let csv = dir.path().join("report.csv");
    report::write_csv(&rows, std::fs::File::create(&csv).unwrap()).unwrap();
    let rows = report::read_csv(std::fs::File::open(&csv).unwrap()).unwrap();
    let plan = payout::plan(&rows);
    let got: Vec<(Address, PayoutMethod, u128, usize)> = plan
        .iter()
        .map(|p| (p.wallet, p.method, p.amount, p.nodes.len()))
        .collect();
    assert_eq!(
        got,
        vec![
            (wallet.address(), PayoutMethod::UpperChain, owed(10), 1),
            (
                wallet.address(),
                PayoutMethod::Rollup,
                owed(20) + owed(30),
                2
            ),
        ]
    );
    let rollup_payout = plan[1].clone();

    // The rollup: bridge, rollup and verifiers, the payout directory, and the payout token,
    // all deployed by the treasury, which holds the token's whole supply.
    let keys_dir = tempfile::tempdir().unwrap();
    let assets_chain = deploy_rollup(url, &treasury, keys_dir.path());
    let directory = assets_chain.deploy_payout_directory().unwrap();
    let token = assets_chain
        .deploy_test_erc20("PAY", U256::from(1_000_000))
        .unwrap();

    // The wallet's owner registers where its rollup payouts go.
    let gas = U256::from(10u128.pow(18));
    chain.transfer(wallet.address(), gas, Vec::new()).unwrap();
    let owner_key = SpendingKey::from_seed([0x0a; 32]);
    let as_wallet = EvmAssets::connect(
        url,
        CHAIN_ID,
        &wallet,
        assets_chain.bridge(),
        assets_chain.deploy_block(),
    )
    .unwrap();
    as_wallet
        .set_payout_recipient(directory, solidity::address_words(&owner_key.address()))
        .unwrap();

    let notes = dir.path().join("treasury-notes.jsonl");
    let mut rollup_rail = RollupRail::new(
        assets_chain,
        directory,
        token,
        [0x7e; 32],
        keys_dir.path(),
        notes.clone(),
    )
    .unwrap();
    let funded = U256::from(200_000);
    rollup_rail.fund(funded).unwrap();
    assert_eq!(rollup_rail.balance().unwrap(), funded);

    // A wallet that registered no asset address is refused before anything is proven.
    let mut stranger = rollup_payout.clone();
    stranger.wallet = AccountKey::from_seed(0x5e).address();
    assert!(matches!(
        rollup_rail.pay_payout(&stranger),
        Err(RollupRailError::NoRecipient { .. })
    ));

    let mut chain_rail = UpperChainRail::new(chain.clone());
    let wallet_before = chain.balance(wallet.address()).unwrap();
    let mut book = ReceiptBook::open(&receipts).unwrap();
    let made = payout::execute(&plan, &mut [&mut chain_rail, &mut rollup_rail], &mut book).unwrap();
    assert_eq!(
        made.iter().map(|r| r.method).collect::<Vec<_>>(),
        vec![PayoutMethod::UpperChain, PayoutMethod::Rollup]
    );
    assert!(
        made[1].reference.starts_with("rollup tx 0x"),
        "{}",
        made[1].reference
    );
    assert_eq!(made[1].amount, (owed(20) + owed(30)).to_string());
    assert_eq!(
        chain.balance(wallet.address()).unwrap() - wallet_before,
        U256::from(owed(10))
    );

    // The wallet's output is in the rollup's tree, unspent, with the combined amount; the
    // treasury keeps the rest as change.
    let paid = U256::from(owed(20) + owed(30));
    let output = payout_output(
        rollup_payout.id(),
        owner_key.address(),
        asset::erc20(token),
        paid,
    );
    let ledger = RollupLedger::read(rollup_rail.chain()).unwrap();
    let leaf = ledger
        .leaf_of(&output)
        .expect("the payout's output is in the tree");
    let spent = assets::output::nullifier(owner_key.nullifier_key(), output.commitment(), leaf);
    assert!(!ledger.is_spent(&spent));
    assert_eq!(rollup_rail.balance().unwrap(), funded - paid);
    let leaves = ledger.leaf_count();

    // The next report shows every node paid, so its plan is empty; the old plan executed again
    // is skipped by its receipts, and the rail asked again for the rollup payout answers with
    // the first transfer's reference without paying.
    let book = ReceiptBook::open(&receipts).unwrap();
    let rows = report::build(period, &nodes, &summary, &rates, |node| {
        book.paid(period, node)
    });
    assert!(
        rows.iter()
            .all(|row| row.outstanding() == 0 && row.owed > 0)
    );
    assert!(payout::plan(&rows).is_empty());
    let mut book = book;
    let wallet_after = chain.balance(wallet.address()).unwrap();
    assert!(
        payout::execute(&plan, &mut [&mut chain_rail, &mut rollup_rail], &mut book)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        rollup_rail.pay_payout(&rollup_payout).unwrap(),
        made[1].reference
    );
    assert_eq!(chain.balance(wallet.address()).unwrap(), wallet_after);
    let ledger = RollupLedger::read(rollup_rail.chain()).unwrap();
    assert_eq!(ledger.leaf_count(), leaves);
    assert_eq!(rollup_rail.balance().unwrap(), funded - paid);

    // Without the rollup rail, a plan with rollup payouts pays nothing at all.
    let fresh = tempfile::tempdir().unwrap();
    let mut empty_book = ReceiptBook::open(&fresh.path().join("receipts.jsonl")).unwrap();
    assert!(matches!(
        payout::execute(&plan, &mut [&mut chain_rail], &mut empty_book),
        Err(PayoutError::NoRail(PayoutMethod::Rollup))
    ));
    assert_eq!(chain.balance(wallet.address()).unwrap(), wallet_after);
}
