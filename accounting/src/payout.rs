//! Payouts from a compensation report: grouped per wallet and payout method, executed through
//! rails, recorded as receipts.
//!
//! The method follows the wallet's registered features: a node whose wallet supports `assets`
//! is paid inside Tickrate's asset rollup (cheaper), any other on the upper chain. The choice
//! is per node, so one wallet with both kinds of node gets one payout per method, never one
//! aggregated across methods.
//!
//! Every executed payout is appended to the [`ReceiptBook`] (and synced) before the next one
//! starts, and a payout whose id the book already holds is skipped, so re-running a payout for
//! a paid period pays nothing twice. A payout's id is a hash of its period, wallet and method, so
//! a rail that is asked again after a crash between its transfer and the receipt can recognise
//! the id and answer with the earlier reference instead of paying again.

use std::{
    collections::BTreeMap,
    fmt,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use primitives::{Address, B256, NodeId, keccak256};
use serde::{Deserialize, Serialize};

use crate::report::{NodeEntry, Period, ReportRow};

/// The wallet feature that makes a node's payouts go through the asset rollup.
pub const ASSETS_FEATURE: &str = "assets";

/// How a payout reaches a wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayoutMethod {
    /// A transfer on the upper chain.
    UpperChain,
    /// A transfer inside Tickrate's asset rollup.
    Rollup,
}

impl PayoutMethod {
    /// The method for a wallet with these features.
    pub fn for_features(features: &[String]) -> PayoutMethod {
        if features.iter().any(|feature| feature == ASSETS_FEATURE) {
            PayoutMethod::Rollup
        } else {
            PayoutMethod::UpperChain
        }
    }

    fn tag(self) -> u8 {
        match self {
            PayoutMethod::UpperChain => 0,
            PayoutMethod::Rollup => 1,
        }
    }
}

impl fmt::Display for PayoutMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayoutMethod::UpperChain => "upper-chain",
            PayoutMethod::Rollup => "rollup",
        })
    }
}

/// One transfer to one wallet by one method, covering the outstanding amounts of its nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    /// The report's period.
    pub period: Period,
    /// The recipient.
    pub wallet: Address,
    /// How it is paid.
    pub method: PayoutMethod,
    /// The total.
    pub amount: u128,
    /// Each node's share, sorted by node.
    pub nodes: Vec<(NodeId, u128)>,
}

impl Payout {
    /// The payout's identity: keccak256 of period, wallet and method.
    pub fn id(&self) -> B256 {
        payout_id(self.period, self.wallet, self.method)
    }
}

fn payout_id(period: Period, wallet: Address, method: PayoutMethod) -> B256 {
    let mut bytes = b"tickrate:payout".to_vec();
    bytes.extend_from_slice(&period.from_epoch.to_be_bytes());
    bytes.extend_from_slice(&period.to_epoch.to_be_bytes());
    bytes.extend_from_slice(wallet.as_slice());
    bytes.push(method.tag());
    keccak256(&bytes)
}

/// The payouts a report calls for: per (wallet, method), the outstanding amounts of its nodes.
/// Nodes with nothing outstanding are left out, and so are payouts of zero.
pub fn plan(rows: &[ReportRow]) -> Vec<Payout> {
    let mut payouts: BTreeMap<(Period, Address, PayoutMethod), Payout> = BTreeMap::new();
    for row in rows {
        let outstanding = row.outstanding();
        if outstanding == 0 {
            continue;
        }
        let method = PayoutMethod::for_features(&row.node.wallet_features);
        let payout = payouts
            .entry((row.period, row.node.wallet, method))
            .or_insert_with(|| Payout {
                period: row.period,
                wallet: row.node.wallet,
                method,
                amount: 0,
                nodes: Vec::new(),
            });
        payout.amount += outstanding;
        payout.nodes.push((row.node.id, outstanding));
    }
    payouts
        .into_values()
        .map(|mut payout| {
            payout.nodes.sort();
            payout
        })
        .collect()
}

/// A payout that was made: what it paid and the rail's reference to the transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// [`Payout::id`].
    pub id: B256,
    /// The period, as `FROM-TO`.
    pub period: String,
    /// The recipient.
    pub wallet: Address,
    /// How it was paid.
    pub method: PayoutMethod,
    /// The total, in base units (a decimal string: JSON numbers cannot hold a u128).
    pub amount: String,
    /// Each node's share.
    pub nodes: Vec<NodeShare>,
    /// The rail's reference (an upper-chain transaction hash, a rollup transaction id).
    pub reference: String,
}

/// One node's share of a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShare {
    /// The node.
    pub node: Address,
    /// Its share, a decimal string.
    pub amount: String,
}

/// Why a payout run stopped.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    /// The receipt file could not be read or written.
    #[error("receipts {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// A line of the receipt file is not a receipt.
    #[error("receipts {path} line {line}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
        /// Why.
        message: String,
    },
    /// The report covers epochs a payout of another period already paid.
    #[error(
        "period {period} overlaps the paid period {paid}; report exactly {paid} or a disjoint one"
    )]
    OverlapsPaidPeriod {
        /// The report's period.
        period: Period,
        /// The paid one.
        paid: Period,
    },
    /// No rail was given for a method the plan needs; nothing was paid.
    #[error("no payout rail for method {0}")]
    NoRail(PayoutMethod),
    /// A rail failed; the payouts before it were paid and recorded.
    #[error("payout {id} to {wallet} by {method}: {message}")]
    Rail {
        /// The payout.
        id: B256,
        /// Its wallet.
        wallet: Address,
        /// Its method.
        method: PayoutMethod,
        /// What the rail said.
        message: String,
    },
}

/// Makes transfers by one method.
pub trait PayoutRail {
    /// The method this rail pays by.
    fn method(&self) -> PayoutMethod;

    /// Transfers `payout.amount` to `payout.wallet` and returns a reference to the transfer.
    /// Asked twice for one [`Payout::id`], a rail should return the first reference.
    fn pay(&mut self, payout: &Payout) -> Result<String, String>;
}

/// The receipts of every payout made, one JSON object per line, appended and synced.
#[derive(Debug)]
pub struct ReceiptBook {
    path: PathBuf,
    receipts: Vec<Receipt>,
}

impl ReceiptBook {
    /// Opens the book at `path`; a missing file is an empty book.
    pub fn open(path: &Path) -> Result<ReceiptBook, PayoutError> {
        let name = path.display().to_string();
        let io = |source| PayoutError::Io {
            path: name.clone(),
            source,
        };
        let mut receipts = Vec::new();
        match File::open(path) {
            Ok(file) => {
                for (index, line) in BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(io)?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let malformed = |message: String| PayoutError::Malformed {
                        path: name.clone(),
                        line: index + 1,
                        message,
                    };
                    let receipt: Receipt =
                        serde_json::from_str(&line).map_err(|e| malformed(e.to_string()))?;
                    receipt
                        .period
                        .parse::<Period>()
                        .map_err(|e| malformed(e.to_string()))?;
                    for amount in std::iter::once(&receipt.amount)
                        .chain(receipt.nodes.iter().map(|share| &share.amount))
                    {
                        amount
                            .parse::<u128>()
                            .map_err(|_| malformed(format!("amount {amount:?}")))?;
                    }
                    receipts.push(receipt);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        Ok(ReceiptBook {
            path: path.to_path_buf(),
            receipts,
        })
    }

    /// Every receipt, oldest first.
    pub fn receipts(&self) -> &[Receipt] {
        &self.receipts
    }

    /// What payouts of exactly `period` paid `entry`'s node to its wallet by its method (a
    /// node whose wallet changed within the period has an entry, and is paid, per wallet).
    pub fn paid(&self, period: Period, entry: &NodeEntry) -> u128 {
        let period = period.to_string();
        let method = entry.method();
        self.receipts
            .iter()
            .filter(|receipt| {
                receipt.period == period
                    && receipt.wallet == entry.wallet
                    && receipt.method == method
            })
            .flat_map(|receipt| &receipt.nodes)
            .filter(|share| share.node == entry.id.0)
            .map(|share| share.amount.parse::<u128>().unwrap_or(0))
            .sum()
    }

    /// Refuses a report period that overlaps a paid period without being equal to it: its
    /// payouts could not be told apart from the paid ones, and would pay some epochs twice.
    pub fn check_period(&self, period: Period) -> Result<(), PayoutError> {
        for receipt in &self.receipts {
            if let Ok(paid) = receipt.period.parse::<Period>()
                && paid != period
                && paid.overlaps(&period)
            {
                return Err(PayoutError::OverlapsPaidPeriod { period, paid });
            }
        }
        Ok(())
    }

    /// Whether the payout with this id was made.
    pub fn contains(&self, id: &B256) -> bool {
        self.receipts.iter().any(|receipt| &receipt.id == id)
    }

    fn append(&mut self, receipt: Receipt) -> Result<(), PayoutError> {
        let io = |source| PayoutError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut line = serde_json::to_string(&receipt)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        // The receipt is what stops a second payment: it must be on disk before the next one.
        file.sync_all().map_err(io)?;
        self.receipts.push(receipt);
        Ok(())
    }
}

/// Makes the payouts of `plan` that `book` does not hold yet, in order, each through the rail
/// of its method, recording a receipt for each. Checks first that every needed rail is there,
/// so a missing one pays nothing. Returns the receipts of this run.
pub fn execute(
    plan: &[Payout],
    rails: &mut [&mut dyn PayoutRail],
    book: &mut ReceiptBook,
) -> Result<Vec<Receipt>, PayoutError> {
    let pending: Vec<&Payout> = plan
        .iter()
        .filter(|payout| !book.contains(&payout.id()))
        .collect();
    for payout in &pending {
        book.check_period(payout.period)?;
        if !rails.iter().any(|rail| rail.method() == payout.method) {
            return Err(PayoutError::NoRail(payout.method));
        }
    }
    let mut made = Vec::new();
    for payout in pending {
        let Some(rail) = rails.iter_mut().find(|rail| rail.method() == payout.method) else {
            return Err(PayoutError::NoRail(payout.method));
        };
        let reference = rail.pay(payout).map_err(|message| PayoutError::Rail {
            id: payout.id(),
            wallet: payout.wallet,
            method: payout.method,
            message,
        })?;
        tracing::info!(
            id = %payout.id(),
            wallet = %payout.wallet,
            method = %payout.method,
            amount = payout.amount,
            reference,
            "payout made"
        );
        let receipt = Receipt {
            id: payout.id(),
            period: payout.period.to_string(),
            wallet: payout.wallet,
            method: payout.method,
            amount: payout.amount.to_string(),
            nodes: payout
                .nodes
                .iter()
                .map(|(node, amount)| NodeShare {
                    node: node.0,
                    amount: amount.to_string(),
                })
                .collect(),
            reference,
        };
        book.append(receipt.clone())?;
        made.push(receipt);
    }
    Ok(made)
}

#[cfg(test)]
mod tests;
