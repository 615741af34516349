//! A node's own accounting: what it counts of its work, what it gives and takes from each peer,
//! and what it writes to its data directory at each epoch's end.
//!
//! The directory holds two files the report command reads ([`collect`] finds them under a
//! devnet's or an operator's directory):
//! - [`USAGE_FILE`]: one [`SignedUsage`] a line, the node's signed claim for each epoch;
//! - [`OBSERVATIONS_FILE`]: one [`Observation`] a line, what the node saw of other nodes' work
//!   (its group peers' moves and rounds), which corroborates their claims.

use std::path::{Path, PathBuf};

use primitives::{AccountKey, Address};

use crate::{
    ledger::{LedgerConfig, PeerLedger},
    meter::{UsageFileError, UsageMeter, append_jsonl, append_jsonl_all, read_jsonl},
    rates::Rates,
    usage::{Observation, SignedUsage, Usage},
};

/// The node's signed usage, one epoch a line.
pub const USAGE_FILE: &str = "usage.jsonl";
/// What the node saw of other nodes' work, one observation a line.
pub const OBSERVATIONS_FILE: &str = "observations.jsonl";

/// The last epoch a node signed, as its metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedEpoch {
    /// The epoch.
    pub epoch: u64,
    /// What the node claimed for it.
    pub usage: Usage,
    /// What that earns at the node's rates.
    pub owed: u128,
}

/// One node's meter, peer ledger and data directory.
#[derive(Debug)]
pub struct NodeAccounting {
    meter: UsageMeter,
    ledger: PeerLedger,
    rates: Rates,
    dir: PathBuf,
    owed_total: u128,
    last: Option<SignedEpoch>,
}

impl NodeAccounting {
    /// Accounting for the node whose key is `key`, counting from `epoch`, writing into `dir`
    /// (created if missing; files already there are appended to).
    pub fn open(
        key: AccountKey,
        epoch: u64,
        rates: Rates,
        ledger: LedgerConfig,
        dir: &Path,
    ) -> Result<NodeAccounting, UsageFileError> {
        std::fs::create_dir_all(dir).map_err(|source| UsageFileError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(NodeAccounting {
            meter: UsageMeter::new(key, epoch),
            ledger: PeerLedger::new(ledger),
            rates,
            dir: dir.to_path_buf(),
            owed_total: 0,
            last: None,
        })
    }

    /// The node's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The epoch being counted.
    pub fn epoch(&self) -> u64 {
        self.meter.epoch()
    }

    /// The meter of the epoch being counted.
    pub fn meter(&mut self) -> &mut UsageMeter {
        &mut self.meter
    }

    /// The per-peer ledger.
    pub fn ledger(&mut self) -> &mut PeerLedger {
        &mut self.ledger
    }

    /// The per-peer ledger, to read.
    pub fn peer_ledger(&self) -> &PeerLedger {
        &self.ledger
    }

    /// The last epoch signed, if any.
    pub fn last_signed(&self) -> Option<SignedEpoch> {
        self.last
    }

    /// What every signed epoch earns at the node's rates.
    pub fn owed_total(&self) -> u128 {
        self.owed_total
    }

    /// Signs the epoch being counted, appends it to [`USAGE_FILE`] and `observations` (what this
    /// node saw of others in that epoch) to [`OBSERVATIONS_FILE`], and starts `next_epoch`.
    /// Nothing is counted as signed unless both files took it.
    pub fn close_epoch(
        &mut self,
        next_epoch: u64,
        observations: &[Observation],
    ) -> Result<SignedUsage, UsageFileError> {
        assert!(
            next_epoch > self.meter.epoch(),
            "epochs only move forward: {next_epoch} after {}",
            self.meter.epoch()
        );
        let signed = self.meter.close_epoch(next_epoch);
        debug_assert!(signed.verify().is_ok(), "a node's own signature verifies");
        debug_assert!(
            observations
                .iter()
                .all(|seen| seen.witness == signed.report.node),
            "a node writes only what it saw itself"
        );
        if !observations.is_empty() {
            append_jsonl_all(&self.dir.join(OBSERVATIONS_FILE), observations)?;
        }
        append_jsonl(&self.dir.join(USAGE_FILE), &signed)?;
        let owed: u128 = self.rates.compensation(&signed.report.usage).iter().sum();
        self.owed_total = self.owed_total.saturating_add(owed);
        self.last = Some(SignedEpoch {
            epoch: signed.report.epoch,
            usage: signed.report.usage,
            owed,
        });
        Ok(signed)
    }

    /// Publishes the ledger and the last signed epoch through the `metrics` facade
    /// ([`crate::metrics`]).
    pub fn export_metrics(&self) {
        self.ledger.export_metrics();
        if let Some(last) = &self.last {
            crate::metrics::epoch_signed(last.epoch, &last.usage, last.owed, self.owed_total);
        }
    }
}

/// Every signed usage and observation under `dir`: its own files and those of its immediate
/// subdirectories (one per node, as a devnet lays them out), in path order.
pub fn collect(dir: &Path) -> Result<(Vec<SignedUsage>, Vec<Observation>), UsageFileError> {
    let io = |source| UsageFileError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut dirs = vec![dir.to_path_buf()];
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    children.retain(|path| path.is_dir());
    children.sort();
    dirs.extend(children);
    let mut reports = Vec::new();
    let mut observations = Vec::new();
    for dir in dirs {
        let usage = dir.join(USAGE_FILE);
        if usage.is_file() {
            reports.extend(read_jsonl::<SignedUsage>(&usage)?);
        }
        let seen = dir.join(OBSERVATIONS_FILE);
        if seen.is_file() {
            observations.extend(read_jsonl::<Observation>(&seen)?);
        }
    }
    Ok((reports, observations))
}

/// The node IDs whose usage files are under `dir` (see [`collect`]), sorted.
pub fn nodes_in(reports: &[SignedUsage]) -> Vec<Address> {
    let mut nodes: Vec<Address> = reports.iter().map(|signed| signed.report.node).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{Figure, summarise};

    #[test]
    fn closed_epochs_land_in_the_directory_and_the_report_reads_them_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rates = Rates::new(&[(Figure::MovesExecuted, 10), (Figure::UptimeSeconds, 1)]);
        let (a, b) = (AccountKey::from_seed(1), AccountKey::from_seed(2));
        let mut node_a = NodeAccounting::open(
            a.clone(),
            1,
            rates,
            LedgerConfig::default(),
            &dir.path().join("a"),
        )
        .expect("opens");
        let mut node_b = NodeAccounting::open(
            b.clone(),
            1,
            rates,
            LedgerConfig::default(),
            &dir.path().join("b"),
        )
        .expect("opens");
        node_a.meter().add(Figure::MovesExecuted, 7);
        node_a.meter().add(Figure::UptimeSeconds, 3);
        let seen_by_b = Observation {
            witness: b.address(),
            subject: a.address(),
            epoch: 1,
            figure: Figure::MovesExecuted.into(),
            value: 7,
            group: None,
        };
        node_a.close_epoch(2, &[]).expect("closes");
        node_b.close_epoch(2, &[seen_by_b]).expect("closes");
        assert_eq!(
            node_a.last_signed(),
            Some(SignedEpoch {
                epoch: 1,
                usage: Usage {
                    moves_executed: 7,
                    uptime_seconds: 3,
                    ..Usage::default()
                },
                owed: 73,
            })
        );
        assert_eq!((node_a.epoch(), node_a.owed_total()), (2, 73));

        let (reports, observations) = collect(dir.path()).expect("collects");
        assert_eq!(reports.len(), 2);
        assert_eq!(observations, vec![seen_by_b]);
        let mut expected = vec![a.address(), b.address()];
        expected.sort();
        assert_eq!(nodes_in(&reports), expected);
        let summary = summarise(1..=1, 3_600, &reports, &observations);
        assert_eq!(
            summary.per_node[&primitives::NodeId(a.address())].moves_executed,
            7
        );

        std::fs::write(dir.path().join("b").join(USAGE_FILE), "not json\n").expect("write");
        assert!(matches!(
            collect(dir.path()),
            Err(UsageFileError::Malformed { line: 1, .. })
        ));
    }
}
