//! Status codes, the calling thread's last error message, and the guard every exported function
//! runs its body in: an error becomes a status and a message, a panic is caught at the boundary
//! (unwinding into C is undefined behaviour) and becomes [`TickrateStatus::Panic`].

// A C ABI is raw pointers and exported symbols: unsafe is this module's job, each use with
// its SAFETY reason.
#![allow(unsafe_code)]

use std::{
    any::Any,
    cell::RefCell,
    ffi::c_char,
    panic::{AssertUnwindSafe, catch_unwind},
};

use client_sdk::ClientError;
use primitives::TxHash;

/// What a call returned: zero is success, every other value a kind of failure whose message
/// `tickrate_last_error` copies out.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickrateStatus {
    /// The call did what it says.
    Ok = 0,
    /// A pointer argument that may not be null was null.
    NullArgument = 1,
    /// An argument is malformed: an address list that does not parse, a secret that is no
    /// valid key, a cell off the board, text that is not UTF-8.
    InvalidArgument = 2,
    /// No sequencer of the list answered.
    Connect = 3,
    /// The session ended and no other sequencer took over.
    Closed = 4,
    /// The sequencer refused the move (bad nonce, rate limit, mempool full...).
    Refused = 5,
    /// The move failed at a level past `Pending` (reverted, out of its access list...).
    MoveFailed = 6,
    /// No answer within the time allowed.
    Timeout = 7,
    /// Nothing yet: the ack has not arrived, or no change is queued. Poll again next frame.
    NotReady = 8,
    /// This client did not send the move, or no longer remembers it.
    UnknownMove = 9,
    /// The move could not be signed.
    Sign = 10,
    /// The client's runtime could not start.
    Runtime = 11,
    /// A bug in the library: the call panicked, and the panic was caught at the boundary.
    Panic = 12,
}

/// Why a call failed, before it becomes a status and a message.
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    /// A required pointer was null.
    #[error("argument `{0}` is null")]
    NullArgument(&'static str),
    /// An argument does not make sense.
    #[error("argument `{name}`: {reason}")]
    InvalidArgument {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The SDK failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The sequencer did not answer in time.
    #[error("no answer within {ms} ms")]
    Timeout {
        /// The time allowed.
        ms: u64,
    },
    /// The answer has not arrived yet.
    #[error("{0}")]
    NotReady(&'static str),
    /// The move is not in this client's books.
    #[error("move {0} is unknown to this client")]
    UnknownMove(TxHash),
    /// The move failed past `Pending`.
    #[error("move {hash} failed: {reason:?}")]
    MoveFailed {
        /// The move.
        hash: TxHash,
        /// Why.
        reason: primitives::FailureReason,
    },
    /// The move's ack never came: the sequencer refused it, or every session ended first.
    #[error("{message}")]
    AckFailed {
        /// The status the failure was reported as.
        status: TickrateStatus,
        /// Why.
        message: String,
    },
    /// The tokio runtime could not be built.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

impl FfiError {
    /// The status code this error is reported as.
    pub fn status(&self) -> TickrateStatus {
        match self {
            FfiError::NullArgument(_) => TickrateStatus::NullArgument,
            FfiError::InvalidArgument { .. } => TickrateStatus::InvalidArgument,
            FfiError::Client(error) => match error {
                ClientError::Connect(_)
                | ClientError::NoSequencer { .. }
                | ClientError::NoSequencerConfigured => TickrateStatus::Connect,
                ClientError::Closed => TickrateStatus::Closed,
                // A shard node's refusal to estimate is a refusal like a sequencer's; a move
                // estimated to fail is reported as the failure it would be.
                ClientError::Refused(_) | ClientError::Estimate(_) => TickrateStatus::Refused,
                ClientError::Failed(_) | ClientError::WouldFail(_) => TickrateStatus::MoveFailed,
                ClientError::Sign(_) => TickrateStatus::Sign,
                // Bounds of the caller's own requests: a tick-diff subscription naming too
                // many entities, a prediction stack already full.
                ClientError::TooManyEntities { .. } | ClientError::Prediction(_) => {
                    TickrateStatus::InvalidArgument
                }
            },
            FfiError::Timeout { .. } => TickrateStatus::Timeout,
            FfiError::NotReady(_) => TickrateStatus::NotReady,
            FfiError::UnknownMove(_) => TickrateStatus::UnknownMove,
            FfiError::MoveFailed { .. } => TickrateStatus::MoveFailed,
            FfiError::AckFailed { status, .. } => *status,
            FfiError::Runtime(_) => TickrateStatus::Runtime,
        }
    }
}

thread_local! {
    /// The message of the last failed call on this thread (C's `errno` pattern: a status code
    /// returned, the details kept aside for whoever asks).
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(message: String) {
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic without a message"
    }
}

/// Runs an exported function's body: `Ok` is [`TickrateStatus::Ok`]; an error or a panic sets
/// the thread's last error and returns its status. Nothing unwinds past this.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), FfiError>) -> TickrateStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => TickrateStatus::Ok,
        Ok(Err(error)) => {
            set_last_error(error.to_string());
            error.status()
        }
        Err(payload) => {
            set_last_error(format!("panic: {}", panic_message(payload.as_ref())));
            TickrateStatus::Panic
        }
    }
}

/// Copies the calling thread's last error message into `buffer` (at most `capacity` bytes,
/// NUL-terminated, cut short if need be) and returns the message's full length in bytes,
/// without the NUL: a caller whose buffer was too small can call again with a larger one.
/// `buffer` may be null when `capacity` is 0, to ask for the length only.
///
/// # Safety
/// `buffer` must be null or valid for writes of `capacity` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_last_error(buffer: *mut c_char, capacity: usize) -> usize {
    let copied = catch_unwind(|| {
        LAST_ERROR.with(|last| {
            let message = last.borrow();
            let bytes = message.as_bytes();
            if !buffer.is_null() && capacity > 0 {
                let count = bytes.len().min(capacity - 1);
                // SAFETY: the caller gives `capacity` writable bytes at `buffer`; `count + 1`
                // is at most `capacity`.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.cast::<u8>(), count);
                    *buffer.add(count) = 0;
                }
            }
            bytes.len()
        })
    });
    copied.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_becomes_its_status_and_message() {
        let status = guard(|| Err(FfiError::NullArgument("out")));
        assert_eq!(status, TickrateStatus::NullArgument);
        let mut buffer = [0 as c_char; 64];
        // SAFETY: the buffer is 64 bytes.
        let length = unsafe { tickrate_last_error(buffer.as_mut_ptr(), buffer.len()) };
        let message = "argument `out` is null";
        assert_eq!(length, message.len());
        let copied: Vec<u8> = buffer[..length].iter().map(|&byte| byte as u8).collect();
        assert_eq!(copied, message.as_bytes());
        assert_eq!(buffer[length], 0, "NUL-terminated");
    }

    #[test]
    fn a_panic_is_caught_and_reported() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, TickrateStatus::Panic);
        let mut buffer = [0 as c_char; 8];
        // SAFETY: the buffer is 8 bytes.
        let length = unsafe { tickrate_last_error(buffer.as_mut_ptr(), buffer.len()) };
        assert_eq!(length, "panic: boom".len());
        let copied: Vec<u8> = buffer[..7].iter().map(|&byte| byte as u8).collect();
        assert_eq!(copied, b"panic: ", "cut to the buffer");
        assert_eq!(buffer[7], 0);
        // SAFETY: a null buffer with no capacity asks for the length only.
        assert_eq!(
            unsafe { tickrate_last_error(std::ptr::null_mut(), 0) },
            length
        );
    }
}
