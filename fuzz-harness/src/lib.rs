//! What every fuzz target checks, as plain functions over bytes.
//!
//! Each harness takes the bytes a peer or a player could send, feeds them to the decoders that
//! would see them, and asserts properties rather than only "did not panic": a value that
//! decodes is its own canonical encoding and decodes again to itself, bounded decoders refuse
//! what exceeds their bound, and a refused input leaves a state machine as it was. The
//! cargo-fuzz targets in `fuzz/` call these functions; `tests/corpus.rs` replays every corpus
//! and regression file through them on stable, so CI exercises them without a nightly
//! toolchain. [`seeds`] builds the valid encodings the corpus starts from.
//!
//! Decoders of crates built on RocksDB (group messages, the sequencer mesh) are in [`node`],
//! behind the default feature `node-crates`, which the cargo-fuzz crate turns off.

pub mod blocks;
pub mod codec;
pub mod da;
pub mod frames;
pub mod json_rpc;
pub mod kcp;
pub mod moves;
#[cfg(feature = "node-crates")]
pub mod node;
pub mod pbft;
pub mod seeds;

/// A harness: bytes in, assertions inside.
pub type Harness = fn(&[u8]);

/// Every harness the cargo-fuzz crate runs, by target name (the directory of its corpus).
pub const FUZZ_TARGETS: &[(&str, Harness)] = &[
    ("moves", moves::fuzz),
    ("blocks", blocks::fuzz),
    ("pbft", pbft::fuzz),
    ("frames", frames::fuzz),
    ("kcp", kcp::fuzz),
    ("da_chunks", da::fuzz),
    ("json_rpc", json_rpc::fuzz),
];

/// The harness that replays a corpus directory on stable: the fuzz target's own, plus, for the
/// message kinds that also travel inside RocksDB-based crates, their envelopes there.
pub fn stable_harness(target: &str) -> Option<Harness> {
    #[cfg(feature = "node-crates")]
    if let Some(harness) = node::stable_harness(target) {
        return Some(harness);
    }
    FUZZ_TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, harness)| *harness)
}
