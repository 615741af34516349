//! Execution records: what anyone needs to re-execute a batch and check the roots groups
//! committed for it, and the check itself.
//!
//! For every batch the network keeps an [`ExecutionRecord`]: each move in batch order, the
//! pre-state slice its executing group ran it on (the values of exactly its Space Access List,
//! shipped slices included) and the outcome the group's quorum agreed on. A [`Verifier`] replays
//! records from genesis on one node's worth of state, as a single-node reference execution would:
//! - a move's recorded slice must be the state before it ([`Divergence::PreState`]);
//! - re-executing the move on it must give the recorded outcome ([`Divergence::Outcome`]);
//! - a group root committed after a batch must be the root of exactly that group's addresses in
//!   the replayed state ([`Divergence::Root`]).
//!
//! The first divergence names the batch and the move, so a tampered root is pinned to the exact
//! move whose recorded outcome it rests on, or, when every recorded move re-executes as recorded,
//! to the commitment itself.

use execution::{ExecutionEnv, InMemoryState, MoveOutcome, StateDiff, StateSlice, execute};
use primitives::{
    Address, B256, Decode, DecodeError, Decoder, Encode, FailureReason, SignedTransaction,
    codec::put_length,
    constants::{BATCH_BLOCKS_MAX, BLOCK_MOVES_MAX},
    finality::StateItem,
};
use upper_chain::{GroupRootCommitment, RegistrySnapshot, group_id};

/// One move of a batch as its executing group ran it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedMove {
    /// The move as sequenced.
    pub signed: SignedTransaction,
    /// The values of its Space Access List it ran on; empty if it did not run (it did not
    /// verify, or a slice was unavailable).
    pub slice: StateSlice,
    /// The outcome the executing group's quorum agreed on.
    pub outcome: MoveOutcome,
}

/// The moves of one batch, in batch order, with their slices and outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionRecord {
    /// The batch.
    pub number: u64,
    /// Its moves.
    pub moves: Vec<RecordedMove>,
}

const RECORD_VERSION: u8 = 1;
/// Moves one record may hold: a full batch.
pub const RECORD_MOVES_MAX: usize = BLOCK_MOVES_MAX * BATCH_BLOCKS_MAX;

impl Encode for ExecutionRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(RECORD_VERSION);
        self.number.encode(out);
        put_length(out, self.moves.len());
        for recorded in &self.moves {
            recorded.signed.encode(out);
            recorded.slice.encode(out);
            recorded.outcome.encode(out);
        }
    }
}

impl Decode for ExecutionRecord {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("execution record", &[RECORD_VERSION])?;
        let number = decoder.u64()?;
        let count = decoder.length("recorded moves", RECORD_MOVES_MAX)?;
        let mut moves = Vec::with_capacity(count.min(decoder.remaining()));
        for _ in 0..count {
            moves.push(RecordedMove {
                signed: SignedTransaction::decode(decoder)?,
                slice: StateSlice::decode(decoder)?,
                outcome: MoveOutcome::decode(decoder)?,
            });
        }
        Ok(ExecutionRecord { number, moves })
    }
}

/// Where a replay of the records parts from what was recorded or committed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    /// Records must be replayed in batch order from the first.
    #[error("record of batch {got} is not the next one ({expected})")]
    OutOfOrder {
        /// The next batch.
        expected: u64,
        /// The batch of the record given.
        got: u64,
    },
    /// A recorded outcome is not for the move it follows.
    #[error("batch {batch}, move {index}: the outcome recorded is for another move")]
    Mismatched {
        /// The batch.
        batch: u64,
        /// The move's index in the batch.
        index: usize,
    },
    /// The slice a move ran on is not the state before it.
    #[error("batch {batch}, move {index} ({hash}): it ran on a wrong value of {item:?}")]
    PreState {
        /// The batch.
        batch: u64,
        /// The move's index in the batch.
        index: usize,
        /// The move.
        hash: B256,
        /// The first item whose value differs, or that is listed but missing.
        item: StateItem,
    },
    /// Re-executing a move does not give its recorded outcome.
    #[error("batch {batch}, move {index} ({hash}): re-executed, it gives another outcome")]
    Outcome {
        /// The batch.
        batch: u64,
        /// The move's index in the batch.
        index: usize,
        /// The move.
        hash: B256,
        /// What was recorded.
        recorded: Box<MoveOutcome>,
        /// What re-execution gives.
        reexecuted: Box<MoveOutcome>,
    },
    /// A committed root is not the root of its group's addresses after its batch, though every
    /// recorded move up to it re-executes as recorded.
    #[error(
        "group {group} committed root {committed} after batch {batch}; re-execution gives {reexecuted}"
    )]
    Root {
        /// The group.
        group: B256,
        /// The batch after which the root was committed.
        batch: u64,
        /// The root committed.
        committed: B256,
        /// The root of the group's addresses in the replayed state.
        reexecuted: B256,
    },
    /// A root is checked against a replay that is not at the root's batch.
    #[error("root committed after batch {batch} checked against a replay after batch {replayed}")]
    RootNotAtReplay {
        /// The root's batch.
        batch: u64,
        /// The last batch replayed.
        replayed: u64,
    },
    /// The engine refused to run a move on a slice of its own list: a bug in the engine, which
    /// a verifier reports rather than hides.
    #[error("batch {batch}, move {index} ({hash}): the engine failed: {error}")]
    Engine {
        /// The batch.
        batch: u64,
        /// The move's index in the batch.
        index: usize,
        /// The move.
        hash: B256,
        /// What the engine said.
        error: String,
    },
}

/// Replays execution records over one node's worth of state.
#[derive(Debug)]
pub struct Verifier {
    chain_id: u64,
    state: InMemoryState,
    next: u64,
}

impl Verifier {
    /// A replay from `genesis`, the state before batch 1.
    pub fn new(chain_id: u64, genesis: InMemoryState) -> Self {
        Verifier {
            chain_id,
            state: genesis,
            next: 1,
        }
    }

    /// The number of the next record to replay.
    pub fn next_batch(&self) -> u64 {
        self.next
    }

    /// The replayed state.
    pub fn state(&self) -> &InMemoryState {
        &self.state
    }

    /// Replays the record of the next batch; on a divergence the replay stops there and the
    /// state stays as before the record.
    pub fn replay(&mut self, record: &ExecutionRecord) -> Result<(), Divergence> {
        if record.number != self.next {
            return Err(Divergence::OutOfOrder {
                expected: self.next,
                got: record.number,
            });
        }
        let env = ExecutionEnv {
            chain_id: self.chain_id,
            block_number: record.number,
            timestamp: record.number,
        };
        let mut replayed = self.state.clone();
        for (index, recorded) in record.moves.iter().enumerate() {
            let reexecuted = reexecute(&env, self.chain_id, &replayed, recorded)
                .map_err(|why| why.at(record.number, index, recorded.signed.hash()))?;
            if reexecuted != recorded.outcome {
                return Err(Divergence::Outcome {
                    batch: record.number,
                    index,
                    hash: recorded.signed.hash(),
                    recorded: Box::new(recorded.outcome.clone()),
                    reexecuted: Box::new(reexecuted),
                });
            }
            replayed.apply(&reexecuted.diff);
        }
        self.state = replayed;
        self.next += 1;
        Ok(())
    }

    /// The root of exactly `group`'s addresses in the replayed state, the group formed from
    /// `snapshot`.
    pub fn group_root(&self, snapshot: &RegistrySnapshot, group: &B256) -> B256 {
        group_root_in(&self.state, snapshot, group)
    }

    /// Checks a group root committed after the last replayed batch against the replayed state.
    pub fn check_root(
        &self,
        snapshot: &RegistrySnapshot,
        commitment: &GroupRootCommitment,
    ) -> Result<(), Divergence> {
        let replayed = self.next - 1;
        if commitment.batch != replayed {
            return Err(Divergence::RootNotAtReplay {
                batch: commitment.batch,
                replayed,
            });
        }
        let reexecuted = self.group_root(snapshot, &commitment.group);
        if reexecuted != commitment.root {
            return Err(Divergence::Root {
                group: commitment.group,
                batch: commitment.batch,
                committed: commitment.root,
                reexecuted,
            });
        }
        Ok(())
    }
}

/// The authenticated root of exactly `group`'s addresses in `state`, the group formed from
/// `snapshot`: what the group's members commit to.
pub fn group_root_in(state: &InMemoryState, snapshot: &RegistrySnapshot, group: &B256) -> B256 {
    let own = state
        .accounts()
        .filter(|(address, _)| group_id(&snapshot.group_of(address)) == *group);
    execution::trie::root_of(&execution::proof::account_leaves(own))
}

/// Why a move could not be re-executed as recorded, before its batch and index are known.
enum MoveDivergence {
    PreState(StateItem),
    Mismatched,
    Engine(String),
}

impl MoveDivergence {
    fn at(self, batch: u64, index: usize, hash: B256) -> Divergence {
        match self {
            MoveDivergence::PreState(item) => Divergence::PreState {
                batch,
                index,
                hash,
                item,
            },
            MoveDivergence::Mismatched => Divergence::Mismatched { batch, index },
            MoveDivergence::Engine(error) => Divergence::Engine {
                batch,
                index,
                hash,
                error,
            },
        }
    }
}

/// The outcome of `recorded` re-executed over `state`, after checking its recorded slice is
/// that state's.
fn reexecute(
    env: &ExecutionEnv,
    chain_id: u64,
    state: &InMemoryState,
    recorded: &RecordedMove,
) -> Result<MoveOutcome, MoveDivergence> {
    let hash = recorded.signed.hash();
    if recorded.outcome.hash != hash {
        return Err(MoveDivergence::Mismatched);
    }
    let not_run = |status| MoveOutcome {
        hash,
        status: Err(status),
        gas_used: 0,
        logs: Vec::new(),
        diff: StateDiff::default(),
    };
    let verified = match recorded.signed.clone().verify(chain_id) {
        Ok(verified) => verified,
        Err(_) => return Ok(not_run(FailureReason::InvalidMove)),
    };
    // An unavailable slice is the executing group's decision, which re-execution cannot
    // revisit; it must have changed nothing.
    if let Err(FailureReason::SliceUnavailable(address)) = &recorded.outcome.status
        && recorded.slice.accounts.is_empty()
        && verified
            .tx()
            .access_list
            .accounts()
            .iter()
            .any(|access| access.address == *address)
    {
        return Ok(not_run(FailureReason::SliceUnavailable(*address)));
    }
    let slice = state.slice(&verified.tx().access_list);
    if let Some(item) = first_difference(&slice, &recorded.slice) {
        return Err(MoveDivergence::PreState(item));
    }
    execute(env, &verified, &slice).map_err(|error| MoveDivergence::Engine(error.to_string()))
}

/// The first item whose value differs between two slices of one list.
fn first_difference(expected: &StateSlice, recorded: &StateSlice) -> Option<StateItem> {
    for (address, account) in &expected.accounts {
        let Some(other) = recorded.accounts.get(address) else {
            return Some(StateItem::Balance(*address));
        };
        if account.balance != other.balance {
            return Some(StateItem::Balance(*address));
        }
        if account.nonce != other.nonce {
            return Some(StateItem::Nonce(*address));
        }
        if account.code != other.code {
            return Some(StateItem::Code(*address));
        }
        for (slot, value) in &account.storage {
            if other.storage.get(slot) != Some(value) {
                return Some(StateItem::Storage(*address, *slot));
            }
        }
        if let Some(slot) = other
            .storage
            .keys()
            .find(|slot| !account.storage.contains_key(*slot))
        {
            return Some(StateItem::Storage(*address, *slot));
        }
    }
    recorded
        .accounts
        .keys()
        .find(|address| !expected.accounts.contains_key(*address))
        .map(|address: &Address| StateItem::Balance(*address))
}

/// Why a record log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordLogError {
    /// The file system refused.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What it said.
        error: std::io::Error,
    },
    /// A file does not decode.
    #[error("{path}: {error}")]
    Decode {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: DecodeError,
    },
    /// A file holds another batch than its name says.
    #[error("{path} holds the record of batch {found}")]
    Misplaced {
        /// The file.
        path: std::path::PathBuf,
        /// The batch it holds.
        found: u64,
    },
}

/// A directory of execution records, one file per batch, and the genesis they start from.
/// Each file is written whole, then renamed into place, so a reader never sees a file being
/// written. Files are not synced: a record is derived data that re-executing the batch rebuilds,
/// and one fsync per batch (13 ms on this machine's disk) would cost more than a 10 ms batch.
/// After a crash a torn file reads as a [`RecordLogError::Decode`] naming it.
#[derive(Clone, Debug)]
pub struct RecordLog {
    dir: std::path::PathBuf,
}

const GENESIS_FILE: &str = "genesis.rec";

impl RecordLog {
    /// The log in `dir`, created if missing.
    pub fn open(dir: &std::path::Path) -> Result<Self, RecordLogError> {
        std::fs::create_dir_all(dir).map_err(|error| RecordLogError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
        Ok(RecordLog {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn batch_path(&self, number: u64) -> std::path::PathBuf {
        self.dir.join(format!("{number:012}.rec"))
    }

    fn write(&self, path: std::path::PathBuf, bytes: &[u8]) -> Result<(), RecordLogError> {
        use std::io::Write;
        let temporary = path.with_extension("tmp");
        let io = |error| RecordLogError::Io {
            path: temporary.clone(),
            error,
        };
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(|error| RecordLogError::Io { path, error })
    }

    fn read_file(&self, path: &std::path::Path) -> Result<Option<Vec<u8>>, RecordLogError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(RecordLogError::Io {
                path: path.to_path_buf(),
                error,
            }),
        }
    }

    /// Writes the genesis accounts (as one diff over the empty state).
    pub fn write_genesis(&self, genesis: &StateDiff) -> Result<(), RecordLogError> {
        self.write(self.dir.join(GENESIS_FILE), &genesis.to_bytes())
    }

    /// Writes the record of a batch.
    pub fn append(&self, record: &ExecutionRecord) -> Result<(), RecordLogError> {
        self.write(self.batch_path(record.number), &record.to_bytes())
    }

    /// The genesis accounts, if written.
    pub fn genesis(&self) -> Result<Option<StateDiff>, RecordLogError> {
        let path = self.dir.join(GENESIS_FILE);
        self.read_file(&path)?
            .map(|bytes| {
                StateDiff::from_bytes(&bytes)
                    .map_err(|error| RecordLogError::Decode { path, error })
            })
            .transpose()
    }

    /// The record of batch `number`, if written.
    pub fn record(&self, number: u64) -> Result<Option<ExecutionRecord>, RecordLogError> {
        let path = self.batch_path(number);
        let Some(bytes) = self.read_file(&path)? else {
            return Ok(None);
        };
        let record =
            ExecutionRecord::from_bytes(&bytes).map_err(|error| RecordLogError::Decode {
                path: path.clone(),
                error,
            })?;
        if record.number != number {
            return Err(RecordLogError::Misplaced {
                path,
                found: record.number,
            });
        }
        Ok(Some(record))
    }
}
