//! Every bound the PBFT core enforces, in one place.

use primitives::constants::VALIDATORS_MAX;

/// Width of the sequence window: a replica accepts messages for sequences in
/// `(low watermark, low watermark + SEQUENCE_WINDOW]`, where the low watermark is its last stable
/// checkpoint. The primary cannot run further ahead of the slowest quorum than this.
pub const SEQUENCE_WINDOW: u64 = 64;

/// A replica broadcasts a checkpoint after every `CHECKPOINT_INTERVAL` committed sequences; a
/// quorum of matching checkpoints makes it stable and the log below it is discarded.
pub const CHECKPOINT_INTERVAL: u64 = 16;

const _: () = assert!(SEQUENCE_WINDOW.is_multiple_of(CHECKPOINT_INTERVAL));
// The window must hold at least two checkpoints, so that the primary can keep proposing while the
// checkpoint at the middle of the window gathers its quorum.
const _: () = assert!(SEQUENCE_WINDOW >= 2 * CHECKPOINT_INTERVAL);

/// Largest encoded consensus message accepted; longer byte strings are refused before decoding.
/// A pre-prepare of a full batch (1,024 headers of about 210 bytes) is about 220 KiB; a view
/// change carries at most a window of prepared values, and a new view a quorum of view changes,
/// so the bound is what a new view of full batches needs, not what the normal case needs.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most decided entries one answer to a fetch carries; a replica further behind fetches again.
pub const FETCH_ENTRIES_MAX: usize = SEQUENCE_WINDOW as usize;

/// How many decided entries below the low watermark a replica keeps to answer fetches from
/// replicas that fell behind. A replica further behind than this catches up from the
/// application's own store (weak or strong DA) instead.
pub const DECIDED_RETAINED: u64 = 4 * SEQUENCE_WINDOW;

/// The view-change timeout of view changes' first attempt, in microseconds; it doubles with
/// every view change that does not bring progress (Castro and Liskov's exponential back-off).
pub const VIEW_TIMEOUT_US: u64 = 500_000;

/// Longest the view-change timeout grows to, in microseconds.
pub const VIEW_TIMEOUT_MAX_US: u64 = 30_000_000;

/// Most transmits the replica queues before the driver drains them. The driver drains after every
/// input; one input produces at most three broadcasts per delivered sequence, so this is far above
/// what a correct driver ever sees.
pub const TRANSMITS_QUEUED_MAX: usize = 4 * SEQUENCE_WINDOW as usize * VALIDATORS_MAX;

/// Most events the replica queues before the driver drains them (one `Verify` and one `Committed`
/// per sequence of the window, twice over).
pub const EVENTS_QUEUED_MAX: usize = 4 * SEQUENCE_WINDOW as usize;

/// Verified signatures a validator set remembers (32 bytes each): a few windows of every
/// validator's votes.
pub const VERIFIED_MEMO_MAX: usize = 64 * 1024;

/// Commits a replica signs ahead of need ([`crate::Replica::presign`]): those of the lowest
/// slots it stands behind, so a driver's idle loop ends after this many signatures at most.
pub const PRESIGNED_MAX: usize = 8;
