//! Every error weak DA returns.

/// Why a weak-DA read, write or listing failed.
#[derive(Debug, thiserror::Error)]
pub enum WeakDaError {
    /// The object store failed (after the retries of [`crate::RETRY_ATTEMPTS_MAX`]).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// No body under the key: the sequencer has not pushed it (yet).
    #[error("no body at {key}")]
    NotFound {
        /// The object key.
        key: String,
    },
    /// The object is not a valid body.
    #[error("body does not decode: {0}")]
    Decode(#[from] primitives::DecodeError),
    /// The object decodes but its Merkle root is not the header's.
    #[error("body root {actual} does not match header root {expected}")]
    RootMismatch {
        /// The header's root.
        expected: primitives::B256,
        /// The root of what was read.
        actual: primitives::B256,
    },
    /// The object's size is not the one the header declares.
    #[error("body is {len} bytes, header says {expected}")]
    SizeMismatch {
        /// Bytes read.
        len: usize,
        /// Bytes the header declares.
        expected: u32,
    },
    /// A store URL this build cannot use.
    #[error("invalid weak DA URL {url:?}: {why}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// A local directory could not be created.
    #[error("creating {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}
