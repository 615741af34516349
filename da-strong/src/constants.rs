//! Every bound of strong DA.

/// Most DA nodes in a committee, hence most chunks per batch (one chunk per node).
pub const DA_NODES_MAX: usize = 256;
/// Largest payload (encoded finalized batch and what travels with it) strong DA accepts.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest chunk: a whole payload when k = 1, plus the padding to an even size.
pub const CHUNK_BYTES_MAX: usize = PAYLOAD_BYTES_MAX + 2;
/// Largest request or response frame on the wire: a chunk with its proof and framing.
pub const MESSAGE_BYTES_MAX: usize = CHUNK_BYTES_MAX + 4 * 1024;
/// Largest error text a node sends back.
pub const ERROR_TEXT_BYTES_MAX: usize = 1024;
/// How long a client waits for one node's answer before counting it as down.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

const _: () = assert!(DA_NODES_MAX <= primitives::constants::VALIDATORS_MAX);
const _: () = assert!(DA_NODES_MAX <= u16::MAX as usize);
const _: () = assert!(MESSAGE_BYTES_MAX <= u32::MAX as usize);
