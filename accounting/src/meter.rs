//! The node side of usage: count what the node does during an epoch, sign it at the epoch's
//! end, and append it to a file the report command reads.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::Path,
};

use primitives::AccountKey;

use crate::usage::{Figure, SignedUsage, Usage, UsageReport};

/// Why a usage or observation file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsageFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// A line that is not the expected JSON object.
    #[error("{path} line {line}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
        /// What the parser said.
        message: String,
    },
}

/// Counts one node's usage figures over the current epoch.
#[derive(Debug)]
pub struct UsageMeter {
    key: AccountKey,
    epoch: u64,
    usage: Usage,
}

impl UsageMeter {
    /// A meter for the node whose key is `key`, starting at `epoch`.
    pub fn new(key: AccountKey, epoch: u64) -> Self {
        UsageMeter {
            key,
            epoch,
            usage: Usage::default(),
        }
    }

    /// The epoch being counted.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What has been counted so far this epoch.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Adds to a flow figure (moves, rounds, bytes relayed, chunks, seconds up).
    pub fn add(&mut self, figure: Figure, amount: u64) {
        self.usage
            .set(figure, self.usage.get(figure).saturating_add(amount));
    }

    /// Sets a level figure (the bytes of state held now).
    pub fn set(&mut self, figure: Figure, value: u64) {
        self.usage.set(figure, value);
    }

    /// Signs the epoch's usage and starts counting `next_epoch` from zero; the level of state
    /// held carries over, as the state does.
    pub fn close_epoch(&mut self, next_epoch: u64) -> SignedUsage {
        let report = UsageReport {
            node: self.key.address(),
            epoch: self.epoch,
            usage: self.usage,
        };
        let state_bytes = self.usage.state_bytes;
        self.epoch = next_epoch;
        self.usage = Usage {
            state_bytes,
            ..Usage::default()
        };
        report.sign(&self.key)
    }
}

/// Appends one JSON object as a line to `path`, created if missing, and syncs it.
pub fn append_jsonl<T: serde::Serialize>(path: &Path, item: &T) -> Result<(), UsageFileError> {
    append_jsonl_all(path, std::slice::from_ref(item))
}

/// Appends JSON objects, one a line, to `path` (created if missing) in one write, and syncs it
/// once: an epoch's observations cost one fsync, not one each.
pub fn append_jsonl_all<T: serde::Serialize>(
    path: &Path,
    items: &[T],
) -> Result<(), UsageFileError> {
    let io = |source| UsageFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut text = String::new();
    for item in items {
        text.push_str(
            &serde_json::to_string(item)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
        );
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)
}

/// Reads every JSON line of `path` (blank lines skipped); a line that does not parse is an
/// error naming it.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, UsageFileError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| UsageFileError::Io {
        path: name.clone(),
        source,
    })?;
    let mut items = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| UsageFileError::Io {
            path: name.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        items.push(
            serde_json::from_str(&line).map_err(|error| UsageFileError::Malformed {
                path: name.clone(),
                line: index + 1,
                message: error.to_string(),
            })?,
        );
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::summarise;

    #[test]
    fn a_meter_signs_each_epoch_and_the_file_reads_back_into_a_summary() {
        let key = AccountKey::from_seed(9);
        let mut meter = UsageMeter::new(key.clone(), 1);
        meter.add(Figure::UptimeSeconds, 30);
        meter.add(Figure::UptimeSeconds, 30);
        meter.set(Figure::StateBytes, 1_000);
        meter.set(Figure::StateBytes, 4_000);
        let first = meter.close_epoch(2);
        meter.add(Figure::UptimeSeconds, 5);
        let second = meter.close_epoch(3);
        assert_eq!(meter.epoch(), 3);

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("usage.jsonl");
        append_jsonl(&path, &first).expect("append");
        append_jsonl(&path, &second).expect("append");
        let read: Vec<SignedUsage> = read_jsonl(&path).expect("read");
        assert_eq!(read, vec![first, second]);
        let summary = summarise(1..=2, 3_600, &read, &[]);
        assert!(summary.refused.is_empty());
        let usage = summary.per_node[&primitives::NodeId(key.address())];
        assert_eq!(usage.uptime_seconds, 65);
        // State held carries over: 4,000 bytes for each of the two epochs.
        assert_eq!(usage.state_bytes, 8_000);

        std::fs::write(&path, "{\"report\": 1}\n").expect("write");
        assert!(matches!(
            read_jsonl::<SignedUsage>(&path),
            Err(UsageFileError::Malformed { line: 1, .. })
        ));
    }
}
