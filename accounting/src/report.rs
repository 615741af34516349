//! The compensation report: one row per node for a range of epochs, written as CSV.
//!
//! A row joins what the upper chain says of the node (when it joined, whether it was evicted,
//! its reward wallet and that wallet's payout features), the usage accepted for it over the
//! period ([`crate::usage::summarise`]), what each figure earns at the period's rates, what is
//! owed in total, and what earlier payouts of this same period already paid (from the receipts,
//! [`crate::payout::ReceiptBook`]). The payout step reads the CSV back, so the file an operator
//! reviews is exactly what gets paid.

use std::{collections::BTreeMap, fmt, str::FromStr};

use primitives::{Address, NodeId};
use upper_chain::{ChainError, DepartureKind, UpperChain};

use crate::{
    rates::Rates,
    usage::{Figure, Usage},
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
    /// That wallet's payout features, as registered (unknown ones kept).
    pub wallet_features: Vec<String>,
}

/// Every node active in some epoch of `period`, from the chain's registry snapshots. Where a
/// node's registration differs between epochs, the latest wins.
pub fn registry_over(
    chain: &dyn UpperChain,
    period: Period,
) -> Result<Vec<NodeEntry>, ReportError> {
    let mut nodes: BTreeMap<NodeId, NodeEntry> = BTreeMap::new();
    for epoch in period.epochs() {
        for record in chain.registry_snapshot(epoch)?.nodes {
            nodes.insert(
                record.id,
                NodeEntry {
                    id: record.id,
                    created_at_epoch: record.active_from_epoch,
                    evicted_at_epoch: None,
                    wallet: record.registration.reward_wallet,
                    wallet_features: record.registration.wallet_features,
                },
            );
        }
    }
    for entry in nodes.values_mut() {
        if let Some(departure) = chain.departure(&entry.id)?
            && departure.kind == DepartureKind::Eviction
        {
            entry.evicted_at_epoch = Some(departure.epoch);
        }
    }
    Ok(nodes.into_values().collect())
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

/// Builds the report's rows, one per node in `nodes`, sorted by node ID. A node with no
/// accepted usage gets a row of zeros (it was registered, so the operator should see it).
/// `paid` says what earlier payouts of this period paid each node.
pub fn build(
    period: Period,
    nodes: &[NodeEntry],
    usage: &BTreeMap<NodeId, Usage>,
    rates: &Rates,
    paid: impl Fn(&NodeId) -> u128,
) -> Vec<ReportRow> {
    let mut rows: Vec<ReportRow> = nodes
        .iter()
        .map(|node| {
            let usage = usage.get(&node.id).copied().unwrap_or_default();
            let compensation = rates.compensation(&usage);
            ReportRow {
                period,
                node: node.clone(),
                usage,
                compensation,
                owed: compensation.iter().sum(),
                paid: paid(&node.id),
            }
        })
        .collect();
    rows.sort_by_key(|row| row.node.id);
    rows
}

/// The CSV header this version writes and reads.
pub fn header() -> Vec<String> {
    let mut columns: Vec<String> = [
        "period",
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
        let id: Address = parse(line, "node_id", field(1), "an address")?;
        let created_at_epoch = parse(line, "created_at_epoch", field(2), "an epoch")?;
        let evicted_at_epoch = match field(3) {
            "" => None,
            value => Some(parse(line, "evicted_at_epoch", value, "an epoch or empty")?),
        };
        let wallet = parse(line, "wallet", field(4), "an address")?;
        let wallet_features = split_features(field(5));
        let mut usage = Usage::default();
        for (offset, figure) in Figure::ALL.into_iter().enumerate() {
            usage.set(
                figure,
                parse(line, figure.name(), field(6 + offset), "a count")?,
            );
        }
        let mut compensation = [0u128; 6];
        for (offset, amount) in compensation.iter_mut().enumerate() {
            *amount = parse(line, "pay_*", field(12 + offset), "an amount")?;
        }
        let owed: u128 = parse(line, "owed", field(18), "an amount")?;
        let paid = parse(line, "paid", field(19), "an amount")?;
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
            },
            usage,
            compensation,
            owed,
            paid,
        });
    }
    Ok(rows)
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
        }
    }

    fn sample() -> Vec<ReportRow> {
        let period = Period::new(2, 5).expect("period");
        let nodes = [
            entry(3, &["assets", "other"]),
            entry(1, &[]),
            entry(2, &["assets"]),
        ];
        let usage = BTreeMap::from([
            (
                nodes[0].id,
                Usage {
                    moves_executed: 10,
                    uptime_seconds: 7,
                    ..Usage::default()
                },
            ),
            (
                nodes[1].id,
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
        build(period, &nodes, &usage, &rates, |id| {
            if id.0 == Address::repeat_byte(1) {
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
        assert!(text.starts_with("period,node_id,created_at_epoch,evicted_at_epoch,wallet,"));
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
