//! The Web3 JSON-RPC gateway's inputs: request bodies, the parameters its methods parse from
//! them, and the raw transactions of `eth_sendRawTransaction`, which become moves.
//!
//! The gateway itself lives in `sequencer` (built on RocksDB); this harness runs the same
//! parsing: jsonrpsee's request type, the parameter types each method reads in the same order,
//! and [`primitives::ethereum::decode_envelope`], which the gateway calls on every raw
//! transaction after bounding its length.

use std::fmt::Debug;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rpc_types_eth::{BlockNumberOrTag, Filter, TransactionRequest};
use jsonrpsee_types::{Params, Request};
use primitives::ethereum::{decode_envelope, ethereum_envelope};
use serde::{Serialize, de::DeserializeOwned};

/// The gateway's bound on a raw transaction (`sequencer::constants::MOVE_BYTES_MAX`).
pub const MOVE_BYTES_MAX: usize = 64 * 1024;

/// The bytes as a raw transaction and as a JSON-RPC request body.
pub fn fuzz(data: &[u8]) {
    check_raw_transaction(data);
    if let Ok(request) = serde_json::from_slice::<Request<'_>>(data) {
        check_params(&request.method, request.params());
    }
}

/// What `eth_sendRawTransaction` does with its bytes: a decoded envelope is a move named by the
/// hash of exactly those bytes, and re-encoding the move gives an envelope that decodes to the
/// same move, signature and recovered sender.
pub fn check_raw_transaction(raw: &[u8]) {
    if raw.len() > MOVE_BYTES_MAX {
        return;
    }
    let Ok(decoded) = decode_envelope(raw) else {
        return;
    };
    assert_eq!(decoded.hash, alloy_primitives::keccak256(raw));
    let envelope = ethereum_envelope(&decoded.tx, &decoded.signature);
    let again = decode_envelope(&envelope).expect("a re-encoded envelope decodes");
    assert_eq!(again.tx, decoded.tx);
    assert_eq!(again.signature, decoded.signature);
    assert_eq!(again.sender, decoded.sender);
}

/// Parses the parameters of `method` as the gateway's handler does (a positional sequence of
/// these types); each parsed value survives a JSON round trip.
fn check_params(method: &str, params: Params<'_>) {
    let mut sequence = params.sequence();
    match method {
        "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" => {
            if let Ok(address) = sequence.next::<Address>() {
                round_trip(&address);
            }
        }
        "eth_getStorageAt" => {
            if let (Ok(address), Ok(slot)) = (sequence.next::<Address>(), sequence.next::<U256>()) {
                round_trip(&address);
                round_trip(&slot);
            }
        }
        "eth_sendRawTransaction" => {
            if let Ok(raw) = sequence.next::<Bytes>() {
                round_trip(&raw);
                check_raw_transaction(&raw);
            }
        }
        "eth_call" | "eth_estimateGas" | "eth_createAccessList" => {
            if let Ok(request) = sequence.next::<TransactionRequest>() {
                round_trip(&request);
            }
        }
        "eth_feeHistory" => {
            if let (Ok(count), Ok(newest)) = (
                sequence.next::<alloy_primitives::U64>(),
                sequence.next::<BlockNumberOrTag>(),
            ) {
                round_trip(&count);
                round_trip(&newest);
                let _ = sequence.optional_next::<Vec<f64>>();
            }
        }
        "eth_getLogs" => {
            if let Ok(filter) = sequence.next::<Filter>() {
                round_trip(&filter);
            }
        }
        "eth_getTransactionByHash" | "eth_getTransactionReceipt" | "eth_getBlockByHash" => {
            if let Ok(hash) = sequence.next::<B256>() {
                round_trip(&hash);
                let _ = sequence.optional_next::<bool>();
            }
        }
        "eth_getBlockByNumber" => {
            if let Ok(tag) = sequence.next::<BlockNumberOrTag>() {
                round_trip(&tag);
                let _ = sequence.optional_next::<bool>();
            }
        }
        _ => {}
    }
}

/// A value parsed from JSON serializes, and its JSON parses back to the same value.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_string(value).expect("a parsed value serializes");
    let again: T = serde_json::from_str(&json).expect("a serialized value parses");
    assert_eq!(&again, value);
}
