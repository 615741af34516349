use std::collections::BTreeMap;

use super::*;
use crate::{
    Rates,
    report::{NodeEntry, build},
    usage::{Figure, Usage, UsageSummary},
};

/// A rail that keeps balances in memory: what the wallets received, by payout id, so a second
/// request for one id returns the first reference.
struct MemoryRail {
    method: PayoutMethod,
    balances: BTreeMap<Address, u128>,
    made: BTreeMap<B256, String>,
    fail_after: Option<usize>,
}

impl MemoryRail {
    fn new(method: PayoutMethod) -> Self {
        MemoryRail {
            method,
            balances: BTreeMap::new(),
            made: BTreeMap::new(),
            fail_after: None,
        }
    }
}

impl PayoutRail for MemoryRail {
    fn method(&self) -> PayoutMethod {
        self.method
    }

    fn pay(&mut self, payout: &Payout) -> Result<String, String> {
        if let Some(reference) = self.made.get(&payout.id()) {
            return Ok(reference.clone());
        }
        if self.fail_after == Some(self.made.len()) {
            return Err("rail unreachable".into());
        }
        *self.balances.entry(payout.wallet).or_default() += payout.amount;
        let reference = format!("{}-{}", self.method, self.made.len());
        self.made.insert(payout.id(), reference.clone());
        Ok(reference)
    }
}

fn node(byte: u8, wallet: u8, features: &str) -> NodeEntry {
    NodeEntry {
        id: NodeId(Address::repeat_byte(byte)),
        created_at_epoch: 0,
        evicted_at_epoch: None,
        wallet: Address::repeat_byte(wallet),
        wallet_features: crate::report::split_features(features),
        epochs: vec![period()],
    }
}

fn period() -> Period {
    Period::new(1, 4).expect("period")
}

/// One operator's three nodes (no features; `assets`; `assets,other`) and another operator's.
fn rows(book: &ReceiptBook) -> Vec<ReportRow> {
    let nodes = [
        node(1, 0xa0, ""),
        node(2, 0xa0, "assets"),
        node(3, 0xa0, "assets,other"),
        node(4, 0xb0, "other"),
    ];
    let mut usage = UsageSummary::default();
    for (index, node) in nodes.iter().enumerate() {
        let moves = Usage {
            moves_executed: 10 * (index as u64 + 1),
            ..Usage::default()
        };
        usage
            .per_epoch
            .insert((node.id, period().from_epoch), moves);
        usage.per_node.insert(node.id, moves);
    }
    let rates = Rates::new(&[(Figure::MovesExecuted, 7)]);
    build(period(), &nodes, &usage, &rates, |node| {
        book.paid(period(), node)
    })
}

#[test]
fn each_wallet_is_paid_once_per_method_with_the_right_totals_and_never_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipts.jsonl");
    let mut book = ReceiptBook::open(&path).expect("open");
    let plan = plan(&rows(&book));
    let summary: Vec<(u8, PayoutMethod, u128, usize)> = plan
        .iter()
        .map(|p| (p.wallet[0], p.method, p.amount, p.nodes.len()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0xa0, PayoutMethod::UpperChain, 70, 1),
            (0xa0, PayoutMethod::Rollup, 140 + 210, 2),
            (0xb0, PayoutMethod::UpperChain, 280, 1),
        ]
    );

    let mut chain = MemoryRail::new(PayoutMethod::UpperChain);
    let mut rollup = MemoryRail::new(PayoutMethod::Rollup);
    let receipts = execute(&plan, &mut [&mut chain, &mut rollup], &mut book).expect("paid");
    assert_eq!(receipts.len(), 3);
    assert_eq!(chain.balances[&Address::repeat_byte(0xa0)], 70);
    assert_eq!(chain.balances[&Address::repeat_byte(0xb0)], 280);
    assert_eq!(rollup.balances[&Address::repeat_byte(0xa0)], 350);

    // The receipts are read back: the next report shows everything paid, and paying it again,
    // or re-executing the old plan, pays nothing.
    let book_again = ReceiptBook::open(&path).expect("reopen");
    assert_eq!(book_again.receipts(), receipts.as_slice());
    let rows_again = rows(&book_again);
    assert!(
        rows_again
            .iter()
            .all(|row| row.paid == row.owed && row.owed > 0)
    );
    assert!(super::plan(&rows_again).is_empty());
    let mut book_again = book_again;
    assert!(
        execute(&plan, &mut [&mut chain, &mut rollup], &mut book_again)
            .expect("nothing to do")
            .is_empty()
    );
    assert_eq!(chain.balances[&Address::repeat_byte(0xa0)], 70);
    assert_eq!(rollup.balances[&Address::repeat_byte(0xa0)], 350);
}

#[test]
fn a_failed_rail_stops_the_run_and_the_rerun_pays_only_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipts.jsonl");
    let mut book = ReceiptBook::open(&path).expect("open");
    let plan = plan(&rows(&book));
    let mut chain = MemoryRail::new(PayoutMethod::UpperChain);
    chain.fail_after = Some(1);
    let mut rollup = MemoryRail::new(PayoutMethod::Rollup);
    let error = execute(&plan, &mut [&mut chain, &mut rollup], &mut book).expect_err("fails");
    assert!(
        matches!(
            error,
            PayoutError::Rail {
                method: PayoutMethod::UpperChain,
                ..
            }
        ),
        "{error}"
    );
    // The first two payouts (0xa0 by chain, 0xa0 by rollup) were made and recorded.
    assert_eq!(
        ReceiptBook::open(&path).expect("reopen").receipts().len(),
        2
    );

    chain.fail_after = None;
    let mut book = ReceiptBook::open(&path).expect("reopen");
    let receipts = execute(&plan, &mut [&mut chain, &mut rollup], &mut book).expect("rest");
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].wallet, Address::repeat_byte(0xb0));
    assert_eq!(chain.balances[&Address::repeat_byte(0xa0)], 70);
    assert_eq!(chain.balances[&Address::repeat_byte(0xb0)], 280);
}

#[test]
fn a_missing_rail_pays_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut book = ReceiptBook::open(&dir.path().join("receipts.jsonl")).expect("open");
    let plan = plan(&rows(&book));
    let mut chain = MemoryRail::new(PayoutMethod::UpperChain);
    assert!(matches!(
        execute(&plan, &mut [&mut chain], &mut book),
        Err(PayoutError::NoRail(PayoutMethod::Rollup))
    ));
    assert!(chain.balances.is_empty());
    assert!(book.receipts().is_empty());
}

#[test]
fn an_overlapping_period_is_refused_before_anything_is_paid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut book = ReceiptBook::open(&dir.path().join("receipts.jsonl")).expect("open");
    let mut chain = MemoryRail::new(PayoutMethod::UpperChain);
    let mut rollup = MemoryRail::new(PayoutMethod::Rollup);
    execute(
        &plan(&rows(&book)),
        &mut [&mut chain, &mut rollup],
        &mut book,
    )
    .expect("paid");

    let mut overlapping = plan(&rows(&book));
    assert!(overlapping.is_empty());
    overlapping = super::plan(&rows(
        &ReceiptBook::open(&dir.path().join("none")).expect("empty"),
    ));
    for payout in &mut overlapping {
        payout.period = Period::new(3, 6).expect("period");
    }
    let before = chain.balances.clone();
    assert!(matches!(
        execute(&overlapping, &mut [&mut chain, &mut rollup], &mut book),
        Err(PayoutError::OverlapsPaidPeriod { .. })
    ));
    assert_eq!(chain.balances, before);
}

#[test]
fn a_corrupt_receipt_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipts.jsonl");
    let mut book = ReceiptBook::open(&path).expect("open");
    let mut chain = MemoryRail::new(PayoutMethod::UpperChain);
    let mut rollup = MemoryRail::new(PayoutMethod::Rollup);
    execute(
        &plan(&rows(&book)),
        &mut [&mut chain, &mut rollup],
        &mut book,
    )
    .expect("paid");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replacen("\"amount\":\"70\"", "\"amount\":\"-70\"", 1),
    )
    .expect("write");
    assert!(matches!(
        ReceiptBook::open(&path),
        Err(PayoutError::Malformed { line: 1, .. })
    ));
    std::fs::write(&path, format!("{text}{{not json\n")).expect("write");
    assert!(matches!(
        ReceiptBook::open(&path),
        Err(PayoutError::Malformed { line: 4, .. })
    ));
}
