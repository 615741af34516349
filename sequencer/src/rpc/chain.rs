//! What the JSON-RPC gateway knows of the chain: the executed state, one Ethereum block per
//! executed batch, and the Ethereum transactions it submitted with their receipts.
//!
//! A sans-IO follower: it is given genesis and then every [`ExecutedBatch`] in order, and applies
//! each move's diff as the shard groups reported it, so that its state is the state every group
//! agreed on as of the last batch (the `Executed` level). It never executes a move itself: eth_call
//! and estimation run over this state, but nothing they do is kept.

use std::collections::{BTreeMap, HashMap, VecDeque};

use execution::{AccountState, ExecutedBatch, InMemoryState};
use primitives::{Address, B256, Bytes, TxHash, keccak256};

use crate::constants::{RPC_BLOCKS_KEPT_MAX, RPC_TRANSACTIONS_KEPT_MAX};

/// One Ethereum block: an executed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    /// The batch number.
    pub number: u64,
    /// keccak-256 of the domain, the number and the batch's move hashes.
    pub hash: B256,
    /// The previous block's hash (zero for the first).
    pub parent_hash: B256,
    /// The batch's `TIMESTAMP` (execution uses the batch number).
    pub timestamp: u64,
    /// Ethereum hashes of the transactions this gateway submitted that the batch holds, in
    /// batch order. Native moves have no Ethereum hash and are not listed.
    pub transactions: Vec<B256>,
    /// Gas those transactions used.
    pub gas_used: u64,
}

/// The outcome of a transaction, once its batch has executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// The block (batch) number.
    pub block_number: u64,
    /// The block's hash.
    pub block_hash: B256,
    /// Position among the block's listed transactions.
    pub index: u64,
    /// Whether the move took effect.
    pub success: bool,
    /// Gas it used.
    pub gas_used: u64,
    /// Gas used by the block's listed transactions up to and including this one.
    pub cumulative_gas_used: u64,
    /// Its logs (empty for a failed move).
    pub logs: Vec<alloy_primitives::Log>,
    /// Index in the block of its first log.
    pub first_log_index: u64,
}

/// An Ethereum transaction this gateway submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionRecord {
    /// The signed envelope, as received.
    pub envelope: Bytes,
    /// Its sender.
    pub sender: Address,
    /// The move's (Tickrate) hash.
    pub move_hash: TxHash,
    /// The price it pays per gas.
    pub gas_price: u128,
    /// For a creation, the created address.
    pub created: Option<Address>,
    /// Set once its batch has executed.
    pub receipt: Option<ReceiptRecord>,
}

/// A new block and the logs of its transactions, for subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBlock {
    /// The block.
    pub block: BlockRecord,
    /// Each listed transaction's Ethereum hash and receipt, in order.
    pub receipts: Vec<(B256, ReceiptRecord)>,
}

/// The gateway's view of the chain.
#[derive(Debug)]
pub struct ChainView {
    state: InMemoryState,
    head: u64,
    head_hash: B256,
    blocks: BTreeMap<u64, BlockRecord>,
    numbers_by_hash: HashMap<B256, u64>,
    transactions: HashMap<B256, TransactionRecord>,
    by_move: HashMap<TxHash, B256>,
    /// Ethereum hashes in the order they were recorded, to forget the oldest first.
    recorded: VecDeque<B256>,
}

const BLOCK_DOMAIN: &[u8] = b"tickrate:block";

impl ChainView {
    /// The view at genesis (block 0).
    pub fn new(genesis: impl IntoIterator<Item = (Address, AccountState)>) -> Self {
        let mut state = InMemoryState::new();
        for (address, account) in genesis {
            state.insert_account(address, account);
        }
        let genesis_block = BlockRecord {
            number: 0,
            hash: block_hash(0, std::iter::empty()),
            parent_hash: B256::ZERO,
            timestamp: 0,
            transactions: Vec::new(),
            gas_used: 0,
        };
        let mut view = ChainView {
            state,
            head: 0,
            head_hash: genesis_block.hash,
            blocks: BTreeMap::new(),
            numbers_by_hash: HashMap::new(),
            transactions: HashMap::new(),
            by_move: HashMap::new(),
            recorded: VecDeque::new(),
        };
        view.keep_block(genesis_block);
        view
    }

    /// The executed state as of the head.
    pub fn state(&self) -> &InMemoryState {
        &self.state
    }

    /// The last executed batch (0 before the first).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// A kept block by number.
    pub fn block(&self, number: u64) -> Option<&BlockRecord> {
        self.blocks.get(&number)
    }

    /// A kept block by hash.
    pub fn block_by_hash(&self, hash: &B256) -> Option<&BlockRecord> {
        self.numbers_by_hash
            .get(hash)
            .and_then(|number| self.blocks.get(number))
    }

    /// A transaction this gateway submitted, by Ethereum hash.
    pub fn transaction(&self, hash: &B256) -> Option<&TransactionRecord> {
        self.transactions.get(hash)
    }

    /// Records a transaction the sequencer acked; the oldest is forgotten past the bound.
    pub fn record(&mut self, hash: B256, record: TransactionRecord) {
        if self.transactions.contains_key(&hash) {
            return;
        }
        while self.recorded.len() >= RPC_TRANSACTIONS_KEPT_MAX {
            let Some(oldest) = self.recorded.pop_front() else {
                break;
            };
            if let Some(forgotten) = self.transactions.remove(&oldest) {
                self.by_move.remove(&forgotten.move_hash);
            }
        }
        self.by_move.insert(record.move_hash, hash);
        self.transactions.insert(hash, record);
        self.recorded.push_back(hash);
    }

    /// Forgets a transaction the sequencer refused.
    pub fn forget(&mut self, hash: &B256) {
        if let Some(record) = self.transactions.remove(hash) {
            self.by_move.remove(&record.move_hash);
            self.recorded.retain(|recorded| recorded != hash);
        }
    }

    /// The executed state, to change for a moment (see `convert::estimate_with_pending`).
    pub(crate) fn state_mut(&mut self) -> &mut InMemoryState {
        &mut self.state
    }

    /// Applies an executed batch: its diffs go into the state, it becomes a block, and the
    /// transactions of this gateway it holds get their receipts. Batches must come in order; a
    /// repeated or older batch changes nothing and yields `None`.
    pub fn handle_executed(&mut self, batch: &ExecutedBatch) -> Option<NewBlock> {
        if batch.number <= self.head {
            return None;
        }
        let hash = block_hash(
            batch.number,
            batch.outcomes.iter().map(|outcome| outcome.hash),
        );
        let mut block = BlockRecord {
            number: batch.number,
            hash,
            parent_hash: self.head_hash,
            timestamp: batch.number,
            transactions: Vec::new(),
            gas_used: 0,
        };
        let mut receipts = Vec::new();
        let mut log_index = 0u64;
        for outcome in &batch.outcomes {
            self.state.apply(&outcome.diff);
            let Some(ethereum_hash) = self.by_move.get(&outcome.hash).copied() else {
                continue;
            };
            let Some(record) = self.transactions.get_mut(&ethereum_hash) else {
                continue;
            };
            block.gas_used += outcome.gas_used;
            let receipt = ReceiptRecord {
                block_number: batch.number,
                block_hash: hash,
                index: block.transactions.len() as u64,
                success: outcome.is_success(),
                gas_used: outcome.gas_used,
                cumulative_gas_used: block.gas_used,
                logs: outcome.logs.clone(),
                first_log_index: log_index,
            };
            log_index += outcome.logs.len() as u64;
            record.receipt = Some(receipt.clone());
            block.transactions.push(ethereum_hash);
            receipts.push((ethereum_hash, receipt));
        }
        self.head = batch.number;
        self.head_hash = hash;
        self.keep_block(block.clone());
        Some(NewBlock { block, receipts })
    }

    fn keep_block(&mut self, block: BlockRecord) {
        self.numbers_by_hash.insert(block.hash, block.number);
        self.blocks.insert(block.number, block);
        while self.blocks.len() > RPC_BLOCKS_KEPT_MAX {
            if let Some((_, oldest)) = self.blocks.pop_first() {
                self.numbers_by_hash.remove(&oldest.hash);
            }
        }
    }
}

fn block_hash(number: u64, moves: impl Iterator<Item = TxHash>) -> B256 {
    let mut bytes = Vec::with_capacity(BLOCK_DOMAIN.len() + 8 + 32 * 16);
    bytes.extend_from_slice(BLOCK_DOMAIN);
    bytes.extend_from_slice(&number.to_be_bytes());
    for hash in moves {
        bytes.extend_from_slice(hash.as_slice());
    }
    keccak256(&bytes)
}

#[cfg(test)]
mod tests {
    use execution::{AccountDiff, MoveOutcome, StateDiff};
    use primitives::{FailureReason, U256};

    use super::*;

    const SENDER: Address = Address::repeat_byte(1);

    fn outcome(hash: TxHash, status: Result<(), FailureReason>, balance: u64) -> MoveOutcome {
        MoveOutcome {
            hash,
            status,
            gas_used: 21_000,
            logs: vec![alloy_primitives::Log::new_unchecked(
                SENDER,
                vec![B256::repeat_byte(7)],
                Bytes::new(),
            )],
            diff: StateDiff {
                accounts: BTreeMap::from([(
                    SENDER,
                    AccountDiff {
                        balance: Some(U256::from(balance)),
                        ..AccountDiff::default()
                    },
                )]),
            },
        }
    }

    fn record(move_hash: TxHash) -> TransactionRecord {
        TransactionRecord {
            envelope: Bytes::new(),
            sender: SENDER,
            move_hash,
            gas_price: 0,
            created: None,
            receipt: None,
        }
    }

    #[test]
    fn an_executed_batch_becomes_a_block_with_receipts_for_known_transactions() {
        let mut view = ChainView::new([(
            SENDER,
            AccountState {
                balance: U256::from(100),
                ..AccountState::default()
            },
        )]);
        let (ours, native) = (B256::repeat_byte(0xaa), B256::repeat_byte(0xbb));
        let ethereum = B256::repeat_byte(0xee);
        view.record(ethereum, record(ours));
        let batch = ExecutedBatch {
            number: 1,
            outcomes: vec![outcome(native, Ok(()), 90), outcome(ours, Ok(()), 80)],
        };
        let new_block = view.handle_executed(&batch).expect("a new block");
        assert_eq!(view.head(), 1);
        assert_eq!(new_block.block.transactions, vec![ethereum]);
        assert_eq!(
            new_block.block.parent_hash,
            view.block(0).expect("genesis").hash
        );
        assert_eq!(
            view.state().account(&SENDER).expect("funded").balance,
            U256::from(80)
        );
        let receipt = view
            .transaction(&ethereum)
            .and_then(|record| record.receipt.clone())
            .expect("a receipt");
        assert!(receipt.success);
        assert_eq!((receipt.index, receipt.first_log_index), (0, 0));
        assert_eq!(receipt.cumulative_gas_used, 21_000);
        assert_eq!(
            view.block_by_hash(&receipt.block_hash),
            Some(&new_block.block)
        );

        // A batch delivered again changes nothing.
        assert_eq!(view.handle_executed(&batch), None);
        assert_eq!(
            view.state().account(&SENDER).expect("funded").balance,
            U256::from(80)
        );
    }

    #[test]
    fn a_failed_move_gets_a_failed_receipt_and_a_refused_one_is_forgotten() {
        let mut view = ChainView::new([]);
        let (failed, refused) = (B256::repeat_byte(1), B256::repeat_byte(2));
        view.record(B256::repeat_byte(0x10), record(failed));
        view.record(B256::repeat_byte(0x20), record(refused));
        view.forget(&B256::repeat_byte(0x20));
        assert!(view.transaction(&B256::repeat_byte(0x20)).is_none());
        let batch = ExecutedBatch {
            number: 1,
            outcomes: vec![
                outcome(failed, Err(FailureReason::Reverted), 0),
                outcome(refused, Ok(()), 0),
            ],
        };
        let new_block = view.handle_executed(&batch).expect("a new block");
        assert_eq!(new_block.block.transactions, vec![B256::repeat_byte(0x10)]);
        let receipt = &new_block.receipts[0].1;
        assert!(!receipt.success);
    }
}
