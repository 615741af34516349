//! What the JSON-RPC gateway knows of the chain: the executed state, one Ethereum block per
//! executed batch, and the Ethereum transactions it submitted with their receipts.
//!
//! A sans-IO follower: it is given genesis and then every [`ExecutedBatch`] in order, and applies
//! each move's diff as the shard groups reported it, so that its state is the state every group
//! agreed on as of the last batch (the `Executed` level). It never executes a move itself: eth_call
//! and estimation run over this state, but nothing they do is kept.
//!
//! It also keeps the declared writes of the moves this gateway submitted that have not executed
//! yet, in submission order ([`ChainView::admit_pending`]), so that estimation can run over the
//! executed state with those writes on top ([`ChainView::with_pending`]): a sender's second
//! move, estimated while its first is pending, sees the slots the first one writes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use execution::{AccountDiff, AccountState, ExecutedBatch, InMemoryState, StateDiff};
use primitives::{
    Address, B256, Bytes, DeclaredWrite, TxHash, U256, finality::StateItem, keccak256,
};

use crate::constants::{
    RPC_BLOCKS_KEPT_MAX, RPC_PENDING_BLOCKS_MAX, RPC_PENDING_MOVES_MAX, RPC_TRANSACTIONS_KEPT_MAX,
};

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
    /// Each kept block's transactions and receipts, for `eth_getLogs`.
    receipts_by_block: HashMap<u64, Vec<(B256, ReceiptRecord)>>,
    /// Submitted moves not yet executed, in submission order: move hash, the head when
    /// submitted, and the move's declared writes (its sender's nonce included).
    pending: VecDeque<PendingWrites>,
}

/// The declared writes of one submitted move that has not executed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingWrites {
    move_hash: TxHash,
    head_when_submitted: u64,
    writes: Vec<(StateItem, DeclaredWrite)>,
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
            receipts_by_block: HashMap::new(),
            pending: VecDeque::new(),
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

    /// Forgets a transaction the sequencer refused, and its pending writes.
    pub fn forget(&mut self, hash: &B256) {
        if let Some(record) = self.transactions.remove(hash) {
            self.by_move.remove(&record.move_hash);
            self.recorded.retain(|recorded| recorded != hash);
            self.pending
                .retain(|pending| pending.move_hash != record.move_hash);
        }
    }

    /// Keeps a submitted move's declared writes until its batch executes (or the move is
    /// forgotten). The oldest are dropped past [`RPC_PENDING_MOVES_MAX`], and any move still
    /// unexecuted [`RPC_PENDING_BLOCKS_MAX`] blocks after it was submitted (it was lost).
    pub fn admit_pending(&mut self, move_hash: TxHash, writes: Vec<(StateItem, DeclaredWrite)>) {
        while self.pending.len() >= RPC_PENDING_MOVES_MAX {
            self.pending.pop_front();
        }
        self.pending.push_back(PendingWrites {
            move_hash,
            head_when_submitted: self.head,
            writes,
        });
    }

    /// Submitted moves whose writes are pending.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Runs `run` over the executed state with the pending writes on top, in submission order
    /// (a delta adds to what the writes before it left), and with `nonce_floor`'s account at
    /// least at that nonce (the sequencer's pending nonce, which also counts moves sent by
    /// other ways). The executed state is exactly as before once `run` returns.
    pub fn with_pending<R>(
        &mut self,
        nonce_floor: Option<(Address, u64)>,
        run: impl FnOnce(&InMemoryState, u64) -> R,
    ) -> R {
        let mut saved: Vec<(StateItem, U256)> = Vec::new();
        let mut seen: std::collections::HashSet<StateItem> = std::collections::HashSet::new();
        let floor = nonce_floor.map(|(address, nonce)| {
            (
                StateItem::Nonce(address),
                DeclaredWrite::Exact(U256::from(nonce)),
            )
        });
        let writes = self
            .pending
            .iter()
            .flat_map(|pending| pending.writes.iter().copied())
            .collect::<Vec<_>>();
        for (item, write) in writes.into_iter().chain(floor) {
            let before = item_value(&self.state, item);
            if seen.insert(item) {
                saved.push((item, before));
            }
            let mut after = write.apply(before);
            if let (Some((address, _)), StateItem::Nonce(written)) = (nonce_floor, item)
                && address == written
            {
                // The floor only ever raises a nonce.
                after = after.max(before);
            }
            set_item(&mut self.state, item, after);
        }
        let result = run(&self.state, self.head);
        for (item, value) in saved.into_iter().rev() {
            set_item(&mut self.state, item, value);
        }
        result
    }

    /// The transactions and receipts of a kept block, for its logs.
    pub fn block_receipts(&self, number: u64) -> Option<&[(B256, ReceiptRecord)]> {
        self.receipts_by_block.get(&number).map(Vec::as_slice)
    }

    /// The oldest block still kept.
    pub fn oldest_kept(&self) -> u64 {
        self.blocks.keys().next().copied().unwrap_or(self.head)
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
        let executed: std::collections::HashSet<TxHash> =
            batch.outcomes.iter().map(|outcome| outcome.hash).collect();
        let head = self.head;
        self.pending.retain(|pending| {
            !executed.contains(&pending.move_hash)
                && head - pending.head_when_submitted <= RPC_PENDING_BLOCKS_MAX
        });
        self.receipts_by_block
            .insert(batch.number, receipts.clone());
        self.keep_block(block.clone());
        Some(NewBlock { block, receipts })
    }

    fn keep_block(&mut self, block: BlockRecord) {
        self.numbers_by_hash.insert(block.hash, block.number);
        self.blocks.insert(block.number, block);
        while self.blocks.len() > RPC_BLOCKS_KEPT_MAX {
            if let Some((_, oldest)) = self.blocks.pop_first() {
                self.numbers_by_hash.remove(&oldest.hash);
                self.receipts_by_block.remove(&oldest.number);
            }
        }
    }
}

/// An item's value in `state` (code is not an item estimation overlays: it reads zero).
fn item_value(state: &InMemoryState, item: StateItem) -> U256 {
    match item {
        StateItem::Balance(address) => state
            .account(&address)
            .map(|account| account.balance)
            .unwrap_or_default(),
        StateItem::Nonce(address) => U256::from(
            state
                .account(&address)
                .map(|account| account.nonce)
                .unwrap_or_default(),
        ),
        StateItem::Storage(address, slot) => state.storage(&address, &slot),
        StateItem::Code(_) => U256::ZERO,
    }
}

/// Sets one item of `state`.
fn set_item(state: &mut InMemoryState, item: StateItem, value: U256) {
    let (address, change) = match item {
        StateItem::Balance(address) => (
            address,
            AccountDiff {
                balance: Some(value),
                ..AccountDiff::default()
            },
        ),
        StateItem::Nonce(address) => (
            address,
            AccountDiff {
                nonce: Some(value.saturating_to()),
                ..AccountDiff::default()
            },
        ),
        StateItem::Storage(address, slot) => (
            address,
            AccountDiff {
                storage: BTreeMap::from([(slot, value)]),
                ..AccountDiff::default()
            },
        ),
        StateItem::Code(_) => return,
    };
    state.apply(&StateDiff {
        accounts: BTreeMap::from([(address, change)]),
    });
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
    use execution::MoveOutcome;
    use primitives::FailureReason;

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

    /// `slot[0] += 1`.
    const BUMP_CODE: [u8; 10] = [0x60, 0x01, 0x60, 0x00, 0x54, 0x01, 0x60, 0x00, 0x55, 0x00];

    #[test]
    fn estimation_sees_the_pending_writes_of_submitted_moves_until_they_execute() {
        let contract = Address::repeat_byte(0xb0);
        let mut view = ChainView::new([
            (
                SENDER,
                AccountState {
                    balance: U256::from(1_000_000),
                    ..AccountState::default()
                },
            ),
            (
                contract,
                AccountState {
                    nonce: 1,
                    code: Bytes::from_static(&BUMP_CODE),
                    ..AccountState::default()
                },
            ),
        ]);
        let env = execution::ExecutionEnv {
            chain_id: 7,
            block_number: 1,
            timestamp: 1,
        };
        let bump = |nonce: u64| primitives::Transaction {
            chain_id: 7,
            nonce,
            to: contract,
            value: U256::ZERO,
            data: Bytes::new(),
            gas_limit: 100_000,
            gas_price: 0,
            sponsor: None,
            access_list: primitives::SpaceAccessList::default(),
        };
        let declared_slot = |list: &primitives::SpaceAccessList| {
            list.account(&contract)
                .and_then(|account| account.slot(&B256::ZERO))
                .and_then(|slot| slot.write)
        };
        let estimate = |view: &mut ChainView, nonce: u64| {
            view.with_pending(Some((SENDER, nonce)), |state, _| {
                execution::estimate(&env, SENDER, &bump(nonce), state, &[])
            })
        };

        let first = estimate(&mut view, 0);
        assert_eq!(first.status, Ok(()));
        assert_eq!(
            declared_slot(&first.access_list),
            Some(DeclaredWrite::Exact(U256::from(1)))
        );
        // The first move is submitted; its writes (nonce and slot) are pending.
        let first_hash = B256::repeat_byte(0x51);
        view.admit_pending(
            first_hash,
            vec![
                (
                    StateItem::Nonce(SENDER),
                    DeclaredWrite::Exact(U256::from(1)),
                ),
                (
                    StateItem::Storage(contract, B256::ZERO),
                    DeclaredWrite::Exact(U256::from(1)),
                ),
            ],
        );
        let second = estimate(&mut view, 1);
        assert_eq!(second.status, Ok(()));
        assert_eq!(
            declared_slot(&second.access_list),
            Some(DeclaredWrite::Exact(U256::from(2))),
            "the second move is declared against the first one's pending write"
        );
        // Estimation changed nothing of the executed state.
        assert_eq!(view.state().storage(&contract, &B256::ZERO), U256::ZERO);
        assert_eq!(view.state().account(&SENDER).map(|a| a.nonce), Some(0));

        // The first move executes: its writes leave the overlay and come in as executed.
        let batch = ExecutedBatch {
            number: 1,
            outcomes: vec![MoveOutcome {
                hash: first_hash,
                status: Ok(()),
                gas_used: 30_000,
                logs: Vec::new(),
                diff: StateDiff {
                    accounts: BTreeMap::from([
                        (
                            SENDER,
                            AccountDiff {
                                nonce: Some(1),
                                ..AccountDiff::default()
                            },
                        ),
                        (
                            contract,
                            AccountDiff {
                                storage: BTreeMap::from([(B256::ZERO, U256::from(1))]),
                                ..AccountDiff::default()
                            },
                        ),
                    ]),
                },
            }],
        };
        view.handle_executed(&batch).expect("a new block");
        assert_eq!(view.pending_len(), 0);
        assert_eq!(
            declared_slot(&estimate(&mut view, 1).access_list),
            Some(DeclaredWrite::Exact(U256::from(2)))
        );
        assert_eq!(view.block_receipts(1), Some(&[][..]));
    }

    #[test]
    fn a_forgotten_move_takes_its_pending_writes_with_it() {
        let mut view = ChainView::new([]);
        let (ethereum, move_hash) = (B256::repeat_byte(0xee), B256::repeat_byte(0x11));
        view.record(ethereum, record(move_hash));
        view.admit_pending(
            move_hash,
            vec![(
                StateItem::Balance(SENDER),
                DeclaredWrite::Exact(U256::from(5)),
            )],
        );
        let seen = view.with_pending(None, |state, _| {
            state.account(&SENDER).map(|account| account.balance)
        });
        assert_eq!(seen, Some(U256::from(5)));
        view.forget(&ethereum);
        assert_eq!(view.pending_len(), 0);
        assert_eq!(
            view.with_pending(None, |state, _| state.account(&SENDER).cloned()),
            None
        );
    }
}
