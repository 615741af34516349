//! The write-ahead log of acked moves: a move is durably appended before its ack leaves.
//!
//! After a crash (`kill -9`, power loss) [`Wal::open`] gives back every move that was acked and
//! had not yet left the live set, in ack order, and where the packer stood. A move leaves the live
//! set when the block it was packed into has its body in weak DA ([`Wal::packed`]) or when the
//! sequencer drops it for good ([`Wal::dropped`]); from then on weak DA, not the log, keeps it.
//!
//! Before a block's body goes to weak DA the packer logs its intent ([`Wal::packing`]: the
//! header and the moves). A crash between the put and the confirmation leaves that block *in
//! doubt* ([`Recovered::in_doubt`]): the restarted sequencer looks its key up in weak DA
//! ([`Recovered::settle`]). A stored one is confirmed and announced again (its moves are not
//! packed twice); from the first one not stored on, the packer starts again at that height on
//! the same parent (its header never left the node) and those moves are packed again. So no
//! height is skipped and none carries two announced blocks.
//!
//! # Policies and their cost
//! The fsync policy ([`FsyncPolicy`]) is a setting:
//! - **Per move**: every move is written and `fdatasync`ed on its own before its ack. Ack
//!   throughput is capped at the disk's fsync rate (one move per fsync) and every ack pays a
//!   full fsync in latency.
//! - **Group commit** with a window: the writer takes every record queued since its last fsync,
//!   writes them with one `write`, syncs once and then releases all their acks. With a window of
//!   zero a group is whatever queued while the previous fsync ran (throughput bounded by the
//!   disk's bandwidth, not its fsync rate; ack latency about one to two fsyncs); with a window of
//!   one tick ("per tick") the writer syncs at most once a tick, so acks wait up to a tick more
//!   and the disk sees one fsync a tick whatever the load.
//!
//! The core hands the log each client's burst of admitted moves at once ([`Wal::append_all`]):
//! one request and one callback for the burst. Under per move each of them still gets its own
//! fsync; under group commit they share one.
//!
//! Either way no ack leaves before the fsync that covers its move, and the core never waits on
//! the disk: the writer is its own thread behind a bounded queue, and a full queue refuses the
//! move before it changes anything.
//!
//! `sequencer wal-bench --dir DIR --fsync POLICY [--rate MOVES_PER_SECOND]` measures a disk:
//! acked moves and fsyncs a second and ack latency. On the 2-core development VM (shared disk,
//! builds running) one stream of fsyncs managed 600–800 a second, so per move caps ingest there;
//! group commit took 58,000–93,000 moves a second at about 10 fsyncs a second, and at 20,000
//! moves a second acked with a median of 0.7–6 ms (tails of 50–140 ms from slow fsyncs).
//!
//! # Format
//! A directory of segments `{number:020}.wal`, each starting with [`WAL_MAGIC`] and, at the start
//! of every segment, a position record (where the packer stood), then records
//! `[length u32 LE][checksum u64 LE][payload]` where the checksum is the first 8 bytes of
//! blake3(length ‖ payload) and the payload is bounded by [`WAL_RECORD_BYTES_MAX`]. A segment is
//! rotated beyond [`WAL_SEGMENT_BYTES_MAX`] and deleted once none of its moves is live.
//!
//! # Damage
//! Only the newest segment can have a torn tail (the writes after its last fsync). A record
//! there that runs past the end of the file, or that fails its checksum and ends exactly at the
//! end, or a zero-filled rest of the file, is cut off and recovery goes on: none of it was acked.
//! Any other bad record is [`WalError::Corrupt`]: acked moves may be behind it, so the sequencer
//! refuses to start rather than lose them silently.

use std::{
    collections::{BTreeMap, HashMap},
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use parking_lot::Mutex;
use primitives::{
    B256, BlockHeader, TxHash,
    codec::{Decode, DecodeError, Decoder, Encode, put_length, put_list},
};
use tracing::{debug, error, info, warn};

use crate::constants::{
    WAL_GROUP_RECORDS_MAX, WAL_QUEUE_MOVES_MAX, WAL_RECORD_BYTES_MAX, WAL_SEGMENT_BYTES_MAX,
};

/// The first bytes of every segment.
pub const WAL_MAGIC: [u8; 8] = *b"TRWAL\0\0\x01";
/// Length and checksum in front of every record.
const RECORD_HEADER_BYTES: usize = 12;
/// Most moves one packed or dropped record names.
const RECORD_MOVES_MAX: usize = (WAL_RECORD_BYTES_MAX - 64) / 32;

const TAG_MOVE: u8 = 1;
const TAG_PACKED: u8 = 2;
const TAG_DROPPED: u8 = 3;
const TAG_POSITION: u8 = 4;
const TAG_PACKING: u8 = 5;
const TAG_REPLACE: u8 = 6;

/// A move to log: its hash, the bytes the core logs, and the move it replaced in the mempool,
/// if any (which leaves the live set in the same record, atomically).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedMove {
    /// The move's hash.
    pub hash: TxHash,
    /// What the core logs of it (the encoded signed move).
    pub bytes: Vec<u8>,
    /// The unpacked move of the same sender and nonce it replaced.
    pub replaces: Option<TxHash>,
}

/// When the log syncs what it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// One fsync per move, before its ack.
    PerMove,
    /// Group commit: one fsync for everything queued, at most one per `window`.
    Group {
        /// Least time between two fsyncs (zero: sync as soon as the previous one ends).
        window: Duration,
    },
}

/// Where the log lives and how it syncs.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// The log's directory (created if missing).
    pub dir: PathBuf,
    /// The fsync policy.
    pub fsync: FsyncPolicy,
    /// A segment is rotated once it holds this many bytes.
    pub segment_bytes: usize,
}

impl WalConfig {
    /// A log in `dir` with `fsync`, rotated every [`WAL_SEGMENT_BYTES_MAX`].
    pub fn new(dir: impl Into<PathBuf>, fsync: FsyncPolicy) -> Self {
        WalConfig {
            dir: dir.into(),
            fsync,
            segment_bytes: WAL_SEGMENT_BYTES_MAX,
        }
    }
}

/// What is wrong with a damaged record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// The segment does not start with [`WAL_MAGIC`].
    #[error("not a WAL segment (bad magic)")]
    BadMagic,
    /// The record runs past the end of the segment.
    #[error("record runs past the end of the segment")]
    Truncated,
    /// The record's length is beyond [`WAL_RECORD_BYTES_MAX`] or zero.
    #[error("record length {len} out of bounds")]
    BadLength {
        /// The length read.
        len: u32,
    },
    /// The checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// The checksum matches but the payload does not decode.
    #[error("undecodable record: {0}")]
    Undecodable(DecodeError),
}

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("WAL {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// A record that is not a torn tail is damaged; acked moves may be behind it.
    #[error("WAL segment {segment} is damaged at byte {offset}: {damage}")]
    Corrupt {
        /// The segment's number.
        segment: u64,
        /// Byte offset of the record in the segment.
        offset: u64,
        /// What is wrong.
        damage: Damage,
    },
    /// A record would exceed [`WAL_RECORD_BYTES_MAX`].
    #[error("WAL record of {len} bytes exceeds {max}")]
    RecordTooLarge {
        /// The record's payload size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// [`WAL_QUEUE_MOVES_MAX`] moves already wait for the disk.
    #[error("WAL queue full: {max} moves wait for the disk")]
    Full {
        /// The bound.
        max: usize,
    },
    /// The writer stopped after a failure; nothing more is acked.
    #[error("WAL writer stopped: {0}")]
    Stopped(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where the packer stood: the height of the next block and the hash of the last header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackerPosition {
    /// Height of the next block.
    pub next_height: u64,
    /// Hash of the last packed header ([`B256::ZERO`] before the first block).
    pub parent: B256,
}

/// A block whose intent was logged and whose body was not confirmed in weak DA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InDoubtBlock {
    /// Its header (height and root name its body in weak DA).
    pub header: BlockHeader,
    /// Its moves.
    pub moves: Vec<TxHash>,
}

/// What [`Wal::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Live moves (acked, not yet in a block whose body is in weak DA), in append order: each
    /// one's hash and the bytes the core logged.
    pub moves: Vec<(TxHash, Vec<u8>)>,
    /// Where the packer stood, if it ever packed.
    pub position: Option<PackerPosition>,
    /// Blocks packed whose body may or may not have reached weak DA, by height. Their moves are
    /// in [`Recovered::moves`] too: the caller confirms the stored ones ([`Wal::packed`]) and
    /// leaves their moves out of the mempool.
    pub in_doubt: Vec<InDoubtBlock>,
    /// Segments read.
    pub segments: usize,
    /// Records read.
    pub records: u64,
    /// Bytes cut off a torn tail.
    pub torn_bytes: u64,
}

/// Tells whether a [`Wal`]'s writer failed.
#[derive(Clone, Debug)]
pub struct WalHealth(Arc<Mutex<Option<String>>>);

impl WalHealth {
    /// Why the writer stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.0.lock().clone()
    }
}

impl Recovered {
    /// Settles the in-doubt blocks given which of them are `stored` in weak DA (by height):
    /// in height order, a stored one is confirmed (returned; its moves leave
    /// [`Recovered::moves`]), and from the first one not stored on, the packer starts again at
    /// its height on its parent and every later in-doubt block's moves are packed again (a later
    /// stored body is never announced: it would follow a gap).
    /// The caller logs the confirmed ones with [`Wal::packed`] and announces their headers.
    pub fn settle(&mut self, stored: impl Fn(&BlockHeader) -> bool) -> Vec<InDoubtBlock> {
        let mut in_doubt = std::mem::take(&mut self.in_doubt);
        in_doubt.sort_by_key(|block| block.header.height);
        let mut confirmed = Vec::new();
        for block in in_doubt {
            if stored(&block.header) {
                confirmed.push(block);
            } else {
                // Its header never left the node (headers go out once the body is stored).
                self.position = Some(PackerPosition {
                    next_height: block.header.height,
                    parent: block.header.parent,
                });
                break;
            }
        }
        let packed: std::collections::HashSet<TxHash> = confirmed
            .iter()
            .flat_map(|block| block.moves.iter().copied())
            .collect();
        self.moves.retain(|(hash, _)| !packed.contains(hash));
        confirmed
    }
}

/// Called on the writer thread once the move is durable: sends the ack.
pub type OnDurable = Box<dyn FnOnce() + Send>;

/// Counters of the log.
#[derive(Debug, Default)]
pub struct WalStats {
    /// fsyncs done.
    pub fsyncs: AtomicU64,
    /// Moves made durable.
    pub moves: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
}

enum Request {
    /// Moves acked together: `on_durable` runs once all of them are on disk.
    Moves {
        records: Vec<LoggedMove>,
        on_durable: OnDurable,
    },
    Packing(InDoubtBlock),
    Packed {
        height: u64,
        header: B256,
        moves: Vec<TxHash>,
    },
    Dropped {
        moves: Vec<TxHash>,
    },
    Barrier(mpsc::SyncSender<()>),
}

/// The write-ahead log; the writer runs on its own thread. Dropping it writes and syncs what is
/// queued, then stops the thread.
pub struct Wal {
    queue: Option<mpsc::Sender<Request>>,
    queued_moves: Arc<AtomicUsize>,
    failure: Arc<Mutex<Option<String>>>,
    stats: Arc<WalStats>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("queued_moves", &self.queued_moves.load(Ordering::Relaxed))
            .field("failure", &*self.failure.lock())
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (or creates) the log in `config.dir`, recovers what it holds and starts the writer.
    pub fn open(config: &WalConfig) -> Result<(Wal, Recovered), WalError> {
        std::fs::create_dir_all(&config.dir).map_err(io_error(&config.dir))?;
        let mut state = Replay::default();
        let mut recovered = Recovered::default();
        let segments = list_segments(&config.dir)?;
        for (index, (number, path)) in segments.iter().enumerate() {
            let last = index + 1 == segments.len();
            recovered.torn_bytes += state.read_segment(*number, path, last)?;
            recovered.segments += 1;
        }
        recovered.records = state.records;
        recovered.position = state.position;
        recovered.in_doubt = state.in_doubt.into_values().collect();
        let next_segment = segments.last().map_or(1, |(number, _)| number + 1);
        let position = state.position.unwrap_or(PackerPosition {
            next_height: 0,
            parent: B256::ZERO,
        });
        let mut segment_live: BTreeMap<u64, usize> =
            segments.iter().map(|(number, _)| (*number, 0)).collect();
        let mut segment_of = HashMap::with_capacity(state.live.len());
        for (hash, (segment, _)) in &state.live {
            *segment_live.entry(*segment).or_default() += 1;
            segment_of.insert(*hash, *segment);
        }
        let mut live: Vec<(u64, TxHash, Vec<u8>)> = state
            .live
            .into_iter()
            .map(|(hash, (_, (order, bytes)))| (order, hash, bytes))
            .collect();
        live.sort_unstable_by_key(|(order, _, _)| *order);
        recovered.moves = live
            .into_iter()
            .map(|(_, hash, bytes)| (hash, bytes))
            .collect();

        let mut writer = Writer {
            dir: config.dir.clone(),
            policy: config.fsync,
            segment_bytes_max: config.segment_bytes.max(WAL_RECORD_BYTES_MAX),
            file: None,
            segment: 0,
            segment_bytes: 0,
            segment_live,
            segment_of,
            position,
            stats: Arc::new(WalStats::default()),
            queued_moves: Arc::new(AtomicUsize::new(0)),
            buffer: Vec::new(),
        };
        writer.start_segment(next_segment)?;
        writer.delete_drained()?;
        info!(target: "sequencer::wal", dir = %config.dir.display(), policy = ?config.fsync,
            segments = recovered.segments, records = recovered.records,
            live_moves = recovered.moves.len(), torn_bytes = recovered.torn_bytes,
            next_height = position.next_height, "write-ahead log opened");

        let (queue, requests) = mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        let stats = writer.stats.clone();
        let queued_moves = writer.queued_moves.clone();
        let thread_failure = failure.clone();
        let handle = std::thread::Builder::new()
            .name("sequencer-wal".into())
            .spawn(move || {
                if let Err(error) = writer.run(&requests) {
                    error!(target: "sequencer::wal", %error,
                        "write-ahead log failed; no further move is acked");
                    *thread_failure.lock() = Some(error.to_string());
                }
            })
            .map_err(io_error(&config.dir))?;
        Ok((
            Wal {
                queue: Some(queue),
                queued_moves,
                failure,
                stats,
                writer: Some(handle),
            },
            recovered,
        ))
    }

    /// Whether another move fits in the writer's queue (only the core appends, so a `true`
    /// holds until its next append).
    pub fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// How many more moves fit in the writer's queue (only the core appends, so the room
    /// only grows until its next append).
    pub fn room(&self) -> usize {
        WAL_QUEUE_MOVES_MAX.saturating_sub(self.queued_moves.load(Ordering::Acquire))
    }

    /// Logs an acked move; `on_durable` runs on the writer thread once it is on disk.
    pub fn append(
        &self,
        hash: TxHash,
        bytes: Vec<u8>,
        on_durable: OnDurable,
    ) -> Result<(), WalError> {
        self.append_all(vec![(hash, bytes)], on_durable)
    }

    /// Logs moves acked together (one client's burst); `on_durable` runs on the writer thread
    /// once every one of them is on disk. One request and one callback for the lot, not one
    /// per move. All or none are queued.
    pub fn append_all(
        &self,
        records: Vec<(TxHash, Vec<u8>)>,
        on_durable: OnDurable,
    ) -> Result<(), WalError> {
        let records = records
            .into_iter()
            .map(|(hash, bytes)| LoggedMove {
                hash,
                bytes,
                replaces: None,
            })
            .collect();
        self.append_moves(records, on_durable)
    }

    /// As [`Wal::append_all`], for moves some of which replace an unpacked move: a replacement
    /// takes the replaced move's place in the live set (and in the order [`Wal::open`] gives
    /// back), and the replaced move leaves it, in one record.
    pub fn append_moves(
        &self,
        records: Vec<LoggedMove>,
        on_durable: OnDurable,
    ) -> Result<(), WalError> {
        if let Some(len) = records
            .iter()
            .map(|record| record.bytes.len() + 96)
            .find(|len| *len > WAL_RECORD_BYTES_MAX)
        {
            return Err(WalError::RecordTooLarge {
                len,
                max: WAL_RECORD_BYTES_MAX,
            });
        }
        if self.room() < records.len() {
            return Err(WalError::Full {
                max: WAL_QUEUE_MOVES_MAX,
            });
        }
        let count = records.len();
        self.queued_moves.fetch_add(count, Ordering::AcqRel);
        self.send(Request::Moves {
            records,
            on_durable,
        })
        .inspect_err(|_| {
            self.queued_moves.fetch_sub(count, Ordering::AcqRel);
        })
    }

    /// Records that the block of `header` was packed with `moves` and its body is about to go to
    /// weak DA: the packer's position moves past it; the moves stay live until [`Wal::packed`]
    /// confirms the body.
    pub fn packing(&self, header: BlockHeader, moves: Vec<TxHash>) -> Result<(), WalError> {
        assert!(
            moves.len() <= RECORD_MOVES_MAX,
            "a block's moves fit in one record (BLOCK_MOVES_PER_TICK_MAX)"
        );
        self.send(Request::Packing(InDoubtBlock { header, moves }))
    }

    /// Records that the block at `height` with header hash `header` holds `moves` and its body
    /// is in weak DA: they leave the live set.
    pub fn packed(&self, height: u64, header: B256, moves: Vec<TxHash>) -> Result<(), WalError> {
        for chunk in chunks(moves) {
            self.send(Request::Packed {
                height,
                header,
                moves: chunk,
            })?;
        }
        Ok(())
    }

    /// Records that `moves` left the sequencer without a block (evicted or replaced).
    pub fn dropped(&self, moves: Vec<TxHash>) -> Result<(), WalError> {
        for chunk in chunks(moves) {
            self.send(Request::Dropped { moves: chunk })?;
        }
        Ok(())
    }

    /// Waits until everything sent before is durable.
    pub fn sync(&self) -> Result<(), WalError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Request::Barrier(done))?;
        wait.recv().map_err(|_| self.stopped())
    }

    /// Whether the writer stopped after a failure (then nothing more is acked).
    pub fn failed(&self) -> bool {
        self.failure.lock().is_some()
    }

    /// Why the writer stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// A handle that tells whether the writer failed, for whoever outlives the core's use of
    /// the log (the binary watches it to exit).
    pub fn health(&self) -> WalHealth {
        WalHealth(self.failure.clone())
    }

    /// The log's counters.
    pub fn stats(&self) -> Arc<WalStats> {
        self.stats.clone()
    }

    fn stopped(&self) -> WalError {
        WalError::Stopped(
            self.failure()
                .unwrap_or_else(|| "the writer thread is gone".into()),
        )
    }

    fn send(&self, request: Request) -> Result<(), WalError> {
        match &self.queue {
            Some(queue) => queue.send(request).map_err(|_| self.stopped()),
            None => Err(self.stopped()),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn chunks(moves: Vec<TxHash>) -> Vec<Vec<TxHash>> {
    if moves.len() <= RECORD_MOVES_MAX {
        return vec![moves];
    }
    moves
        .chunks(RECORD_MOVES_MAX)
        .map(<[TxHash]>::to_vec)
        .collect()
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.wal"))
}

/// The segments in `dir`, oldest first; other files are left alone.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = name.strip_suffix(".wal")
            && number.len() == 20
            && let Ok(number) = number.parse::<u64>()
        {
            segments.push((number, entry.path()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir))
}

fn checksum(len: u32, payload: &[u8]) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Appends one framed record whose payload `write_payload` writes.
fn put_record(out: &mut Vec<u8>, write_payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    write_payload(out);
    let payload_len = out.len() - start - RECORD_HEADER_BYTES;
    assert!(
        payload_len > 0 && payload_len <= WAL_RECORD_BYTES_MAX,
        "records are bounded before they are queued"
    );
    let len = u32::try_from(payload_len).expect("bounded by WAL_RECORD_BYTES_MAX");
    let sum = checksum(len, &out[start + RECORD_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + RECORD_HEADER_BYTES].copy_from_slice(&sum.to_le_bytes());
}

fn put_position(out: &mut Vec<u8>, position: PackerPosition) {
    put_record(out, |out| {
        out.push(TAG_POSITION);
        out.extend_from_slice(&position.next_height.to_be_bytes());
        position.parent.encode(out);
    });
}

/// A decoded record.
#[derive(Debug, PartialEq, Eq)]
enum Record {
    Move {
        hash: TxHash,
        bytes: Vec<u8>,
    },
    /// A move that replaced the unpacked move `replaced`.
    Replace {
        replaced: TxHash,
        hash: TxHash,
        bytes: Vec<u8>,
    },
    Packing(InDoubtBlock),
    Packed {
        height: u64,
        header: B256,
        moves: Vec<TxHash>,
    },
    Dropped {
        moves: Vec<TxHash>,
    },
    Position(PackerPosition),
}

fn decode_record(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut decoder = Decoder::new(payload);
    let record = match decoder.u8()? {
        TAG_MOVE => {
            let hash = decoder.b256()?;
            let len = decoder.length("WAL move", WAL_RECORD_BYTES_MAX)?;
            Record::Move {
                hash,
                bytes: decoder.take(len)?.to_vec(),
            }
        }
        TAG_REPLACE => {
            let replaced = decoder.b256()?;
            let hash = decoder.b256()?;
            let len = decoder.length("WAL move", WAL_RECORD_BYTES_MAX)?;
            Record::Replace {
                replaced,
                hash,
                bytes: decoder.take(len)?.to_vec(),
            }
        }
        TAG_PACKING => Record::Packing(InDoubtBlock {
            header: BlockHeader::decode(&mut decoder)?,
            moves: decoder.list("WAL packing moves", RECORD_MOVES_MAX)?,
        }),
        TAG_PACKED => Record::Packed {
            height: decoder.u64()?,
            header: decoder.b256()?,
            moves: decoder.list("WAL packed moves", RECORD_MOVES_MAX)?,
        },
        TAG_DROPPED => Record::Dropped {
            moves: decoder.list("WAL dropped moves", RECORD_MOVES_MAX)?,
        },
        TAG_POSITION => Record::Position(PackerPosition {
            next_height: decoder.u64()?,
            parent: decoder.b256()?,
        }),
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "WAL record",
                tag,
            });
        }
    };
    decoder.finish()?;
    Ok(record)
}

/// Reads one framed record at `offset`: the record and where the next one starts.
fn read_record(bytes: &[u8], offset: usize) -> Result<(Record, usize), Damage> {
    let header = bytes
        .get(offset..offset + RECORD_HEADER_BYTES)
        .ok_or(Damage::Truncated)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let sum = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
    if len == 0 || len as usize > WAL_RECORD_BYTES_MAX {
        return Err(Damage::BadLength { len });
    }
    let start = offset + RECORD_HEADER_BYTES;
    let payload = bytes
        .get(start..start + len as usize)
        .ok_or(Damage::Truncated)?;
    if checksum(len, payload) != sum {
        return Err(Damage::Checksum);
    }
    let record = decode_record(payload).map_err(Damage::Undecodable)?;
    Ok((record, start + len as usize))
}

/// Whether damage at `offset` of the newest segment is a torn tail: what was written after the
/// last fsync and never acked.
fn is_torn_tail(bytes: &[u8], offset: usize, damage: &Damage) -> bool {
    let rest = &bytes[offset..];
    if rest.iter().all(|byte| *byte == 0) {
        return true;
    }
    match damage {
        Damage::Truncated => true,
        // A length that landed with a payload that did not: the record ends at the end.
        Damage::Checksum => {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("a header was read"));
            offset + RECORD_HEADER_BYTES + len as usize == bytes.len()
        }
        Damage::BadMagic | Damage::BadLength { .. } | Damage::Undecodable(_) => false,
    }
}

/// The live set while segments are read.
#[derive(Default)]
struct Replay {
    /// Live moves: segment, append order and bytes.
    live: HashMap<TxHash, (u64, (u64, Vec<u8>))>,
    position: Option<PackerPosition>,
    in_doubt: BTreeMap<u64, InDoubtBlock>,
    records: u64,
    order: u64,
}

impl Replay {
    /// Reads one segment; returns the bytes cut off a torn tail.
    fn read_segment(&mut self, number: u64, path: &Path, last: bool) -> Result<u64, WalError> {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let corrupt = |offset: usize, damage: Damage| WalError::Corrupt {
            segment: number,
            offset: offset as u64,
            damage,
        };
        if bytes.len() < WAL_MAGIC.len() || bytes[..WAL_MAGIC.len()] != WAL_MAGIC {
            let prefix_of_magic = WAL_MAGIC.starts_with(&bytes) || bytes.iter().all(|b| *b == 0);
            if last && bytes.len() < WAL_MAGIC.len() && prefix_of_magic {
                // Created, never synced past its first bytes: nothing in it was acked.
                truncate(path, 0)?;
                std::fs::remove_file(path).map_err(io_error(path))?;
                return Ok(bytes.len() as u64);
            }
            return Err(corrupt(0, Damage::BadMagic));
        }
        let mut offset = WAL_MAGIC.len();
        while offset < bytes.len() {
            match read_record(&bytes, offset) {
                Ok((record, next)) => {
                    self.apply(number, record);
                    offset = next;
                }
                Err(damage) if last && is_torn_tail(&bytes, offset, &damage) => {
                    let torn = (bytes.len() - offset) as u64;
                    warn!(target: "sequencer::wal", segment = number, offset, torn, %damage,
                        "torn tail cut off (written after the last fsync, never acked)");
                    truncate(path, offset as u64)?;
                    return Ok(torn);
                }
                Err(damage) => return Err(corrupt(offset, damage)),
            }
        }
        Ok(0)
    }

    fn apply(&mut self, segment: u64, record: Record) {
        self.records += 1;
        match record {
            Record::Move { hash, bytes } => {
                self.order += 1;
                self.live
                    .entry(hash)
                    .or_insert((segment, (self.order, bytes)));
            }
            Record::Replace {
                replaced,
                hash,
                bytes,
            } => {
                // In the replaced move's place; if its segment is gone (it left the live set
                // with this record), at the end: the core puts each sender's nonces back in
                // order at replay.
                let order = match self.live.remove(&replaced) {
                    Some((_, (order, _))) => order,
                    None => {
                        self.order += 1;
                        self.order
                    }
                };
                self.live.entry(hash).or_insert((segment, (order, bytes)));
            }
            Record::Packing(block) => {
                self.position = Some(PackerPosition {
                    next_height: block.header.height + 1,
                    parent: block.header.hash(),
                });
                // A block packed again at this height after a restart replaces the old intent.
                self.in_doubt.insert(block.header.height, block);
            }
            Record::Packed {
                height,
                header,
                moves,
            } => {
                for hash in &moves {
                    self.live.remove(hash);
                }
                if self
                    .in_doubt
                    .get(&height)
                    .is_some_and(|block| block.header.hash() == header)
                {
                    self.in_doubt.remove(&height);
                }
            }
            Record::Dropped { moves } => {
                for hash in &moves {
                    self.live.remove(hash);
                }
            }
            // Written at the start of each segment: where the packer stood then.
            Record::Position(position) => self.position = Some(position),
        }
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(len).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    policy: FsyncPolicy,
    segment_bytes_max: usize,
    file: Option<File>,
    segment: u64,
    segment_bytes: usize,
    /// Live moves per segment (every segment on disk has an entry).
    segment_live: BTreeMap<u64, usize>,
    /// The segment of each live move.
    segment_of: HashMap<TxHash, u64>,
    position: PackerPosition,
    stats: Arc<WalStats>,
    queued_moves: Arc<AtomicUsize>,
    buffer: Vec<u8>,
}

impl Writer {
    fn run(&mut self, requests: &mpsc::Receiver<Request>) -> Result<(), WalError> {
        let mut last_sync: Option<std::time::Instant> = None;
        let mut group = Vec::new();
        while let Ok(first) = requests.recv() {
            let (group_max, window) = match self.policy {
                FsyncPolicy::PerMove => (1, Duration::ZERO),
                FsyncPolicy::Group { window } => (WAL_GROUP_RECORDS_MAX, window),
            };
            if let Some(last) = last_sync {
                let due = last + window;
                let now = std::time::Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            group.push(first);
            while group.len() < group_max {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            let synced = self.write_group(&group)?;
            if synced {
                last_sync = Some(std::time::Instant::now());
            }
            self.finish_group(&mut group)?;
        }
        Ok(())
    }

    /// Writes a group's records with one write and one fsync (per move under
    /// [`FsyncPolicy::PerMove`], even for moves appended together); whether it synced.
    fn write_group(&mut self, group: &[Request]) -> Result<bool, WalError> {
        let sync_each_move = self.policy == FsyncPolicy::PerMove;
        let mut synced = false;
        self.buffer.clear();
        let mut moves = 0u64;
        for request in group {
            match request {
                Request::Moves { records, .. } => {
                    for record in records {
                        moves += 1;
                        put_record(&mut self.buffer, |out| {
                            match record.replaces {
                                None => out.push(TAG_MOVE),
                                Some(replaced) => {
                                    out.push(TAG_REPLACE);
                                    replaced.encode(out);
                                }
                            }
                            record.hash.encode(out);
                            put_length(out, record.bytes.len());
                            out.extend_from_slice(&record.bytes);
                        });
                        if sync_each_move {
                            synced |= self.write_and_sync(moves)?;
                            moves = 0;
                        }
                    }
                }
                Request::Packing(block) => put_record(&mut self.buffer, |out| {
                    out.push(TAG_PACKING);
                    block.header.encode(out);
                    put_list(out, &block.moves);
                }),
                Request::Packed {
                    height,
                    header,
                    moves,
                } => put_record(&mut self.buffer, |out| {
                    out.push(TAG_PACKED);
                    out.extend_from_slice(&height.to_be_bytes());
                    header.encode(out);
                    put_list(out, moves);
                }),
                Request::Dropped { moves } => put_record(&mut self.buffer, |out| {
                    out.push(TAG_DROPPED);
                    put_list(out, moves);
                }),
                Request::Barrier(_) => {}
            }
        }
        Ok(self.write_and_sync(moves)? || synced)
    }

    /// Writes the buffer (holding `moves` move records) and syncs it; whether there was
    /// anything to write.
    fn write_and_sync(&mut self, moves: u64) -> Result<bool, WalError> {
        if self.buffer.is_empty() {
            return Ok(false);
        }
        let path = segment_path(&self.dir, self.segment);
        let file = self.file.as_mut().expect("a segment is open while running");
        file.write_all(&self.buffer).map_err(io_error(&path))?;
        let started = std::time::Instant::now();
        file.sync_data().map_err(io_error(&path))?;
        crate::metrics::wal_fsync(started.elapsed(), moves);
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.stats.moves.fetch_add(moves, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        self.segment_bytes += self.buffer.len();
        self.buffer.clear();
        Ok(true)
    }

    /// Releases the acks of a durable group, updates the live set, rotates and deletes.
    fn finish_group(&mut self, group: &mut Vec<Request>) -> Result<(), WalError> {
        let mut barriers = Vec::new();
        for request in group.drain(..) {
            match request {
                Request::Moves {
                    records,
                    on_durable,
                } => {
                    for record in &records {
                        if let Some(replaced) = &record.replaces {
                            self.leave(std::slice::from_ref(replaced));
                        }
                        if !self.segment_of.contains_key(&record.hash) {
                            self.segment_of.insert(record.hash, self.segment);
                            *self.segment_live.entry(self.segment).or_default() += 1;
                        }
                    }
                    self.queued_moves.fetch_sub(records.len(), Ordering::AcqRel);
                    on_durable();
                }
                Request::Packed { moves, .. } => self.leave(&moves),
                // The packer's intents come in its order (a restart may take it back to an
                // in-doubt height): the last one says where it stands.
                Request::Packing(block) => {
                    self.position = PackerPosition {
                        next_height: block.header.height + 1,
                        parent: block.header.hash(),
                    };
                }
                Request::Dropped { moves } => self.leave(&moves),
                Request::Barrier(done) => barriers.push(done),
            }
        }
        if self.segment_bytes >= self.segment_bytes_max {
            self.start_segment(self.segment + 1)?;
        }
        self.delete_drained()?;
        // Answered last, so that a caller of `sync` sees the rotation and deletions too.
        for done in barriers {
            let _ = done.send(());
        }
        Ok(())
    }

    fn leave(&mut self, moves: &[TxHash]) {
        for hash in moves {
            if let Some(segment) = self.segment_of.remove(hash)
                && let Some(count) = self.segment_live.get_mut(&segment)
            {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// Opens segment `number`, starting with the magic and the packer's position, synced.
    fn start_segment(&mut self, number: u64) -> Result<(), WalError> {
        let path = segment_path(&self.dir, number);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut header = WAL_MAGIC.to_vec();
        put_position(&mut header, self.position);
        file.write_all(&header).map_err(io_error(&path))?;
        file.sync_all().map_err(io_error(&path))?;
        sync_dir(&self.dir)?;
        self.file = Some(file);
        self.segment = number;
        self.segment_bytes = header.len();
        self.segment_live.entry(number).or_default();
        debug!(target: "sequencer::wal", segment = number, "segment started");
        Ok(())
    }

    /// Deletes the oldest segments once none of their moves is live (never the open one).
    fn delete_drained(&mut self) -> Result<(), WalError> {
        while let Some((&number, &live)) = self.segment_live.first_key_value() {
            if number == self.segment || live > 0 {
                break;
            }
            let path = segment_path(&self.dir, number);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(&path)(error)),
            }
            self.segment_live.remove(&number);
            debug!(target: "sequencer::wal", segment = number, "drained segment deleted");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::mpsc::Receiver;

    use super::*;

    fn hash(n: u64) -> TxHash {
        B256::from(primitives::U256::from(n))
    }

    fn config(dir: &Path, fsync: FsyncPolicy) -> WalConfig {
        WalConfig {
            dir: dir.to_path_buf(),
            fsync,
            // Small segments, so rotation happens within a test.
            segment_bytes: WAL_RECORD_BYTES_MAX,
        }
    }

    /// Appends moves `range` and returns a receiver of their acks (by number).
    fn append_all(wal: &Wal, range: std::ops::Range<u64>) -> Receiver<u64> {
        let (acks, acked) = mpsc::channel();
        for n in range {
            let acks = acks.clone();
            wal.append(
                hash(n),
                n.to_be_bytes().to_vec(),
                Box::new(move || acks.send(n).unwrap()),
            )
            .unwrap();
        }
        acked
    }

    fn moves(recovered: &Recovered) -> Vec<u64> {
        recovered
            .moves
            .iter()
            .map(|(hash, bytes)| {
                let n = u64::from_be_bytes(bytes.as_slice().try_into().unwrap());
                assert_eq!(*hash, super::tests::hash(n));
                n
            })
            .collect()
    }

    /// Headers of `count` empty blocks, heights from 0, each on the previous one.
    fn headers(count: u64) -> Vec<BlockHeader> {
        let mut packer = crate::packer::Packer::new(primitives::AccountKey::from_seed(3));
        (0..count)
            .map(|tick| {
                packer
                    .pack(primitives::time::Instant::from_micros(tick), Vec::new())
                    .header
            })
            .collect()
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let segments = list_segments(dir).unwrap();
        assert_eq!(segments.len(), 1, "{segments:?}");
        segments[0].1.clone()
    }

    #[test]
    fn moves_appended_together_are_acked_once_and_each_is_recovered() {
        for policy in [
            FsyncPolicy::PerMove,
            FsyncPolicy::Group {
                window: Duration::ZERO,
            },
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (wal, _) = Wal::open(&config(dir.path(), policy)).unwrap();
            let (acks, acked) = mpsc::channel();
            for burst in [0..10u64, 10..11, 11..40] {
                let first = burst.start;
                let records = burst.map(|n| (hash(n), n.to_be_bytes().to_vec())).collect();
                let acks = acks.clone();
                wal.append_all(records, Box::new(move || acks.send(first).unwrap()))
                    .unwrap();
            }
            drop(acks);
            assert_eq!(acked.iter().collect::<Vec<_>>(), [0, 10, 11], "{policy:?}");
            let fsyncs = wal.stats().fsyncs.load(Ordering::Relaxed);
            match policy {
                // Appended together or not, every move has its own fsync.
                FsyncPolicy::PerMove => assert_eq!(fsyncs, 40),
                FsyncPolicy::Group { .. } => assert!((1..=3).contains(&fsyncs), "{fsyncs}"),
            }
            // Too many at once for the writer's queue: refused whole, nothing queued.
            let flood = (0..=WAL_QUEUE_MOVES_MAX as u64)
                .map(|n| (hash(1_000 + n), vec![0]))
                .collect();
            assert!(matches!(
                wal.append_all(flood, Box::new(|| panic!("never acked"))),
                Err(WalError::Full { .. })
            ));
            assert_eq!(wal.room(), WAL_QUEUE_MOVES_MAX);
            std::mem::forget(wal);
            let (_wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
            assert_eq!(moves(&recovered), (0..40).collect::<Vec<_>>(), "{policy:?}");
        }
    }

    #[test]
    fn both_policies_ack_after_the_fsync_and_recover_the_live_moves() {
        for policy in [
            FsyncPolicy::PerMove,
            FsyncPolicy::Group {
                window: Duration::ZERO,
            },
            FsyncPolicy::Group {
                window: Duration::from_millis(2),
            },
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
            assert!(recovered.moves.is_empty());
            assert_eq!(recovered.position, None);
            let acked = append_all(&wal, 0..50);
            let order: Vec<u64> = (0..50).map(|_| acked.recv().unwrap()).collect();
            assert_eq!(order, (0..50).collect::<Vec<_>>(), "{policy:?}");
            let fsyncs = wal.stats().fsyncs.load(Ordering::Relaxed);
            match policy {
                FsyncPolicy::PerMove => assert_eq!(fsyncs, 50),
                FsyncPolicy::Group { .. } => assert!((1..=50).contains(&fsyncs)),
            }
            // Block 0 took moves 0..20 (its body is in weak DA); 45 was dropped.
            let header = headers(1).remove(0);
            wal.packing(header.clone(), (0..20).map(hash).collect())
                .unwrap();
            wal.packed(0, header.hash(), (0..20).map(hash).collect())
                .unwrap();
            wal.dropped(vec![hash(45)]).unwrap();
            wal.sync().unwrap();
            // A crash: the process dies without the writer's goodbye.
            std::mem::forget(wal);
            let (_wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
            let expected: Vec<u64> = (20..50).filter(|n| *n != 45).collect();
            assert_eq!(moves(&recovered), expected, "{policy:?}");
            assert_eq!(
                recovered.position,
                Some(PackerPosition {
                    next_height: 1,
                    parent: header.hash()
                })
            );
            assert!(recovered.in_doubt.is_empty());
            assert_eq!(recovered.torn_bytes, 0);
        }
    }

    #[test]
    fn no_ack_leaves_before_its_move_is_on_disk() {
        // The ack callback reads the segment from disk: the move's record must already be there.
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(&config(dir.path(), FsyncPolicy::PerMove)).unwrap();
        let path = dir.path().to_path_buf();
        let (acks, acked) = mpsc::channel();
        wal.append(
            hash(1),
            vec![0xab; 40],
            Box::new(move || {
                let mut state = Replay::default();
                let segments = list_segments(&path).unwrap();
                for (number, segment) in &segments {
                    state.read_segment(*number, segment, false).unwrap();
                }
                acks.send(state.live.contains_key(&hash(1))).unwrap();
            }),
        )
        .unwrap();
        assert!(acked.recv().unwrap());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let policy = FsyncPolicy::Group {
            window: Duration::ZERO,
        };
        let (wal, _) = Wal::open(&config(dir.path(), policy)).unwrap();
        let acked = append_all(&wal, 0..10);
        for _ in 0..10 {
            acked.recv().unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let path = only_segment(dir.path());
        let intact = std::fs::metadata(&path).unwrap().len();
        // Three kinds of torn tail: half a header, a record cut short, a record whose length
        // landed but whose payload did not (zeros), and a zero-filled extension.
        let mut record = Vec::new();
        put_record(&mut record, |out| {
            out.push(TAG_MOVE);
            hash(99).encode(out);
            put_length(out, 8);
            out.extend_from_slice(&99u64.to_be_bytes());
        });
        let mut garbled = record.clone();
        for byte in &mut garbled[RECORD_HEADER_BYTES..] {
            *byte = 0;
        }
        for tail in [
            record[..6].to_vec(),
            record[..record.len() - 3].to_vec(),
            garbled,
            vec![0; 4096],
        ] {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.truncate(intact as usize);
            bytes.extend_from_slice(&tail);
            std::fs::write(&path, &bytes).unwrap();
            // Reading the segment alone (as the newest one) cuts the tail and keeps the rest.
            let mut state = Replay::default();
            let torn = state.read_segment(1, &path, true).unwrap();
            assert_eq!(torn, tail.len() as u64);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), intact);
            assert_eq!(state.live.len(), 10);
        }
        // Through `open`: the ten moves come back, and new ones go on after them.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&record[..record.len() - 1]);
        std::fs::write(&path, &bytes).unwrap();
        let (wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
        assert_eq!(moves(&recovered), (0..10).collect::<Vec<_>>());
        assert_eq!(recovered.torn_bytes, record.len() as u64 - 1);
        let acked = append_all(&wal, 10..12);
        acked.recv().unwrap();
        acked.recv().unwrap();
        drop(wal);
        let (_wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
        assert_eq!(moves(&recovered), (0..12).collect::<Vec<_>>());
    }

    /// What damage a case expects.
    type Expected = fn(&Damage) -> bool;

    #[test]
    fn a_damaged_record_before_the_tail_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(&config(dir.path(), FsyncPolicy::PerMove)).unwrap();
        let acked = append_all(&wal, 0..5);
        for _ in 0..5 {
            acked.recv().unwrap();
        }
        drop(wal);
        let path = only_segment(dir.path());
        let pristine = std::fs::read(&path).unwrap();
        // The records after the magic and the position record: flip a byte of the second move.
        let mut offsets = Vec::new();
        let mut offset = WAL_MAGIC.len();
        while offset < pristine.len() {
            offsets.push(offset);
            offset = read_record(&pristine, offset).unwrap().1;
        }
        assert_eq!(offsets.len(), 6);
        let second_move = offsets[2];
        let cases: [(usize, Expected); 3] = [
            (second_move + RECORD_HEADER_BYTES + 5, |damage| {
                *damage == Damage::Checksum
            }),
            (second_move + 3, |damage| {
                matches!(damage, Damage::BadLength { .. })
            }),
            (0, |damage| *damage == Damage::BadMagic),
        ];
        for (at, expected) in cases {
            let mut bytes = pristine.clone();
            bytes[at] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            match Wal::open(&config(dir.path(), FsyncPolicy::PerMove)) {
                Err(WalError::Corrupt {
                    segment, damage, ..
                }) => {
                    assert_eq!(segment, 1);
                    assert!(expected(&damage), "{damage:?}");
                }
                other => panic!("expected a corrupt record, got {other:?}"),
            }
            // Nothing was cut: the damaged file is left for the operator.
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
        // A record with a valid checksum that does not decode is damage too, even at the tail.
        let mut bytes = pristine.clone();
        put_record(&mut bytes, |out| out.push(0xee));
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Wal::open(&config(dir.path(), FsyncPolicy::PerMove)),
            Err(WalError::Corrupt {
                damage: Damage::Undecodable(_),
                ..
            })
        ));
        // An older segment's bad tail is not torn: it was synced before the next one began.
        std::fs::write(&path, &pristine[..pristine.len() - 2]).unwrap();
        std::fs::write(segment_path(dir.path(), 2), WAL_MAGIC).unwrap();
        assert!(matches!(
            Wal::open(&config(dir.path(), FsyncPolicy::PerMove)),
            Err(WalError::Corrupt {
                segment: 1,
                damage: Damage::Truncated,
                ..
            })
        ));
    }

    #[test]
    fn segments_rotate_and_drained_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let policy = FsyncPolicy::Group {
            window: Duration::ZERO,
        };
        let (wal, _) = Wal::open(&config(dir.path(), policy)).unwrap();
        // Moves of a quarter segment: four fill one.
        let big = WAL_RECORD_BYTES_MAX / 4;
        assert!(big + 64 <= WAL_RECORD_BYTES_MAX);
        let (acks, acked) = mpsc::channel();
        for n in 0..10u64 {
            let acks = acks.clone();
            let mut bytes = vec![0u8; big];
            bytes[..8].copy_from_slice(&n.to_be_bytes());
            wal.append(hash(n), bytes, Box::new(move || acks.send(n).unwrap()))
                .unwrap();
            acked.recv().unwrap();
        }
        assert!(list_segments(dir.path()).unwrap().len() >= 3);
        let header = headers(1).remove(0);
        wal.packing(header.clone(), (0..8).map(hash).collect())
            .unwrap();
        wal.packed(0, header.hash(), (0..8).map(hash).collect())
            .unwrap();
        wal.sync().unwrap();
        let segments = list_segments(dir.path()).unwrap();
        assert!(segments.len() <= 2, "{segments:?}");
        std::mem::forget(wal);
        let (_wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
        let live: Vec<u64> = recovered
            .moves
            .iter()
            .map(|(_, bytes)| u64::from_be_bytes(bytes[..8].try_into().unwrap()))
            .collect();
        assert_eq!(live, vec![8, 9]);
        assert_eq!(recovered.position.map(|p| p.next_height), Some(1));
    }

    #[test]
    fn in_doubt_blocks_are_confirmed_when_stored_and_packed_again_from_the_first_that_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let policy = FsyncPolicy::Group {
            window: Duration::ZERO,
        };
        let headers = headers(3);
        let (wal, _) = Wal::open(&config(dir.path(), policy)).unwrap();
        let acked = append_all(&wal, 0..10);
        for _ in 0..10 {
            acked.recv().unwrap();
        }
        // Block 0 stored and confirmed; blocks 1 and 2 sent to weak DA, then the crash.
        wal.packing(headers[0].clone(), (0..5).map(hash).collect())
            .unwrap();
        wal.packed(0, headers[0].hash(), (0..5).map(hash).collect())
            .unwrap();
        wal.packing(headers[1].clone(), (5..8).map(hash).collect())
            .unwrap();
        wal.packing(headers[2].clone(), (8..10).map(hash).collect())
            .unwrap();
        wal.sync().unwrap();
        std::mem::forget(wal);

        let reopen = || {
            let (wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
            std::mem::forget(wal);
            recovered
        };
        let mut recovered = reopen();
        assert_eq!(moves(&recovered), (5..10).collect::<Vec<_>>());
        let heights: Vec<u64> = recovered.in_doubt.iter().map(|b| b.header.height).collect();
        assert_eq!(heights, vec![1, 2]);
        assert_eq!(
            recovered.position,
            Some(PackerPosition {
                next_height: 3,
                parent: headers[2].hash()
            })
        );
        // Block 1 stored, block 2 not: 1 is confirmed, the packer goes back to height 2.
        let confirmed = recovered.settle(|header| header.height == 1);
        assert_eq!(confirmed.len(), 1);
        assert_eq!(confirmed[0].header, headers[1]);
        assert_eq!(moves(&recovered), vec![8, 9]);
        assert_eq!(
            recovered.position,
            Some(PackerPosition {
                next_height: 2,
                parent: headers[1].hash()
            })
        );
        // Block 2 stored but not 1: nothing is confirmed after a gap.
        let mut recovered = reopen();
        assert!(recovered.settle(|header| header.height == 2).is_empty());
        assert_eq!(moves(&recovered), (5..10).collect::<Vec<_>>());
        assert_eq!(
            recovered.position,
            Some(PackerPosition {
                next_height: 1,
                parent: headers[0].hash()
            })
        );
        // Both stored: both confirmed, the packer goes on after them.
        let mut recovered = reopen();
        assert_eq!(recovered.settle(|_| true).len(), 2);
        assert!(recovered.moves.is_empty());
        assert_eq!(recovered.position.map(|p| p.next_height), Some(3));
    }

    fn replacement(n: u64, replaced: u64) -> LoggedMove {
        LoggedMove {
            hash: hash(n),
            bytes: n.to_be_bytes().to_vec(),
            replaces: Some(hash(replaced)),
        }
    }

    #[test]
    fn after_a_crash_a_replacement_is_live_in_the_replaced_moves_place_and_it_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let policy = FsyncPolicy::Group {
            window: Duration::ZERO,
        };
        let (wal, _) = Wal::open(&config(dir.path(), policy)).unwrap();
        let acked = append_all(&wal, 0..3);
        assert_eq!(acked.iter().take(3).count(), 3);
        // 10 replaces 0 and is replaced in turn by 11; 12 replaces 2.
        let (acks, durable) = mpsc::channel();
        wal.append_moves(
            vec![replacement(10, 0), replacement(11, 10), replacement(12, 2)],
            Box::new(move || acks.send(()).unwrap()),
        )
        .unwrap();
        durable.recv().unwrap();
        std::mem::forget(wal);
        let (wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
        assert_eq!(moves(&recovered), [11, 1, 12]);
        // The replaced moves are not live: packing the three live ones drains the log.
        let header = headers(1).remove(0);
        let live: Vec<TxHash> = [11, 1, 12].into_iter().map(hash).collect();
        wal.packing(header.clone(), live.clone()).unwrap();
        wal.packed(0, header.hash(), live).unwrap();
        wal.sync().unwrap();
        std::mem::forget(wal);
        let (_wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
        assert!(recovered.moves.is_empty());
    }

    #[test]
    fn a_replacement_whose_replaced_moves_segment_is_gone_comes_back_last() {
        let dir = tempfile::tempdir().unwrap();
        let policy = FsyncPolicy::Group {
            window: Duration::ZERO,
        };
        let (wal, _) = Wal::open(&config(dir.path(), policy)).unwrap();
        // Moves of the largest size: each one fills a segment, which then rotates.
        let big = WAL_RECORD_BYTES_MAX - 96;
        for n in [0u64, 1] {
            let (acks, acked) = mpsc::channel();
            let mut bytes = vec![0u8; big];
            bytes[..8].copy_from_slice(&n.to_be_bytes());
            wal.append(hash(n), bytes, Box::new(move || acks.send(()).unwrap()))
                .unwrap();
            acked.recv().unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 3);
        let (acks, acked) = mpsc::channel();
        wal.append_moves(
            vec![replacement(10, 0)],
            Box::new(move || acks.send(()).unwrap()),
        )
        .unwrap();
        acked.recv().unwrap();
        wal.sync().unwrap();
        std::mem::forget(wal);
        let (_wal, recovered) = Wal::open(&config(dir.path(), policy)).unwrap();
        let live: Vec<u64> = recovered
            .moves
            .iter()
            .map(|(_, bytes)| u64::from_be_bytes(bytes[..8].try_into().unwrap()))
            .collect();
        // Move 0's segment was deleted once 10 replaced it: 10 comes back after 1 (the core
        // restores each sender's nonce order), and 0 never comes back.
        assert_eq!(live, [1, 10]);
    }

    #[test]
    fn a_full_queue_and_an_oversized_move_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(&config(dir.path(), FsyncPolicy::PerMove)).unwrap();
        assert!(matches!(
            wal.append(
                hash(1),
                vec![0; WAL_RECORD_BYTES_MAX],
                Box::new(|| panic!("never acked"))
            ),
            Err(WalError::RecordTooLarge { .. })
        ));
        wal.queued_moves
            .store(WAL_QUEUE_MOVES_MAX, Ordering::Release);
        assert!(!wal.has_room());
        assert!(matches!(
            wal.append(hash(2), vec![1], Box::new(|| panic!("never acked"))),
            Err(WalError::Full { .. })
        ));
        wal.queued_moves.store(0, Ordering::Release);
        wal.sync().unwrap();
        drop(wal);
        let (_wal, recovered) = Wal::open(&config(dir.path(), FsyncPolicy::PerMove)).unwrap();
        assert!(recovered.moves.is_empty());
    }
}
