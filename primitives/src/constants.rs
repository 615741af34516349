//! Every bound that a decoder, queue or batch enforces, in one place.

/// Members of an address state group.
pub const GROUP_SIZE: usize = 8;
/// Faulty members a group tolerates.
pub const GROUP_FAULTS_MAX: usize = 2;
const _: () = assert!(GROUP_SIZE > 3 * GROUP_FAULTS_MAX);

/// Largest `data` field of a move.
pub const TX_DATA_BYTES_MAX: usize = 32 * 1024;
/// Most accounts a Space Access List may name.
pub const SAL_ACCOUNTS_MAX: usize = 64;
/// Most storage slots one account entry of a Space Access List may name.
pub const SAL_SLOTS_PER_ACCOUNT_MAX: usize = 256;
/// Largest encoded move; a frame carrying a bigger one is refused before decoding.
pub const TX_ENCODED_BYTES_MAX: usize = 128 * 1024;
/// Most moves in one block.
pub const BLOCK_MOVES_MAX: usize = 16_384;
/// Most block headers in one batch.
pub const BATCH_BLOCKS_MAX: usize = 1_024;
/// Most validators (sequencers or group members) one certificate can name.
pub const VALIDATORS_MAX: usize = 256;
/// Largest length-prefixed byte string the codec accepts anywhere.
pub const BYTES_FIELD_MAX: usize = 64 * 1024 * 1024;
/// Depth bound of a Merkle proof (2^32 leaves).
pub const MERKLE_PROOF_DEPTH_MAX: usize = 32;
/// Most corrected values one retraction message carries (a larger correction goes in several
/// messages; each item's encoding is at most 85 bytes, so a message stays far below a frame).
pub const RETRACTION_ITEMS_MAX: usize = 1_024;
/// Most changed items one tick diff carries; the rest of a busier tick follow in the next
/// tick's diff.
pub const TICK_DIFF_ITEMS_MAX: usize = 1_024;
/// Most entities (accounts and single items) one session's tick-diff subscription names.
pub const TICK_DIFF_ENTITIES_MAX: usize = 256;
