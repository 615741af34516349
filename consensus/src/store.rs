//! A durable home for a replica's [`Record`]s: an append-only log with length and checksum
//! framing, synced on every append, that truncates a torn tail on recovery and compacts itself
//! into one snapshot at stable checkpoints.
//!
//! # Format
//! The log starts with the 8 bytes [`LOG_MAGIC`]; then frames, each
//! `length: u32 (big endian) || checksum: 8 bytes || payload`, where the checksum is the first 8
//! bytes of blake3 over the length and the payload. A payload is a tag byte then either one
//! [`Record`] ([`FRAME_RECORD`]) or a whole [`ReplicaState`] ([`FRAME_SNAPSHOT`], written first
//! by a compaction).
//!
//! # Recovery
//! Frames are read in order and folded into a [`ReplicaState`]. A crash in the middle of an
//! append leaves a *torn tail*: a last frame whose header or payload runs past the end of the
//! log, or whose checksum fails with nothing after it. It was never synced, so the driver never
//! sent what depended on it; recovery cuts it off and goes on from the last whole frame. A frame
//! that fails its checksum with more frames after it, or that checks but does not decode or
//! apply, is corruption: recovery stops with a typed [`LogError`] rather than guess, since
//! a replica that forgot a promise could break it.
//!
//! # Media
//! [`LogMedium`] is the byte store under the log: [`FileMedium`], a file synced with `fsync`
//! and compacted by writing a new file and renaming it over the old one, or [`MemoryMedium`],
//! bytes in memory, which the seeded world uses to crash and restart replicas (it keeps the
//! bytes across a crash and can tear a tail off, as a crash in the middle of a write would).

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    marker::PhantomData,
    path::{Path, PathBuf},
};

use primitives::{Decode, DecodeError, Decoder, Encode};
use tracing::{debug, warn};

use crate::{
    persist::{Record, ReplicaState, StateError},
    value::Value,
};

/// The first bytes of every replica log.
pub const LOG_MAGIC: [u8; 8] = *b"TRPBFT\x00\x01";

/// Bytes before a frame's payload: the length and the checksum.
pub const FRAME_HEADER_BYTES: usize = 4 + 8;

/// Largest frame payload: a snapshot holds a window of proposals and prepared proofs and the
/// retained decided entries, each of which may be a full batch.
pub const FRAME_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Payload tag of a frame holding one [`Record`].
pub const FRAME_RECORD: u8 = 0;
/// Payload tag of a frame holding a whole [`ReplicaState`].
pub const FRAME_SNAPSHOT: u8 = 1;

/// By default a log compacts at a stable checkpoint once this many bytes were appended since
/// its last snapshot.
pub const COMPACT_AFTER_BYTES: u64 = 4 * 1024 * 1024;

/// Why a replica log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The medium failed.
    #[error("replica log i/o: {0}")]
    Io(#[from] io::Error),
    /// The log does not start with [`LOG_MAGIC`].
    #[error("not a replica log (bad magic)")]
    BadMagic,
    /// A frame whose checksum fails, with more of the log after it.
    #[error("corrupt frame at byte {offset}: checksum mismatch")]
    Checksum {
        /// Where the frame starts.
        offset: u64,
    },
    /// A frame that declares a length beyond [`FRAME_BYTES_MAX`], with the log going on past it.
    #[error("corrupt frame at byte {offset}: length {length} beyond the bound")]
    Oversized {
        /// Where the frame starts.
        offset: u64,
        /// The declared length.
        length: u64,
    },
    /// A frame that checks but does not decode.
    #[error("undecodable frame at byte {offset}: {error}")]
    Decode {
        /// Where the frame starts.
        offset: u64,
        /// Why.
        error: DecodeError,
    },
    /// [`ReplicaLog::start_from`] on a log that holds frames already.
    #[error("the replica log is not empty")]
    NotEmpty,
    /// A frame that decodes but cannot follow the frames before it.
    #[error("inconsistent frame at byte {offset}: {error}")]
    State {
        /// Where the frame starts.
        offset: u64,
        /// Why.
        error: StateError,
    },
}

/// The bytes under a [`ReplicaLog`].
pub trait LogMedium {
    /// Every byte stored.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    /// Appends `bytes` and makes them durable before returning.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Cuts the store to its first `len` bytes, durably.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Replaces the whole content with `bytes`, atomically: after a crash the store holds
    /// either the old content or the new one.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// A log in one file, synced with `fsync` (`sync_data`) on every append.
#[derive(Debug)]
pub struct FileMedium {
    path: PathBuf,
    file: File,
}

impl FileMedium {
    /// Opens (or creates) the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileMedium> {
        let path = path.as_ref().to_path_buf();
        let file = Self::open_file(&path)?;
        Ok(FileMedium { path, file })
    }

    fn open_file(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the directory holding the file, so that a rename or a creation survives a crash.
    fn sync_directory(&self) -> io::Result<()> {
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(directory)?.sync_all()
    }
}

impl LogMedium for FileMedium {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(&self.path)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".compact");
        let temporary = PathBuf::from(temporary);
        {
            let mut file = File::create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        self.sync_directory()?;
        self.file = Self::open_file(&self.path)?;
        Ok(())
    }
}

/// A log in memory. What it holds survives dropping the [`ReplicaLog`] over it, as a file
/// survives a process: the seeded world keeps it across a replica's crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryMedium {
    bytes: Vec<u8>,
}

impl MemoryMedium {
    /// An empty medium.
    pub fn new() -> MemoryMedium {
        MemoryMedium::default()
    }

    /// The bytes held.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends `bytes` that were never synced: what a crash in the middle of a write leaves.
    pub fn tear(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

impl LogMedium for MemoryMedium {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.bytes.clone())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.bytes.truncate(len);
        Ok(())
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes = bytes.to_vec();
        Ok(())
    }
}

/// What recovery found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Whole frames read (a snapshot counts as one).
    pub frames: u64,
    /// Bytes of a torn tail cut off.
    pub truncated: u64,
}

/// A replica's durable log over a [`LogMedium`]: append the records a replica emits, recover
/// its [`ReplicaState`] after a crash.
#[derive(Debug)]
pub struct ReplicaLog<V, M> {
    medium: M,
    state: ReplicaState<V>,
    /// Bytes of the log (magic included).
    len: u64,
    /// Bytes appended since the last snapshot (or since the start).
    since_snapshot: u64,
    compact_after: u64,
    compactions: u64,
    _value: PhantomData<V>,
}

/// A replica log in a file.
pub type FileLog<V> = ReplicaLog<V, FileMedium>;

impl<V: Value> FileLog<V> {
    /// Opens the log at `path`, creating it if missing, and recovers its state.
    pub fn open_path(path: impl AsRef<Path>) -> Result<(FileLog<V>, Recovery), LogError> {
        let medium = FileMedium::open(path)?;
        let opened = ReplicaLog::open(medium)?;
        // A freshly created file must survive a crash too.
        opened.0.medium.sync_directory()?;
        Ok(opened)
    }
}

/// A frame around `payload`.
fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let length = u32::try_from(payload.len()).expect("frames are bounded far below u32::MAX");
    assert!(payload.len() <= FRAME_BYTES_MAX, "frame beyond the bound");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&checksum(&length.to_be_bytes(), payload));
    out.extend_from_slice(payload);
}

fn checksum(length: &[u8; 4], payload: &[u8]) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(length);
    hasher.update(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    out
}

/// Where the whole frames of `bytes` end, and the state they fold into.
fn replay<V: Value>(bytes: &[u8]) -> Result<(ReplicaState<V>, u64, u64), LogError> {
    let mut state = ReplicaState::genesis();
    let mut offset = LOG_MAGIC.len();
    let mut frames = 0;
    while offset < bytes.len() {
        let at = offset as u64;
        let rest = &bytes[offset..];
        if rest.len() < FRAME_HEADER_BYTES {
            break; // Torn inside the header.
        }
        let length_bytes: [u8; 4] = rest[..4].try_into().expect("4 bytes");
        let length = u32::from_be_bytes(length_bytes) as usize;
        let end = FRAME_HEADER_BYTES + length;
        if end > rest.len() {
            break; // Torn inside the payload (or a garbage length at the tail).
        }
        if length > FRAME_BYTES_MAX {
            return Err(LogError::Oversized {
                offset: at,
                length: length as u64,
            });
        }
        let payload = &rest[FRAME_HEADER_BYTES..end];
        if checksum(&length_bytes, payload)[..] != rest[4..FRAME_HEADER_BYTES] {
            if end == rest.len() {
                break; // The last frame, never synced whole.
            }
            return Err(LogError::Checksum { offset: at });
        }
        let mut decoder = Decoder::new(payload);
        let applied = match decoder.u8() {
            Ok(FRAME_RECORD) => Record::<V>::decode(&mut decoder).map(Some),
            Ok(FRAME_SNAPSHOT) => ReplicaState::<V>::decode(&mut decoder).map(|snapshot| {
                state = snapshot;
                None
            }),
            Ok(tag) => Err(DecodeError::UnknownTag {
                what: "replica log frame",
                tag,
            }),
            Err(error) => Err(error),
        }
        .and_then(|record| decoder.finish().map(|()| record))
        .map_err(|error| LogError::Decode { offset: at, error })?;
        if let Some(record) = applied {
            state
                .apply(&record)
                .map_err(|error| LogError::State { offset: at, error })?;
        }
        frames += 1;
        offset += end;
    }
    Ok((state, offset as u64, frames))
}

impl<V: Value, M: LogMedium> ReplicaLog<V, M> {
    /// Opens the log on `medium`: recovers the state its whole frames fold into, cutting off a
    /// torn tail, or starts an empty log.
    pub fn open(mut medium: M) -> Result<(Self, Recovery), LogError> {
        let bytes = medium.read_all()?;
        if bytes.len() < LOG_MAGIC.len() {
            if !LOG_MAGIC.starts_with(&bytes) {
                return Err(LogError::BadMagic);
            }
            // Empty, or torn while the magic was written.
            medium.replace(&LOG_MAGIC)?;
            let log = Self::with(medium, ReplicaState::genesis(), LOG_MAGIC.len() as u64);
            let recovery = Recovery {
                frames: 0,
                truncated: bytes.len() as u64,
            };
            return Ok((log, recovery));
        }
        if bytes[..LOG_MAGIC.len()] != LOG_MAGIC {
            return Err(LogError::BadMagic);
        }
        let (state, whole, frames) = replay::<V>(&bytes)?;
        let truncated = bytes.len() as u64 - whole;
        if truncated > 0 {
            warn!(target: "consensus", whole, truncated, "replica log: cutting off a torn tail");
            medium.truncate(whole)?;
        }
        debug!(target: "consensus", frames, view = state.view(),
            last_committed = state.last_committed(), "replica log recovered");
        let mut log = Self::with(medium, state, whole);
        log.since_snapshot = whole;
        Ok((log, Recovery { frames, truncated }))
    }

    fn with(medium: M, state: ReplicaState<V>, len: u64) -> Self {
        ReplicaLog {
            medium,
            state,
            len,
            since_snapshot: 0,
            compact_after: COMPACT_AFTER_BYTES,
            compactions: 0,
            _value: PhantomData,
        }
    }

    /// Compacts at a stable checkpoint once `bytes` were appended since the last snapshot
    /// (0: at every stable checkpoint).
    pub fn set_compact_after(&mut self, bytes: u64) {
        self.compact_after = bytes;
    }

    /// The state the log's records fold into: what a replica restarted now continues from.
    pub fn state(&self) -> &ReplicaState<V> {
        &self.state
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len <= LOG_MAGIC.len() as u64
    }

    /// Compactions done since the log was opened.
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// The medium, for a driver that closes the log.
    pub fn into_medium(self) -> M {
        self.medium
    }

    /// Makes `records` durable (one write and one sync for all of them) and folds them into
    /// the state; at a stable checkpoint, compacts if enough was appended since the last
    /// snapshot. The replica's transmits and events that follow these records may go out once
    /// this returns `Ok`.
    pub fn append(&mut self, records: &[Record<V>]) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        let mut payload = Vec::new();
        let mut stable = false;
        for record in records {
            // Check before writing: a record that cannot follow is a bug in the caller, and must
            // not reach the log, where it would make recovery fail.
            let offset = self.len + bytes.len() as u64;
            self.state
                .apply(record)
                .map_err(|error| LogError::State { offset, error })?;
            stable |= matches!(record, Record::Stable { .. });
            payload.clear();
            payload.push(FRAME_RECORD);
            record.encode(&mut payload);
            frame(&payload, &mut bytes);
        }
        self.medium.append(&bytes)?;
        self.len += bytes.len() as u64;
        self.since_snapshot += bytes.len() as u64;
        if stable && self.since_snapshot >= self.compact_after {
            self.compact()?;
        }
        Ok(())
    }

    /// Starts an empty log from `state` (written as a snapshot): a node that joins the
    /// validator set at an epoch start writes [`ReplicaState::joining`] before it builds its
    /// replica, so that its records follow it. Refused on a log that holds frames.
    pub fn start_from(&mut self, state: ReplicaState<V>) -> Result<(), LogError> {
        if !self.is_empty() {
            return Err(LogError::NotEmpty);
        }
        self.state = state;
        self.compact()
    }

    /// Rewrites the log as one snapshot of the state, atomically.
    pub fn compact(&mut self) -> Result<(), LogError> {
        let mut payload = vec![FRAME_SNAPSHOT];
        self.state.encode(&mut payload);
        let mut bytes = LOG_MAGIC.to_vec();
        frame(&payload, &mut bytes);
        self.medium.replace(&bytes)?;
        self.len = bytes.len() as u64;
        self.since_snapshot = 0;
        self.compactions += 1;
        debug!(target: "consensus", bytes = self.len, "replica log compacted");
        Ok(())
    }
}
