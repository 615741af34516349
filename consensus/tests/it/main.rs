//! Integration tests of the PBFT core, run through the seeded `Cluster` harness.

mod aggregate;
mod byzantine;
mod codec;
mod epoch;
mod normal;
mod persist;
mod reject;
mod safety;
mod transfer;
mod world;

use primitives::B256;

/// A distinct value per `index`.
pub fn value(index: u64) -> B256 {
    let mut raw = [0u8; 32];
    raw[..8].copy_from_slice(&index.to_be_bytes());
    raw[31] = 0xAA;
    B256::from(raw)
}
