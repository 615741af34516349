//! The compensation report: one row per node for a range of epochs, written as CSV.
//!
//! A row joins what the upper chain says of the node (when it joined, whether it was evicted,
//! its reward wallet and that wallet's payout features), the usage accepted for it over the
//! period ([`crate::usage::summarise`]), what each figure earns at the period's rates, what is
//! owed in total, and what earlier payouts of this same period already paid (from the receipts,
//! [`crate::payout::ReceiptBook`]). The payout step reads the CSV back, so the file an operator
//! reviews is exactly what gets paid.
//!
//! Each epoch's work is paid to the wallet registered for that epoch (a wallet change takes
//! effect in the epoch after it is made, [`upper_chain::UpperChain::update_wallet`]). A node
//! whose wallet or payout method changed within the period has one row per wallet and method,
//! each with the epochs it covers (the `epochs` column) and the usage of those epochs only.

use std::{collections::BTreeMap, fmt, str::FromStr};

use primitives::{Address, NodeId};
use upper_chain::{ChainError, DepartureKind, UpperChain};

use crate::{
    payout::PayoutMethod,
    rates::Rates,
    usage::{Figure, Usage, UsageSummary},
};

/// An inclusive range of epochs a report covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    /// The first epoch.
    pub from_epoch: u64,
    /// The last epoch.
    pub to_epoch: u64,
}

impl Period {
    /// A period; `None` when `to_epoch` is before `from_epoch`.
    pub fn new(from_epoch: u64, to_epoch: u64) -> Option<Period> {
        (from_epoch <= to_epoch).then_some(Period {
            from_epoch,
            to_epoch,
        })
    }

    /// The epochs it covers.
    pub fn epochs(&self) -> std::ops::RangeInclusive<u64> {
        self.from_epoch..=self.to_epoch
    }

    /// Whether the two share an epoch.
    pub fn overlaps(&self, other: &Period) -> bool {
        self.from_epoch <= other.to_epoch && other.from_epoch <= self.to_epoch
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.from_epoch, self.to_epoch)
    }
}

impl FromStr for Period {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Period, ReportError> {
        let malformed = || ReportError::Period(text.to_string());
        let (from, to) = text.split_once('-').ok_or_else(malformed)?;
        let from = from.trim().parse().map_err(|_| malformed())?;
        let to = to.trim().parse().map_err(|_| malformed())?;
        Period::new(from, to).ok_or_else(malformed)
    }
}

/// Why a report could not be built, written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A period that is not `FROM-TO` with FROM ≤ TO.
    #[error("period {0:?} is not FROM-TO with FROM <= TO")]
    Period(String),
    /// The upper chain could not be read.
    #[error("upper chain: {0}")]
    Chain(#[from] ChainError),
    /// The CSV could not be written or read.
    #[error("report CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A CSV field that does not parse.
    #[error("report CSV line {line}: column {column}: {value:?} is not {expected}")]
    Field {
        /// The 1-based line.
        line: u64,
        /// The column.
        column: &'static str,
        /// What it held.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A CSV whose header is not this version's.
    #[error("report CSV header is not {expected:?}")]
    Header {
        /// The header this version writes.
        expected: String,
    },
    /// A node's owed total is not the sum of its per-figure compensation.
    #[error("report CSV line {line}: owed {owed} is not the sum of the compensation columns")]
    Inconsistent {
        /// The 1-based line.
        line: u64,
        /// The owed column.
        owed: u128,
    },
}

/// What the upper chain says of one node, as a report needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node.
    pub id: NodeId,
    /// The first epoch whose groups included it.
    pub created_at_epoch: u64,
    /// The first epoch without it, when its group evicted it.
    pub evicted_at_epoch: Option<u64>,
    /// Its reward wallet.
    pub wallet: Address,
    /// That wallet's payout features, as registered (unknown ones kept); the latest of
    /// `epochs` where they changed without changing the payout method.
    pub wallet_features: Vec<String>,
    /// The epochs of the period in which the node was active with this wallet and method, as
    /// ascending, disjoint ranges.
    pub epochs: Vec<Period>,
}

impl NodeEntry {
    /// How this entry is paid.
    pub fn method(&self) -> PayoutMethod {
        PayoutMethod::for_features(&self.wallet_features)
    }
}

/// `epochs` as the report writes them: `FROM-TO` ranges joined by `;`.
pub fn format_epochs(epochs: &[Period]) -> String {
    epochs
        .iter()
        .map(Period::to_string)
        .collect::<Vec<_>>()
        .join(";")
}

/// Adds `epoch` to ascending ranges, extending the last when it follows it.
fn add_epoch(epochs: &mut Vec<Period>, epoch: u64) {
    match epochs.last_mut() {
        Some(last) if last.to_epoch.checked_add(1) == Some(epoch) => last.to_epoch = epoch,
        Some(last) if last.to_epoch >= epoch => {}
        _ => epochs.push(Period {
            from_epoch: epoch,
            to_epoch: epoch,
        }),
    }
}

/// Every node active in some epoch of `period`, from the chain's registry snapshot of each
/// epoch: one entry per node, wallet and payout method, holding the epochs in which they were
/// the node's (one entry for a node whose wallet did not change), sorted by node and epochs.
pub fn registry_over(
    chain: &dyn UpperChain,
    period: Period,
) -> Result<Vec<NodeEntry>, ReportError> {
    let mut entries: BTreeMap<(NodeId, Address, PayoutMethod), NodeEntry> = BTreeMap::new();
    for epoch in period.epochs() {
        for record in chain.registry_snapshot(epoch)?.nodes {
            let wallet = record.registration.reward_wallet;
            let features = record.registration.wallet_features;
            let method = PayoutMethod::for_features(&features);
            let entry = entries
                .entry((record.id, wallet, method))
                .or_insert_with(|| NodeEntry {
                    id: record.id,
                    created_at_epoch: record.active_from_epoch,
                    evicted_at_epoch: None,
                    wallet,
                    wallet_features: Vec::new(),
                    epochs: Vec::new(),
                });
            entry.wallet_features = features;
            add_epoch(&mut entry.epochs, epoch);
        }
    }
    let mut departures: BTreeMap<NodeId, Option<u64>> = BTreeMap::new();
    for entry in entries.values_mut() {
        let evicted = match departures.get(&entry.id) {
            Some(evicted) => *evicted,
            None => {
                let evicted = chain
                    .departure(&entry.id)?
                    .filter(|departure| departure.kind == DepartureKind::Eviction)
                    .map(|departure| departure.epoch);
                departures.insert(entry.id, evicted);
                evicted
            }
        };
        entry.evicted_at_epoch = evicted;
    }
    let mut entries: Vec<NodeEntry> = entries.into_values().collect();
    entries.sort_by(|a, b| (a.id, &a.epochs).cmp(&(b.id, &b.epochs)));
    Ok(entries)
}

/// A wallet feature list as the report writes it (comma-separated), split; empty for none.
pub fn split_features(list: &str) -> Vec<String> {
    if list.is_empty() {
        return Vec::new();
    }
    list.split(',').map(str::to_string).collect()
}

/// One node's line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    /// The epochs covered.
    pub period: Period,
    /// The node and what the chain says of it.
    pub node: NodeEntry,
    /// Accepted usage over the period.
    pub usage: Usage,
    /// What each figure earns, in [`Figure::ALL`] order.
    pub compensation: [u128; 6],
    /// The sum of `compensation`.
    pub owed: u128,
    /// What payouts of this period already paid for this node.
    pub paid: u128,
}

impl ReportRow {
    /// What is still to pay.
    pub fn outstanding(&self) -> u128 {
        self.owed.saturating_sub(self.paid)
    }
}

/// Builds the report's rows, one per entry of `nodes` ([`registry_over`]), sorted by node ID
/// and epochs, each with the usage `usage` accepted for its node over its epochs. A node with
/// no accepted usage gets a row of zeros (it was registered, so the operator should see it).
/// `paid` says what earlier payouts of this period paid the entry's node to its wallet by its
/// method ([`crate::payout::ReceiptBook::paid`]).
pub fn build(
    period: Period,
    nodes: &[NodeEntry],
    usage: &UsageSummary,
    rates: &Rates,
    paid: impl Fn(&NodeEntry) -> u128,
) -> Vec<ReportRow> {
    let mut rows: Vec<ReportRow> = nodes
        .iter()
        .map(|node| {
            let mut total = Usage::default();
            for span in &node.epochs {
                total.add(&usage.between(&node.id, span.epochs()));
            }
            let usage = total;
            let compensation = rates.compensation(&usage);
            ReportRow {
                period,
                node: node.clone(),
                usage,
                compensation,
                owed: compensation.iter().sum(),
                paid: paid(node),
            }
        })
        .collect();
    rows.sort_by(|a, b| (a.node.id, &a.node.epochs).cmp(&(b.node.id, &b.node.epochs)));
    rows
}

/// The CSV header this version writes and reads.
pub fn header() -> Vec<String> {
    let mut columns: Vec<String> = [
        "period",
        "epochs",
        "node_id",
        "created_at_epoch",
        "evicted_at_epoch",
        "wallet",
        "wallet_features",
    ]
    .map(String::from)
    .to_vec();
    columns.extend(Figure::ALL.map(|figure| figure.name().to_string()));
    columns.extend(Figure::ALL.map(|figure| format!("pay_{}", figure.name())));
    columns.extend(["owed", "paid"].map(String::from));
    columns
}

/// Writes the rows as CSV with [`header`].
pub fn write_csv(rows: &[ReportRow], out: impl std::io::Write) -> Result<(), ReportError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(header())?;
    for row in rows {
        let mut record = vec![
            row.period.to_string(),
            format_epochs(&row.node.epochs),
            row.node.id.0.to_string(),
            row.node.created_at_epoch.to_string(),
            row.node
                .evicted_at_epoch
                .map(|epoch| epoch.to_string())
                .unwrap_or_default(),
            row.node.wallet.to_string(),
            row.node.wallet_features.join(","),
        ];
        record.extend(Figure::ALL.map(|figure| row.usage.get(figure).to_string()));
        record.extend(row.compensation.map(|amount| amount.to_string()));
        record.push(row.owed.to_string());
        record.push(row.paid.to_string());
        writer.write_record(&record)?;
    }
    writer.flush().map_err(csv::Error::from)?;
    Ok(())
}

/// Reads rows written by [`write_csv`], refusing any field that does not parse and any row
/// whose owed total does not add up (a hand-edited report is caught before it is paid).
pub fn read_csv(input: impl std::io::Read) -> Result<Vec<ReportRow>, ReportError> {
    let mut reader = csv::Reader::from_reader(input);
    let expected = header();
    if reader
        .headers()?
        .iter()
        .ne(expected.iter().map(String::as_str))
    {
        return Err(ReportError::Header {
            expected: expected.join(","),
        });
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |position| position.line());
        let field = |index: usize| record.get(index).unwrap_or("");
        fn parse<T: FromStr>(
            line: u64,
            column: &'static str,
            value: &str,
            expected: &'static str,
        ) -> Result<T, ReportError> {
            value.parse().map_err(|_| ReportError::Field {
                line,
                column,
                value: value.to_string(),
                expected,
            })
        }
        let period: Period = parse(line, "period", field(0), "FROM-TO")?;
        let epochs = parse_epochs(field(1), period).ok_or_else(|| ReportError::Field {
            line,
            column: "epochs",
            value: field(1).to_string(),
            expected: "ascending FROM-TO ranges within the period, joined by ';'",
        })?;
        let id: Address = parse(line, "node_id", field(2), "an address")?;
        let created_at_epoch = parse(line, "created_at_epoch", field(3), "an epoch")?;
        let evicted_at_epoch = match field(4) {
            "" => None,
            value => Some(parse(line, "evicted_at_epoch", value, "an epoch or empty")?),
        };
        let wallet = parse(line, "wallet", field(5), "an address")?;
        let wallet_features = split_features(field(6));
        let mut usage = Usage::default();
        for (offset, figure) in Figure::ALL.into_iter().enumerate() {
            usage.set(
                figure,
                parse(line, figure.name(), field(7 + offset), "a count")?,
            );
        }
        let mut compensation = [0u128; 6];
        for (offset, amount) in compensation.iter_mut().enumerate() {
            *amount = parse(line, "pay_*", field(13 + offset), "an amount")?;
        }
        let owed: u128 = parse(line, "owed", field(19), "an amount")?;
        let paid = parse(line, "paid", field(20), "an amount")?;
        if compensation
            .iter()
            .try_fold(0u128, |sum, amount| sum.checked_add(*amount))
            != Some(owed)
        {
            return Err(ReportError::Inconsistent { line, owed });
        }
        rows.push(ReportRow {
            period,
            node: NodeEntry {
                id: NodeId(id),
                created_at_epoch,
                evicted_at_epoch,
                wallet,
                wallet_features,
                epochs,
            },
            usage,
            compensation,
            owed,
            paid,
        });
    }
    Ok(rows)
}

/// Reads [`format_epochs`]' form back: ascending, disjoint ranges inside `period` (none for
/// an empty field); `None` for anything else.
fn parse_epochs(text: &str, period: Period) -> Option<Vec<Period>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let mut epochs: Vec<Period> = Vec::new();
    for part in text.split(';') {
        let span: Period = part.parse().ok()?;
        let inside = period.from_epoch <= span.from_epoch && span.to_epoch <= period.to_epoch;
        let after_last = epochs
            .last()
            .is_none_or(|last| last.to_epoch < span.from_epoch);
        if !inside || !after_last {
            return None;
        }
        epochs.push(span);
    }
    Some(epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(byte: u8, features: &[&str]) -> NodeEntry {
        NodeEntry {
            id: NodeId(Address::repeat_byte(byte)),
            created_at_epoch: 1,
            evicted_at_epoch: (byte == 3).then_some(4),
            wallet: Address::repeat_byte(0xee),
            wallet_features: features.iter().map(|f| f.to_string()).collect(),
            epochs: vec![Period::new(2, 5).expect("period")],
        }
    }

    /// Accepted usage as a summary holds it: each node's in one epoch of the period.
    fn summary(usage: &[(NodeId, u64, Usage)]) -> UsageSummary {
        let mut summary = UsageSummary::default();
        for (node, epoch, usage) in usage {
            summary.per_epoch.insert((*node, *epoch), *usage);
            summary.per_node.entry(*node).or_default().add(usage);
        }
        summary
    }

    fn sample() -> Vec<ReportRow> {
        let period = Period::new(2, 5).expect("period");
        let nodes = [
            entry(3, &["assets", "other"]),
            entry(1, &[]),
            entry(2, &["assets"]),
        ];
        let usage = summary(&[
            (
                nodes[0].id,
                3,
                Usage {
                    moves_executed: 10,
                    uptime_seconds: 7,
                    ..Usage::default()
                },
            ),
            (
                nodes[1].id,
                5,
                Usage {
                    moves_executed: 1,
                    relayed_bytes: 100,
                    ..Usage::default()
                },
            ),
        ]);
        let rates = Rates::new(&[
            (Figure::MovesExecuted, 1_000),
            (Figure::RelayedBytes, 2),
            (Figure::UptimeSeconds, 3),
        ]);
        build(period, &nodes, &usage, &rates, |node| {
            if node.id.0 == Address::repeat_byte(1) {
                500
            } else {
                0
            }
        })
    }

    #[test]
    fn rows_price_each_figure_and_subtract_what_was_paid() {
        let rows = sample();
        let ids: Vec<u8> = rows.iter().map(|row| row.node.id.0[0]).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(rows[0].owed, 1_000 + 200);
        assert_eq!(rows[0].outstanding(), 700);
        // Registered but idle: a row of zeros.
        assert_eq!((rows[1].owed, rows[1].usage), (0, Usage::default()));
        assert_eq!(rows[2].compensation, [10_000, 0, 0, 0, 0, 21]);
        assert_eq!(rows[2].node.evicted_at_epoch, Some(4));
    }

    #[test]
    fn the_csv_reads_back_to_the_same_rows_with_unknown_features_kept() {
        let rows = sample();
        let mut out = Vec::new();
        write_csv(&rows, &mut out).expect("write");
        let text = String::from_utf8(out.clone()).expect("utf8");
        assert!(
            text.starts_with("period,epochs,node_id,created_at_epoch,evicted_at_epoch,wallet,")
        );
        assert!(text.contains("\"assets,other\""), "{text}");
        assert_eq!(read_csv(out.as_slice()).expect("read"), rows);
    }

    #[test]
    fn a_hand_edited_or_foreign_csv_is_refused_with_the_line() {
        let mut out = Vec::new();
        write_csv(&sample(), &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");

        // Owed raised without the figures that earn it.
        let edited = text.replacen(",1200,500", ",9200,500", 1);
        assert!(matches!(
            read_csv(edited.as_bytes()),
            Err(ReportError::Inconsistent {
                line: 2,
                owed: 9200
            })
        ));
        let bad_epochs = text.replacen("2-5,2-5", "2-5,1-5", 1);
        assert!(matches!(
            read_csv(bad_epochs.as_bytes()),
            Err(ReportError::Field {
                line: 2,
                column: "epochs",
                ..
            })
        ));
        let bad_period = text.replacen("2-5", "5-2", 1);
        assert!(matches!(
            read_csv(bad_period.as_bytes()),
            Err(ReportError::Field {
                line: 2,
                column: "period",
                ..
            })
        ));
        let foreign = text.replacen("owed", "due", 1);
        assert!(matches!(
            read_csv(foreign.as_bytes()),
            Err(ReportError::Header { .. })
        ));
    }

    #[test]
    fn each_epoch_is_paid_to_the_wallet_registered_for_it() {
        use primitives::{AccountKey, bls::BlsSecretKey};
        use upper_chain::{EmbeddedChain, Genesis, Registration, WalletUpdate};

        let chain = EmbeddedChain::with_genesis(&Genesis::default());
        let keys: Vec<AccountKey> = (1..=2).map(AccountKey::from_seed).collect();
        for (index, key) in keys.iter().enumerate() {
            let bls = BlsSecretKey::from_seed(&[index as u8 + 1; 32]);
            let registration = Registration {
                endpoint: format!("node-{index}"),
                reward_wallet: Address::repeat_byte(0xa0),
                wallet_features: Vec::new(),
                bls_key: bls.public_key(),
                bls_possession: bls.proof_of_possession(),
            };
            let signature = key.sign_prehash(&registration.signing_hash());
            chain
                .register_node(registration, &signature)
                .expect("registers");
        }
        let moved = NodeId(keys[0].address());
        let update = |wallet: u8, features: &[&str], nonce: u64| {
            let update = WalletUpdate {
                node: moved,
                reward_wallet: Address::repeat_byte(wallet),
                wallet_features: features.iter().map(|f| f.to_string()).collect(),
                nonce,
            };
            let signature = keys[0].sign_prehash(&update.signing_hash());
            chain.update_wallet(update, &signature).expect("updates");
        };
        // Epochs 1-2 on wallet A; changed during 2 to B (epochs 3-4); during 4 to the rollup
        // (epoch 5); during 5 back to A on the upper chain (epoch 6).
        assert_eq!(chain.advance_epoch(), 1);
        chain.advance_epoch();
        update(0xb0, &[], 0);
        chain.advance_epoch();
        chain.advance_epoch();
        update(0xb0, &["assets"], 1);
        chain.advance_epoch();
        update(0xa0, &["other"], 2);
        chain.advance_epoch();
        assert_eq!(chain.advance_epoch(), 7);

        let period = Period::new(1, 6).expect("period");
        let entries = registry_over(&chain, period).expect("registry");
        let spans = |node: NodeId| -> Vec<(u8, PayoutMethod, String)> {
            entries
                .iter()
                .filter(|entry| entry.id == node)
                .map(|entry| {
                    (
                        entry.wallet[0],
                        entry.method(),
                        format_epochs(&entry.epochs),
                    )
                })
                .collect()
        };
        assert_eq!(
            spans(moved),
            vec![
                (0xa0, PayoutMethod::UpperChain, "1-2;6-6".to_string()),
                (0xb0, PayoutMethod::UpperChain, "3-4".to_string()),
                (0xb0, PayoutMethod::Rollup, "5-5".to_string()),
            ]
        );
        // The entry's features are its latest epoch's.
        let back = entries
            .iter()
            .find(|entry| entry.id == moved && entry.wallet[0] == 0xa0)
            .expect("entry");
        assert_eq!(back.wallet_features, vec!["other".to_string()]);
        let still = NodeId(keys[1].address());
        assert_eq!(
            spans(still),
            vec![(0xa0, PayoutMethod::UpperChain, "1-6".to_string())]
        );

        // Ten moves an epoch for each node: each row holds its own epochs' moves only.
        let per_epoch: Vec<(NodeId, u64, Usage)> = [moved, still]
            .into_iter()
            .flat_map(|node| {
                period.epochs().map(move |epoch| {
                    let usage = Usage {
                        moves_executed: 10,
                        ..Usage::default()
                    };
                    (node, epoch, usage)
                })
            })
            .collect();
        let rates = Rates::new(&[(Figure::MovesExecuted, 1)]);
        let rows = build(period, &entries, &summary(&per_epoch), &rates, |_| 0);
        let owed = |node: NodeId| -> Vec<(u8, u128)> {
            rows.iter()
                .filter(|row| row.node.id == node)
                .map(|row| (row.node.wallet[0], row.owed))
                .collect()
        };
        assert_eq!(owed(moved), vec![(0xa0, 30), (0xb0, 20), (0xb0, 10)]);
        assert_eq!(owed(still), vec![(0xa0, 60)]);
        let mut csv = Vec::new();
        write_csv(&rows, &mut csv).expect("write");
        assert_eq!(read_csv(csv.as_slice()).expect("read"), rows);

        // One payout per wallet and method; A's covers both nodes' upper-chain epochs.
        let payouts: Vec<(u8, PayoutMethod, u128)> = crate::payout::plan(&rows)
            .iter()
            .map(|payout| (payout.wallet[0], payout.method, payout.amount))
            .collect();
        assert_eq!(
            payouts,
            vec![
                (0xa0, PayoutMethod::UpperChain, 90),
                (0xb0, PayoutMethod::UpperChain, 20),
                (0xb0, PayoutMethod::Rollup, 10),
            ]
        );
    }

    #[test]
    fn periods_parse_and_overlap() {
        let period: Period = "3-7".parse().expect("period");
        assert_eq!(
            period,
            Period {
                from_epoch: 3,
                to_epoch: 7
            }
        );
        assert!(period.overlaps(&Period {
            from_epoch: 7,
            to_epoch: 9
        }));
        assert!(!period.overlaps(&Period {
            from_epoch: 8,
            to_epoch: 9
        }));
        for bad in ["7-3", "3", "a-b", "-1-2", ""] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }
}
