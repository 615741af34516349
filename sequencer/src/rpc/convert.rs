//! Between Tickrate's records and Ethereum's JSON-RPC types.

use alloy_consensus::{
    Eip658Value, Receipt, ReceiptEnvelope, ReceiptWithBloom, TxEnvelope, transaction::Recovered,
};
use alloy_eips::eip2718::Decodable2718;
use alloy_rpc_types_eth::{
    AccessList, AccessListItem, AccessListResult, Block, BlockTransactions, FeeHistory, Header,
    Log, Transaction, TransactionReceipt, TransactionRequest,
};
use execution::{Estimate, InMemoryState};
use primitives::{Address, B256, SpaceAccessList, Transaction as Move, U256};

use super::chain::{BlockRecord, ChainView, NewBlock, ReceiptRecord, TransactionRecord};

/// The gas limit of a block, as clients see it: what one call may use at most.
const BLOCK_GAS_LIMIT: u64 = crate::constants::RPC_CALL_GAS_MAX;

/// The move a call request stands for, over `state`: its sender, the move (with the sender's
/// current nonce, so that revm's nonce check passes, and a zero gas price, so that no balance
/// is needed for fees) and whether it creates a contract.
pub(super) fn call_body(
    request: &TransactionRequest,
    chain_id: u64,
    gas_limit: u64,
    state: &InMemoryState,
) -> (Address, Move, bool) {
    let sender = request.from.unwrap_or_default();
    let nonce = state.account(&sender).map_or(0, |account| account.nonce);
    let (to, create) = match request.to {
        Some(alloy_primitives::TxKind::Call(to)) => (to, false),
        Some(alloy_primitives::TxKind::Create) | None => (sender.create(nonce), true),
    };
    let body = Move {
        chain_id,
        nonce,
        to,
        value: request.value.unwrap_or_default(),
        data: request.input.input().cloned().unwrap_or_default(),
        gas_limit,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::default(),
    };
    (sender, body, create)
}

/// `eth_createAccessList`: every account and slot the call touches, as its estimated Space
/// Access List names them, less the sender (Ethereum warms it implicitly).
pub(super) fn access_list_result(estimate: &Estimate, sender: Address) -> AccessListResult {
    let items = estimate
        .access_list
        .accounts()
        .iter()
        .filter(|account| account.address != sender)
        .map(|account| AccessListItem {
            address: account.address,
            storage_keys: account.storage.iter().map(|slot| slot.slot).collect(),
        })
        .collect();
    AccessListResult {
        access_list: AccessList(items),
        gas_used: U256::from(estimate.gas_used),
        error: estimate
            .status
            .as_ref()
            .err()
            .map(|reason| format!("execution failed: {reason:?}")),
    }
}

/// `eth_feeHistory` with no fees: `count` blocks ending at `newest`.
pub(super) fn fee_history(count: u64, newest: u64, percentiles: usize) -> FeeHistory {
    let count = count.min(newest + 1);
    let blocks = usize::try_from(count).unwrap_or(0);
    FeeHistory {
        base_fee_per_gas: vec![0; blocks + 1],
        gas_used_ratio: vec![0.0; blocks],
        base_fee_per_blob_gas: Vec::new(),
        blob_gas_used_ratio: Vec::new(),
        oldest_block: newest + 1 - count,
        reward: (percentiles > 0).then(|| vec![vec![0; percentiles]; blocks]),
    }
}

fn envelope(record: &TransactionRecord) -> Option<TxEnvelope> {
    TxEnvelope::decode_2718(&mut record.envelope.as_ref()).ok()
}

/// A transaction as `eth_getTransactionByHash` returns it.
pub(super) fn rpc_transaction(
    chain: &ChainView,
    record: &TransactionRecord,
) -> Option<Transaction> {
    let receipt = record.receipt.as_ref();
    Some(Transaction {
        inner: Recovered::new_unchecked(envelope(record)?, record.sender),
        block_hash: receipt.map(|receipt| receipt.block_hash),
        block_number: receipt.map(|receipt| receipt.block_number),
        transaction_index: receipt.map(|receipt| receipt.index),
        effective_gas_price: Some(record.gas_price),
        block_timestamp: receipt
            .and_then(|receipt| chain.block(receipt.block_number))
            .map(|block| block.timestamp),
    })
}

fn rpc_log(log: &alloy_primitives::Log, hash: B256, receipt: &ReceiptRecord, offset: usize) -> Log {
    Log {
        inner: log.clone(),
        block_hash: Some(receipt.block_hash),
        block_number: Some(receipt.block_number),
        block_timestamp: Some(receipt.block_number),
        transaction_hash: Some(hash),
        transaction_index: Some(receipt.index),
        log_index: Some(receipt.first_log_index + offset as u64),
        removed: false,
    }
}

/// A receipt as `eth_getTransactionReceipt` returns it; `None` until the batch executed.
pub(super) fn rpc_receipt(
    _chain: &ChainView,
    hash: B256,
    record: &TransactionRecord,
) -> Option<TransactionReceipt> {
    let receipt = record.receipt.as_ref()?;
    let envelope = envelope(record)?;
    let logs: Vec<Log> = receipt
        .logs
        .iter()
        .enumerate()
        .map(|(offset, log)| rpc_log(log, hash, receipt, offset))
        .collect();
    let logs_bloom = alloy_primitives::logs_bloom(receipt.logs.iter());
    let with_bloom = ReceiptWithBloom {
        receipt: Receipt {
            status: Eip658Value::Eip658(receipt.success),
            cumulative_gas_used: receipt.cumulative_gas_used,
            logs,
        },
        logs_bloom,
    };
    let inner = match &envelope {
        TxEnvelope::Legacy(_) => ReceiptEnvelope::Legacy(with_bloom),
        TxEnvelope::Eip2930(_) => ReceiptEnvelope::Eip2930(with_bloom),
        _ => ReceiptEnvelope::Eip1559(with_bloom),
    };
    Some(TransactionReceipt {
        inner,
        transaction_hash: hash,
        transaction_index: Some(receipt.index),
        block_hash: Some(receipt.block_hash),
        block_number: Some(receipt.block_number),
        gas_used: receipt.gas_used,
        effective_gas_price: record.gas_price,
        blob_gas_used: None,
        blob_gas_price: None,
        from: record.sender,
        to: match record.created {
            Some(_) => None,
            None => alloy_consensus::Transaction::to(&envelope),
        },
        contract_address: record.created,
    })
}

/// The header of a block.
pub(super) fn rpc_header(_chain: &ChainView, block: &BlockRecord) -> Header {
    let inner = alloy_consensus::Header {
        parent_hash: block.parent_hash,
        number: block.number,
        gas_limit: BLOCK_GAS_LIMIT,
        gas_used: block.gas_used,
        timestamp: block.timestamp,
        base_fee_per_gas: Some(0),
        ..alloy_consensus::Header::default()
    };
    Header {
        hash: block.hash,
        inner,
        total_difficulty: Some(U256::ZERO),
        size: None,
    }
}

/// A block with its transactions' hashes, or the transactions if `full`.
pub(super) fn rpc_block(chain: &ChainView, block: &BlockRecord, full: bool) -> Block {
    let transactions = if full {
        BlockTransactions::Full(
            block
                .transactions
                .iter()
                .filter_map(|hash| chain.transaction(hash))
                .filter_map(|record| rpc_transaction(chain, record))
                .collect(),
        )
    } else {
        BlockTransactions::Hashes(block.transactions.clone())
    };
    Block {
        header: rpc_header(chain, block),
        uncles: Vec::new(),
        transactions,
        withdrawals: None,
    }
}

/// Every log of a new block, in order.
pub(super) fn rpc_logs(new_block: &NewBlock) -> Vec<Log> {
    block_logs(&new_block.receipts)
}

/// Every log of a block's transactions, given with their receipts, in order.
pub(super) fn block_logs(receipts: &[(B256, ReceiptRecord)]) -> Vec<Log> {
    receipts
        .iter()
        .flat_map(|(hash, receipt)| {
            receipt
                .logs
                .iter()
                .enumerate()
                .map(|(offset, log)| rpc_log(log, *hash, receipt, offset))
        })
        .collect()
}
