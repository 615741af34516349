//! The sequencer's consensus memory on disk: the PBFT core's replica log ([`consensus::FileLog`])
//! and where the batcher stood after the last batch it recorded.
//!
//! The replica log is the core's: the driver appends the records the replica emits before it
//! sends the messages that depend on them, so a sequencer killed and restarted comes back in its
//! view, at its sequence, behind the pre-prepares and prepared certificates it promised, and
//! never votes for two values at one sequence in one view.
//!
//! The batcher's position is the application state the decided batches built (the next height
//! of each sequencer, the last batch number and hash). It is written after each committed batch
//! (replaced atomically, not synced: the replica log is synced and keeps the decided entries
//! after it, which a restart replays), tagged with the PBFT sequence it reflects.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use consensus::{FileLog, LogError, Record, Recovery, ReplicaState};
use primitives::{Batch, Decode, DecodeError, Decoder, Encode};

use crate::batcher::{Batcher, BatcherSnapshot};

/// The replica log's file in the consensus directory.
pub const REPLICA_LOG_FILE: &str = "replica.log";
/// The batcher position's file in the consensus directory.
pub const BATCHER_FILE: &str = "batcher";

/// Why the consensus directory cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaStoreError {
    /// The replica log failed.
    #[error("replica log: {0}")]
    Log(#[from] LogError),
    /// The batcher's file could not be read or written.
    #[error("batcher position: {0}")]
    Io(#[from] io::Error),
    /// The batcher's file does not decode.
    #[error("batcher position does not decode: {0}")]
    Decode(#[from] DecodeError),
}

/// What a sequencer restarts from.
#[derive(Debug)]
pub struct Restored {
    /// The replica's state, as its log folds.
    pub state: ReplicaState<Batch>,
    /// The batcher's position and the PBFT sequence it reflects, if one was written.
    pub batcher: Option<(u64, BatcherSnapshot)>,
    /// What opening the log found.
    pub recovery: Recovery,
}

impl Restored {
    /// The batcher for `sequencers` at the last decided batch the log knows: the written
    /// position, then the decided batches the log keeps after it. A position missing or behind
    /// the log's retained entries leaves the batcher behind; [`Batcher::commit`] catches up on
    /// the next decided batch.
    pub fn batcher(&self, sequencers: impl IntoIterator<Item = primitives::NodeId>) -> Batcher {
        let (through, mut batcher) = match &self.batcher {
            Some((sequence, snapshot)) => {
                (*sequence, Batcher::restore(sequencers, snapshot.clone()))
            }
            None => (0, Batcher::new(sequencers)),
        };
        for entry in self.state.decided() {
            if entry.sequence <= through {
                continue;
            }
            if let Some(batch) = &entry.value
                && batch.number > batcher.last_number()
            {
                batcher.commit(batch);
            }
        }
        batcher
    }
}

/// The replica log and the batcher's position, in one directory.
#[derive(Debug)]
pub struct ReplicaStore {
    log: FileLog<Batch>,
    batcher_path: PathBuf,
}

impl ReplicaStore {
    /// Opens (or creates) the store in `dir` and returns what it holds.
    pub fn open(dir: &Path) -> Result<(ReplicaStore, Restored), ReplicaStoreError> {
        std::fs::create_dir_all(dir)?;
        let (log, recovery) = FileLog::open_path(dir.join(REPLICA_LOG_FILE))?;
        let batcher_path = dir.join(BATCHER_FILE);
        let batcher = match std::fs::read(&batcher_path) {
            Ok(bytes) => {
                let mut decoder = Decoder::new(&bytes);
                let sequence = decoder.u64()?;
                let snapshot = BatcherSnapshot::decode(&mut decoder)?;
                decoder.finish()?;
                Some((sequence, snapshot))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error.into()),
        };
        let restored = Restored {
            state: log.state().clone(),
            batcher,
            recovery,
        };
        Ok((ReplicaStore { log, batcher_path }, restored))
    }

    /// Makes `records` durable (one write and one sync); the replica's transmits and events that
    /// follow them may go out once this returns `Ok`.
    pub fn append(&mut self, records: &[Record<Batch>]) -> Result<(), ReplicaStoreError> {
        Ok(self.log.append(records)?)
    }

    /// Starts an empty log from `state` (a sequencer joining at an epoch boundary).
    pub fn start_from(&mut self, state: ReplicaState<Batch>) -> Result<(), ReplicaStoreError> {
        Ok(self.log.start_from(state)?)
    }

    /// Writes where the batcher stands after the batch decided at PBFT `sequence`, replacing the
    /// previous position atomically.
    pub fn save_batcher(
        &self,
        sequence: u64,
        snapshot: &BatcherSnapshot,
    ) -> Result<(), ReplicaStoreError> {
        let mut bytes = Vec::new();
        sequence.encode(&mut bytes);
        snapshot.encode(&mut bytes);
        let mut temporary = self.batcher_path.clone().into_os_string();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        drop(file);
        std::fs::rename(&temporary, &self.batcher_path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountKey, B256, BlockBody, BlockHeader, NodeId};

    use super::*;

    fn batch(key: &AccountKey, number: u64, parent: B256, height: u64) -> Batch {
        Batch {
            number,
            parent,
            headers: vec![BlockHeader::seal(
                key,
                height,
                B256::ZERO,
                0,
                &BlockBody::default(),
                5,
            )],
        }
    }

    #[test]
    fn the_batcher_position_survives_a_reopen_and_refuses_what_it_committed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let key = AccountKey::from_seed(7);
        let id = NodeId(key.address());
        let first = batch(&key, 1, B256::ZERO, 0);
        let second = batch(&key, 2, first.hash(), 1);
        {
            let (store, restored) = ReplicaStore::open(dir.path()).expect("opens");
            assert!(restored.batcher.is_none());
            let mut batcher = restored.batcher([id]);
            assert!(batcher.commit(&first));
            store.save_batcher(1, &batcher.snapshot()).expect("written");
            assert!(batcher.commit(&second));
            store.save_batcher(2, &batcher.snapshot()).expect("written");
        }
        let (_, restored) = ReplicaStore::open(dir.path()).expect("reopens");
        let batcher = restored.batcher([id]);
        assert_eq!(batcher.last_number(), 2);
        // The heights the two batches named are batched: proposing them again is refused.
        assert!(batcher.check(&batch(&key, 3, second.hash(), 1)).is_err());
        assert_eq!(batcher.check(&batch(&key, 3, second.hash(), 2)), Ok(()));
    }

    #[test]
    fn a_corrupt_batcher_position_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join(BATCHER_FILE), [0u8, 1, 2]).expect("written");
        assert!(matches!(
            ReplicaStore::open(dir.path()),
            Err(ReplicaStoreError::Decode(_))
        ));
    }
}
