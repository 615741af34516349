//! `shard-node verify` as a library: replay execution records from their genesis and check
//! every group root the upper chain holds for a replayed batch.
//!
//! The records come from a [`RecordSource`]: a local [`RecordLog`] directory, or strong DA
//! ([`StrongDaRecords`], rebuilt from any k DA nodes by the commitments on the upper chain).
//! The replay itself is [`Verifier`]'s; this module finds the groups and their committed roots
//! and reports the first divergence, pinned to its batch and move.

use std::collections::{BTreeMap, BTreeSet};

use execution::{InMemoryState, StateDiff};
use primitives::{Address, B256, BlockBody, FinalizedBatch, constants::GROUP_SIZE};
use upper_chain::{ChainError, GroupRootCommitment, UpperChain, group_id};

use crate::{
    record::{Divergence, ExecutionRecord, RecordLog, RecordLogError, Verifier},
    strong_da::{StrongDaError, StrongDaReader},
};

/// Why records could not be read from their source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The local record log.
    #[error(transparent)]
    Log(#[from] RecordLogError),
    /// Strong DA.
    #[error(transparent)]
    StrongDa(Box<StrongDaError>),
}

impl From<StrongDaError> for SourceError {
    fn from(error: StrongDaError) -> Self {
        SourceError::StrongDa(Box::new(error))
    }
}

/// Where execution records are read from.
pub trait RecordSource {
    /// The genesis accounts the records start from, if the source holds them.
    fn genesis(&mut self) -> Result<Option<StateDiff>, SourceError>;
    /// The record of batch `number`, if the source holds it.
    fn record(&mut self, number: u64) -> Result<Option<ExecutionRecord>, SourceError>;
    /// Finalized batch `number`, if the source holds it (a record log does not), so the
    /// record's moves can be checked against it.
    fn batch(&mut self, _number: u64) -> Result<Option<FinalizedBatch>, SourceError> {
        Ok(None)
    }
}

impl RecordSource for RecordLog {
    fn genesis(&mut self) -> Result<Option<StateDiff>, SourceError> {
        Ok(RecordLog::genesis(self)?)
    }

    fn record(&mut self, number: u64) -> Result<Option<ExecutionRecord>, SourceError> {
        Ok(RecordLog::record(self, number)?)
    }
}

/// Records rebuilt from strong DA, each read once (the replay reads each twice: once to find
/// the addresses, once to replay). Its calls block on `runtime`, so make them off the
/// runtime's own threads (from `spawn_blocking`, or a thread that is not the runtime's).
pub struct StrongDaRecords {
    reader: StrongDaReader,
    runtime: tokio::runtime::Handle,
    cache: BTreeMap<u64, ExecutionRecord>,
}

impl std::fmt::Debug for StrongDaRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrongDaRecords")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl StrongDaRecords {
    /// Records read with `reader`, whose requests run on `runtime`.
    pub fn new(reader: StrongDaReader, runtime: tokio::runtime::Handle) -> Self {
        StrongDaRecords {
            reader,
            runtime,
            cache: BTreeMap::new(),
        }
    }
}

impl RecordSource for StrongDaRecords {
    fn genesis(&mut self) -> Result<Option<StateDiff>, SourceError> {
        Ok(self.runtime.block_on(self.reader.genesis())?)
    }

    fn record(&mut self, number: u64) -> Result<Option<ExecutionRecord>, SourceError> {
        if let Some(record) = self.cache.get(&number) {
            return Ok(Some(record.clone()));
        }
        let record = self.runtime.block_on(self.reader.record(number))?;
        if let Some(record) = &record {
            self.cache.insert(number, record.clone());
        }
        Ok(record)
    }

    fn batch(&mut self, number: u64) -> Result<Option<FinalizedBatch>, SourceError> {
        Ok(self.runtime.block_on(self.reader.batch(number))?)
    }
}

/// Why a verification did not pass.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The records could not be read.
    #[error("records: {0}")]
    Source(#[from] SourceError),
    /// The source holds no genesis.
    #[error("the records hold no genesis")]
    NoGenesis,
    /// The source holds no record of batch 1.
    #[error("the records hold no record of batch 1")]
    NoRecords,
    /// A record read once could not be read again.
    #[error("the record of batch {0} disappeared")]
    Disappeared(u64),
    /// The upper chain could not be read.
    #[error("upper chain: {0}")]
    Chain(#[from] ChainError),
    /// A committed root names a registry epoch the chain does not show.
    #[error("no registry of epoch {0}")]
    NoRegistry(u64),
    /// Re-execution parts from what was recorded or committed: the first such place.
    #[error("diverges: {0}")]
    Diverges(Divergence),
    /// The finalized batch the source holds is not the one the upper chain committed.
    #[error("batch {batch} in strong DA has hash {held}; the upper chain committed {committed}")]
    BatchMismatch {
        /// The batch.
        batch: u64,
        /// The hash of the batch the source holds.
        held: B256,
        /// The hash the chain committed.
        committed: B256,
    },
    /// A record's moves are not the finalized batch's: block `block` of the batch (or, at the
    /// batch's block count, what follows its last block) differs.
    #[error("the record of batch {batch} does not hold the finalized moves of block {block}")]
    MovesNotFinalized {
        /// The batch.
        batch: u64,
        /// The first block whose moves differ.
        block: usize,
    },
}

/// Checks that `record` holds exactly the moves of `batch`'s blocks, in order: each block's
/// share of the moves has the header's count and Merkle root. `Err(block)` names the first
/// block that differs.
fn check_moves(record: &ExecutionRecord, batch: &FinalizedBatch) -> Result<(), usize> {
    let mut moves = record.moves.iter().map(|recorded| recorded.signed.clone());
    for (index, header) in batch.batch.headers.iter().enumerate() {
        let count = header.move_count as usize;
        let body = BlockBody {
            moves: moves.by_ref().take(count).collect(),
        };
        if body.moves.len() != count || body.root() != header.root {
            return Err(index);
        }
    }
    match moves.next() {
        Some(_) => Err(batch.batch.headers.len()),
        None => Ok(()),
    }
}

/// What an honest verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Batches replayed (1 ..= this).
    pub batches: u64,
    /// Moves replayed.
    pub moves: usize,
    /// Group roots checked against the replay, in batch order.
    pub roots_checked: Vec<GroupRootCommitment>,
    /// Groups whose latest committed root is after the last replayed batch (not checked).
    pub roots_after: usize,
    /// Records whose moves were checked against their finalized batch (the source held it,
    /// and its hash is the one the chain committed, where the chain has committed it).
    pub batches_matched: u64,
}

/// Replays the records of `source` from its genesis through batch `through` (default: the last
/// record it holds) with moves signed for `moves_chain_id`, and checks every group root
/// `chain` holds for a replayed batch.
pub fn verify(
    source: &mut dyn RecordSource,
    chain: &dyn UpperChain,
    moves_chain_id: u64,
    through: Option<u64>,
) -> Result<VerifyReport, VerifyError> {
    let genesis = source.genesis()?.ok_or(VerifyError::NoGenesis)?;
    // Every address the records touch, to find the groups whose roots the chain holds.
    let mut addresses: BTreeSet<Address> = genesis.accounts.keys().copied().collect();
    let mut last = 0;
    while through.is_none_or(|through| last < through) {
        let Some(record) = source.record(last + 1)? else {
            break;
        };
        for recorded in &record.moves {
            addresses.extend(recorded.outcome.diff.accounts.keys().copied());
            addresses.extend(recorded.slice.accounts.keys().copied());
        }
        last += 1;
    }
    if last == 0 {
        return Err(VerifyError::NoRecords);
    }
    let current = chain.epoch()?;
    let mut snapshots = BTreeMap::new();
    let mut groups = BTreeSet::new();
    for epoch in 0..=current {
        let snapshot = chain.registry_snapshot(epoch)?;
        if snapshot.nodes.len() < GROUP_SIZE {
            continue;
        }
        for address in &addresses {
            groups.insert(group_id(&snapshot.group_of(address)));
        }
        snapshots.insert(epoch, snapshot);
    }
    let mut by_batch: BTreeMap<u64, Vec<GroupRootCommitment>> = BTreeMap::new();
    let mut report = VerifyReport::default();
    for group in &groups {
        if let Some(commitment) = chain.group_root(group)? {
            if commitment.batch > last {
                report.roots_after += 1;
            } else {
                by_batch
                    .entry(commitment.batch)
                    .or_default()
                    .push(commitment);
            }
        }
    }
    let mut state = InMemoryState::new();
    state.apply(&genesis);
    let mut verifier = Verifier::new(moves_chain_id, state);
    for number in 1..=last {
        let record = source
            .record(number)?
            .ok_or(VerifyError::Disappeared(number))?;
        report.moves += record.moves.len();
        if let Some(batch) = source.batch(number)? {
            let held = batch.batch.hash();
            if let Some(committed) = chain.batch_hash(number)?
                && committed != held
            {
                return Err(VerifyError::BatchMismatch {
                    batch: number,
                    held,
                    committed,
                });
            }
            check_moves(&record, &batch).map_err(|block| VerifyError::MovesNotFinalized {
                batch: number,
                block,
            })?;
            report.batches_matched += 1;
        }
        verifier.replay(&record).map_err(VerifyError::Diverges)?;
        for commitment in by_batch.remove(&number).into_iter().flatten() {
            let snapshot = snapshots
                .get(&commitment.epoch)
                .ok_or(VerifyError::NoRegistry(commitment.epoch))?;
            verifier
                .check_root(snapshot, &commitment)
                .map_err(VerifyError::Diverges)?;
            report.roots_checked.push(commitment);
        }
    }
    report.batches = last;
    Ok(report)
}
