//! A whole accounting period on a real EVM dev node: nodes registered with their wallets and
//! features on the `Registry` contract, signed usage, the report read from the chain, and the
//! upper-chain payouts made as value transfers whose balances are checked on chain; paying the
//! same period again moves nothing.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::DevRegistry;

use std::{collections::BTreeMap, sync::Arc};

use accounting::{
    PayoutMethod, Rates, ReceiptBook, UsageReport,
    payout::{self, PayoutError},
    rails::UpperChainRail,
    report::{self, Period},
    usage::{Figure, Observation, Usage, summarise},
};
use primitives::{AccountKey, Address, U256};
use upper_chain::devnode::{devnode, funded_key};

#[test]
fn a_period_is_reported_from_the_chain_and_paid_on_it_once() {
    let Some(url) = devnode() else {
        return;
    };
    let dev = DevRegistry::deploy(url);
    let treasury = dev.treasury.clone();
    let chain = Arc::new(dev.connect(&treasury));

    // One operator's three nodes share a fresh wallet with different features; a second
    // operator's node has its own wallet. Node keys send their own registrations.
    let operator_wallet = AccountKey::from_seed(0x0a11e7).address();
    let other_wallet = AccountKey::from_seed(0x0b11e7).address();
    let plain = funded_key();
    let with_assets = funded_key();
    let with_more = funded_key();
    let other = funded_key();
    for (key, wallet, features) in [
        (&plain, operator_wallet, &[][..]),
        (&with_assets, operator_wallet, &["assets"][..]),
        (&with_more, operator_wallet, &["assets", "other"][..]),
        (&other, other_wallet, &["flag-from-the-future"][..]),
    ] {
        dev.register(key, wallet, features);
    }
    dev.advance_epoch();
    let period = Period::new(1, 1).unwrap();

    // Each node claims 10 × its index moves; the other operator's node witnesses the rest and
    // vice versa.
    let keys = [&plain, &with_assets, &with_more, &other];
    let mut reports = Vec::new();
    let mut observations = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let usage = Usage {
            moves_executed: 10 * (index as u64 + 1),
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
        let witness = keys[(index + 1) % keys.len()];
        observations.push(Observation {
            witness: witness.address(),
            subject: key.address(),
            epoch: 1,
            figure: Figure::MovesExecuted.into(),
            value: usage.moves_executed,
            group: None,
        });
    }
    let summary = summarise(period.epochs(), 3_600, &reports, &observations);
    assert!(summary.refused.is_empty() && summary.discrepancies.is_empty());

    let rates = Rates::new(&[
        (Figure::MovesExecuted, 1_000_000),
        (Figure::UptimeSeconds, 7),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let receipts = dir.path().join("receipts.jsonl");
    let book = ReceiptBook::open(&receipts).unwrap();
    let nodes = report::registry_over(chain.as_ref(), period).unwrap();
    assert_eq!(nodes.len(), 4);
    let features: BTreeMap<Address, Vec<String>> = nodes
        .iter()
        .map(|node| (node.id.0, node.wallet_features.clone()))
        .collect();
    assert_eq!(
        features[&other.address()],
        vec!["flag-from-the-future".to_string()]
    );
    let rows = report::build(period, &nodes, &summary, &rates, |node| {
        book.paid(period, node)
    });

    // The CSV is what gets paid: write it, read it back.
    let csv = dir.path().join("report.csv");
    report::write_csv(&rows, std::fs::File::create(&csv).unwrap()).unwrap();
    let rows = report::read_csv(std::fs::File::open(&csv).unwrap()).unwrap();
    let plan = payout::plan(&rows);
    let owed = |key: &AccountKey, moves: u128| {
        assert!(rows.iter().any(|row| row.node.id.0 == key.address()));
        moves * 1_000_000 + 700
    };
    let by_method: Vec<(Address, PayoutMethod, u128)> = plan
        .iter()
        .map(|p| (p.wallet, p.method, p.amount))
        .collect();
    let mut expected = vec![
        (operator_wallet, PayoutMethod::UpperChain, owed(&plain, 10)),
        (
            operator_wallet,
            PayoutMethod::Rollup,
            owed(&with_assets, 20) + owed(&with_more, 30),
        ),
        (other_wallet, PayoutMethod::UpperChain, owed(&other, 40)),
    ];
    expected.sort();
    let mut got = by_method.clone();
    got.sort();
    assert_eq!(got, expected);

    // The rollup rail needs the asset rollup: a run with it missing pays nothing at all.
    let mut rail = UpperChainRail::new(chain.clone());
    let mut book = ReceiptBook::open(&receipts).unwrap();
    assert!(matches!(
        payout::execute(&plan, &mut [&mut rail], &mut book),
        Err(PayoutError::NoRail(PayoutMethod::Rollup))
    ));
    assert_eq!(chain.balance(operator_wallet).unwrap(), U256::ZERO);

    let on_chain: Vec<_> = plan
        .iter()
        .filter(|p| p.method == PayoutMethod::UpperChain)
        .cloned()
        .collect();
    let made = payout::execute(&on_chain, &mut [&mut rail], &mut book).unwrap();
    assert_eq!(made.len(), 2);
    assert_eq!(
        chain.balance(operator_wallet).unwrap(),
        U256::from(owed(&plain, 10))
    );
    assert_eq!(
        chain.balance(other_wallet).unwrap(),
        U256::from(owed(&other, 40))
    );

    // Re-running the paid period pays nothing: the next report shows the nodes paid, and
    // executing the old plan again is skipped by its receipts.
    let book = ReceiptBook::open(&receipts).unwrap();
    let rows = report::build(period, &nodes, &summary, &rates, |node| {
        book.paid(period, node)
    });
    let again = payout::plan(&rows);
    assert!(
        again.iter().all(|p| p.method == PayoutMethod::Rollup),
        "{again:?}"
    );
    let mut book = book;
    assert!(
        payout::execute(&on_chain, &mut [&mut rail], &mut book)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        chain.balance(operator_wallet).unwrap(),
        U256::from(owed(&plain, 10))
    );
    assert_eq!(
        chain.balance(other_wallet).unwrap(),
        U256::from(owed(&other, 40))
    );
}
