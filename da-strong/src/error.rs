//! Every error strong DA returns. Peer input never panics: it yields one of these.

use primitives::{B256, DecodeError, bls::BlsError};

/// Why a strong-DA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DaError {
    /// Erasure parameters that cannot work (k = 0, k ≥ n, n too large).
    #[error("invalid erasure parameters: k = {data_chunks}, n = {total_chunks}")]
    InvalidParams {
        /// Chunks that rebuild the payload.
        data_chunks: u16,
        /// Chunks in all.
        total_chunks: u16,
    },
    /// A payload larger than [`crate::constants::PAYLOAD_BYTES_MAX`].
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A chunk does not prove against the commitment (corrupted, forged or misplaced).
    #[error("chunk {index} does not verify against commitment {commitment}: {why}")]
    BadChunk {
        /// The commitment.
        commitment: B256,
        /// The chunk's claimed index.
        index: u16,
        /// Which check failed.
        why: &'static str,
    },
    /// A node was sent a chunk for another node's position.
    #[error("this node holds chunk {position}, was sent chunk {index}")]
    WrongPosition {
        /// The node's position in the committee.
        position: u16,
        /// The chunk's index.
        index: u16,
    },
    /// Fewer verified chunks than the payload needs.
    #[error("only {verified} verified chunks of the {needed} needed ({rejected} rejected)")]
    Unavailable {
        /// Chunks that verified.
        verified: usize,
        /// Chunks needed (k).
        needed: usize,
        /// Chunks refused.
        rejected: usize,
    },
    /// k verified chunks decode to a payload whose re-encoding has another commitment: the
    /// disperser committed to chunks that are not one Reed–Solomon codeword.
    #[error("chunks of {commitment} are not one codeword (re-encoding gives {actual})")]
    InconsistentEncoding {
        /// The commitment.
        commitment: B256,
        /// The commitment of the re-encoded payload.
        actual: B256,
    },
    /// Fewer valid attestations than the quorum.
    #[error("{valid} valid attestations, quorum is {quorum}")]
    TooFewAttestations {
        /// Attestations that verified.
        valid: usize,
        /// Attestations required.
        quorum: usize,
    },
    /// The availability certificate does not verify.
    #[error("availability certificate: {0}")]
    Certificate(#[from] BlsError),
    /// The committee does not match the erasure parameters.
    #[error("committee of {nodes} nodes for n = {total_chunks}")]
    CommitteeSize {
        /// Nodes in the committee.
        nodes: usize,
        /// Chunks per batch.
        total_chunks: u16,
    },
    /// The Reed–Solomon codec refused its input.
    #[error("Reed–Solomon: {0}")]
    Coding(#[from] reed_solomon_simd::Error),
    /// Bytes that do not decode.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// The chunk database failed.
    #[cfg(feature = "node")]
    #[error("chunk store: {0}")]
    Store(#[from] rocksdb::Error),
    /// A stored chunk no longer verifies (disk corruption).
    #[error("stored chunk {index} of {commitment} is corrupted")]
    StoreCorrupted {
        /// The commitment.
        commitment: B256,
        /// The chunk index.
        index: u16,
    },
    /// A file of the node's data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] netstack::quic::QuicError),
    /// A node answered with an error.
    #[error("node {node} refused: {message}")]
    Remote {
        /// The node's position.
        node: usize,
        /// What it said.
        message: String,
    },
    /// A node that could not be reached a moment ago, skipped until its backoff ends
    /// ([`crate::client::DOWN_BACKOFF_MS`]).
    #[error("node {node} was unreachable a moment ago; skipped")]
    RecentlyDown {
        /// The node's position.
        node: usize,
    },
    /// A node answered something that is not an answer to the request.
    #[error("node {node} sent an unexpected response")]
    UnexpectedResponse {
        /// The node's position.
        node: usize,
    },
}
