//! Bounds of the sequencer's queues and batches.

/// Most moves the local mempool holds; beyond it submissions are refused with `MempoolFull`.
pub const MEMPOOL_MOVES_MAX: usize = 200_000;
/// Most moves packed into one block.
pub const BLOCK_MOVES_PER_TICK_MAX: usize = 8_192;
// A full mempool's moves fit in the window of block heights a preconfirmation may promise, so
// every ack carries one (a mempool refilled larger from the log after a crash may not).
const _: () = assert!(
    (MEMPOOL_MOVES_MAX - 1) / BLOCK_MOVES_PER_TICK_MAX
        < primitives::preconf::PRECONFIRMATION_HEIGHTS_MAX as usize
);
/// Most block headers proposed in one batch.
pub const BATCH_HEADERS_MAX: usize = 256;
/// Depth of the command queue between connections and the sequencer's core task.
pub const COMMAND_QUEUE_MAX: usize = 65_536;
/// Depth of each peer's inbound message queue.
pub const PEER_QUEUE_MAX: usize = 16_384;
/// Statuses remembered for moves that reached a final level, so late status queries still work.
pub const FINISHED_STATUSES_MAX: usize = 1_000_000;
/// Final levels remembered of moves other sequencers acked (see `node::Core::foreign`): enough
/// for the moves a dead sequencer's clients ask about after failing over.
pub const FOREIGN_STATUSES_MAX: usize = 100_000;
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
/// Moves verified together in one ed25519 batch (and one rayon task): large enough that batch
/// verification pays (about 2.4× one-by-one at 64 and up), small enough to split a burst over
/// every core.
pub const VERIFY_CHUNK_MOVES: usize = 128;
/// Requests a client task takes from its connection at once before verifying them together.
pub const INGRESS_BURST_MAX: usize = 1_024;
/// Senders (and sponsored players per policy) whose rate buckets are tracked at once; beyond
/// it, senders whose buckets have refilled are forgotten, and if none has, moves are refused.
pub const SENDERS_TRACKED_MAX: usize = 1_000_000;
/// Largest encoded request a sequencer decodes (a move with its list and signature).
pub const MOVE_BYTES_MAX: usize = 64 * 1024;
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
/// Parsed session keys a sequencer remembers (one per playing session; 32 bytes of key and
/// about 200 of parsed point each).
pub const SESSION_KEYS_CACHED_MAX: usize = 100_000;
/// Items of pending state one client session may watch at once.
pub const SUBSCRIPTIONS_PER_CLIENT_MAX: usize = 4_096;
/// Changed items one tick-diff follower may have waiting for its next diff; past it, changes
/// are dropped (counted) rather than held without bound.
pub const TICK_DIFF_BACKLOG_MAX: usize = 65_536;
/// Blocks (executed batches) the JSON-RPC gateway keeps for `eth_getBlockBy*`.
pub const RPC_BLOCKS_KEPT_MAX: usize = 4_096;
/// Ethereum transactions the JSON-RPC gateway remembers, with their receipts; the oldest are
/// forgotten first.
pub const RPC_TRANSACTIONS_KEPT_MAX: usize = 65_536;
/// Submitted, unexecuted moves whose declared writes the gateway keeps for estimation.
pub const RPC_PENDING_MOVES_MAX: usize = 4_096;
/// Blocks after which a submitted move that has not executed is taken as lost, and its writes
/// no longer count in estimation.
pub const RPC_PENDING_BLOCKS_MAX: u64 = 1_024;
/// The widest block range one `eth_getLogs` covers.
pub const RPC_LOGS_BLOCK_RANGE_MAX: u64 = 1_024;
/// The most logs one `eth_getLogs` returns.
pub const RPC_LOGS_MAX: usize = 10_000;
/// Messages from the core (acks) queued for the gateway.
pub const RPC_OUTBOUND_MAX: usize = 4_096;
/// New blocks queued for each `eth_subscribe` subscriber.
pub const RPC_NEW_BLOCKS_QUEUE_MAX: usize = 256;
/// Pending-state events (changes and retractions) queued for the gateway's
/// `tickrate_pendingState` subscribers; one that falls further behind is closed.
pub const RPC_PENDING_EVENTS_QUEUE_MAX: usize = 4_096;
/// Items one `tickrate_pendingState` subscription may watch.
pub const RPC_PENDING_ITEMS_MAX: usize = 256;
/// Blocks one `eth_feeHistory` covers at most (as geth).
pub const RPC_FEE_HISTORY_BLOCKS_MAX: u64 = 1_024;
/// Gas one `eth_call` or estimation may use: revm's per-transaction cap (EIP-7825).
pub const RPC_CALL_GAS_MAX: u64 = 1 << 24;
/// How long `eth_sendRawTransaction` waits for the sequencer's ack (it comes after the
/// write-ahead log's fsync; never a performance bound).
pub const RPC_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
