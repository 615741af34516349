//! Bounds of the sequencer's queues and batches.

/// Most moves the local mempool holds; beyond it submissions are refused with `MempoolFull`.
pub const MEMPOOL_MOVES_MAX: usize = 200_000;
/// Most moves packed into one block.
pub const BLOCK_MOVES_PER_TICK_MAX: usize = 8_192;
/// Most block headers proposed in one batch.
pub const BATCH_HEADERS_MAX: usize = 256;
/// Depth of the command queue between connections and the sequencer's core task.
pub const COMMAND_QUEUE_MAX: usize = 65_536;
/// Depth of each peer's inbound message queue.
pub const PEER_QUEUE_MAX: usize = 16_384;
/// Statuses remembered for moves that reached a final level, so late status queries still work.
pub const FINISHED_STATUSES_MAX: usize = 1_000_000;
/// Messages queued for one client (acks and status pushes) before the slowest reader loses some.
pub const CLIENT_OUTBOUND_MAX: usize = 65_536;
/// Largest message between sequencers (a consensus message and its framing).
pub const PEER_MESSAGE_BYTES_MAX: usize = crate::mesh::CONSENSUS_MESSAGE_BYTES_MAX + 1024;
/// Longest wait between two attempts to reopen a link to a peer.
pub const PEER_LINK_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);
/// Batches queued for the upper-chain worker before the core task drops one (another sequencer
/// records it).
pub const UPSTREAM_QUEUE_MAX: usize = 4_096;
/// Batches the upper-chain worker holds while it waits for the chain or for a missing batch.
pub const UPSTREAM_PENDING_MAX: usize = 4_096;
/// Largest payload of one write-ahead log record (a move, or the hashes of a block's moves).
pub const WAL_RECORD_BYTES_MAX: usize = 1024 * 1024;
/// A write-ahead log segment is rotated once it holds this many bytes.
pub const WAL_SEGMENT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Moves waiting for the write-ahead log's disk before ingress refuses with `MempoolFull`.
pub const WAL_QUEUE_MOVES_MAX: usize = 65_536;
/// Most records made durable by one fsync under group commit.
pub const WAL_GROUP_RECORDS_MAX: usize = 8_192;
// One block's move hashes fit in one record.
const _: () = assert!(BLOCK_MOVES_PER_TICK_MAX * 32 + 64 <= WAL_RECORD_BYTES_MAX);
