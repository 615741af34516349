//! The gateway's errors: why it could not start, and the JSON-RPC error objects of its methods
//! (EIP-1474 codes).

use jsonrpsee::types::ErrorObjectOwned;
use primitives::api::Refusal;

/// Invalid method parameters (JSON-RPC 2.0).
pub const INVALID_PARAMS: i32 = -32602;
/// Internal error (JSON-RPC 2.0).
pub const INTERNAL_ERROR: i32 = -32603;
/// Missing or invalid input: a bad nonce, chain id or signature (EIP-1474; geth's code for
/// "nonce too low" and the like).
pub const INVALID_INPUT: i32 = -32000;
/// The transaction was rejected (EIP-1474).
pub const TRANSACTION_REJECTED: i32 = -32003;
/// A rate or capacity limit was hit; retry later (EIP-1474).
pub const LIMIT_EXCEEDED: i32 = -32005;
/// A call reverted; the error's data is the revert data (geth's convention).
pub const EXECUTION_REVERTED: i32 = 3;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The listening socket.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A method registered twice (a bug in this module).
    #[error("method registration: {0}")]
    Register(#[from] jsonrpsee::core::RegisterMethodError),
    /// The sequencer's core stopped before the gateway opened.
    #[error("the sequencer has stopped")]
    SequencerStopped,
}

pub(crate) fn invalid_params(message: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(INVALID_PARAMS, message.to_string(), None)
}

pub(crate) fn internal(error: &dyn std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(INTERNAL_ERROR, error.to_string(), None)
}

pub(crate) fn invalid_input(message: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(INVALID_INPUT, message.to_string(), None)
}

pub(crate) fn rejected(error: &dyn std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(
        TRANSACTION_REJECTED,
        format!("transaction rejected: {error}"),
        None,
    )
}

pub(crate) fn limit_exceeded(message: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(LIMIT_EXCEEDED, message.to_string(), None)
}

/// A limit was exceeded; the error's data is the limit, so a client can split its query.
pub(crate) fn limit_exceeded_with(message: &str, limit: u64) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(LIMIT_EXCEEDED, message.to_string(), Some(limit))
}

pub(crate) fn reverted(data: &primitives::Bytes) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        EXECUTION_REVERTED,
        "execution reverted".to_string(),
        Some(data.clone()),
    )
}

/// The error of a move the sequencer refused. Messages start as geth's do ("nonce too low"),
/// since some clients match on them.
pub(crate) fn refusal_error(refusal: &Refusal) -> ErrorObjectOwned {
    match refusal {
        Refusal::BadNonce { expected, got } if got < expected => invalid_input(&format!(
            "nonce too low: next nonce {expected}, tx nonce {got}"
        )),
        Refusal::BadNonce { expected, got } => invalid_input(&format!(
            "nonce too high: next nonce {expected}, tx nonce {got}"
        )),
        Refusal::WrongChain { expected, got } => {
            invalid_input(&format!("invalid chain id {got}, expected {expected}"))
        }
        Refusal::BadSignature => invalid_input("invalid sender: bad signature"),
        Refusal::MempoolFull | Refusal::RateLimited => limit_exceeded(&refusal.to_string()),
        // geth's words, which wallets match on to offer a higher price.
        Refusal::Replacement(replacement) => invalid_input(&replacement.to_string()),
        Refusal::Malformed
        | Refusal::MissingFromAccessList(_)
        | Refusal::Session(_)
        | Refusal::TooLarge { .. }
        | Refusal::Sponsorship(_) => rejected(refusal),
    }
}
