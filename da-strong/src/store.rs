//! A DA node's chunks in RocksDB, one value per (commitment, index).
//!
//! Chunks are verified before they are written and again when they are read (the pair check of
//! STYLE.md), so a bit flipped on disk is reported ([`DaError::StoreCorrupted`]) rather than
//! served. The key is the 32-byte commitment then the big-endian index, so all chunks of one
//! commitment are adjacent and a prefix scan lists them.

use std::path::Path;

use primitives::{
    B256,
    codec::{Decode, Encode},
};
use rocksdb::{DB, Direction, IteratorMode, Options};

use crate::{coding::Chunk, error::DaError};

/// Chunks held by one DA node.
#[derive(Debug)]
pub struct ChunkStore {
    db: DB,
}

fn key(commitment: &B256, index: u16) -> [u8; 34] {
    let mut key = [0u8; 34];
    key[..32].copy_from_slice(commitment.as_slice());
    key[32..].copy_from_slice(&index.to_be_bytes());
    key
}

impl ChunkStore {
    /// Opens (creating if missing) the store in `directory`.
    pub fn open(directory: &Path) -> Result<Self, DaError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        Ok(ChunkStore {
            db: DB::open(&options, directory)?,
        })
    }

    /// Stores `chunk` of `commitment` after checking it proves against the commitment.
    /// Storing the same chunk again changes nothing.
    pub fn put(&self, commitment: &B256, chunk: &Chunk) -> Result<(), DaError> {
        chunk.verify(commitment)?;
        self.db
            .put(key(commitment, chunk.index), chunk.to_bytes())?;
        Ok(())
    }

    /// The verified chunk `index` of `commitment`, if held.
    pub fn get(&self, commitment: &B256, index: u16) -> Result<Option<Chunk>, DaError> {
        let Some(bytes) = self.db.get_pinned(key(commitment, index))? else {
            return Ok(None);
        };
        let corrupted = || DaError::StoreCorrupted {
            commitment: *commitment,
            index,
        };
        let chunk = Chunk::from_bytes(&bytes[..]).map_err(|_| corrupted())?;
        if chunk.index != index || chunk.verify(commitment).is_err() {
            return Err(corrupted());
        }
        Ok(Some(chunk))
    }

    /// Indices held for `commitment`, ascending.
    pub fn indices(&self, commitment: &B256) -> Result<Vec<u16>, DaError> {
        let start = key(commitment, 0);
        let mut indices = Vec::new();
        for entry in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (stored_key, _) = entry?;
            if stored_key.len() != 34 || stored_key[..32] != *commitment.as_slice() {
                break;
            }
            indices.push(u16::from_be_bytes([stored_key[32], stored_key[33]]));
        }
        Ok(indices)
    }

    /// Overwrites a stored value without checks, to test that reads catch disk corruption.
    #[doc(hidden)]
    pub fn put_raw_for_tests(
        &self,
        commitment: &B256,
        index: u16,
        value: &[u8],
    ) -> Result<(), DaError> {
        self.db.put(key(commitment, index), value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::{ErasureParams, encode_payload};

    #[test]
    fn chunks_survive_reopening_and_disk_corruption_is_reported() {
        let directory = tempfile::tempdir().expect("temp dir");
        let params = ErasureParams::new(2, 3).expect("params");
        let encoded = encode_payload(b"a finalized batch", params).expect("encode");
        let commitment = encoded.commitment;
        {
            let store = ChunkStore::open(directory.path()).expect("open");
            for chunk in &encoded.chunks[..2] {
                store.put(&commitment, chunk).expect("put");
            }
            let mut bad = encoded.chunks[2].clone();
            bad.bytes[0] ^= 1;
            assert!(matches!(
                store.put(&commitment, &bad),
                Err(DaError::BadChunk { .. })
            ));
        }
        let store = ChunkStore::open(directory.path()).expect("reopen");
        assert_eq!(store.indices(&commitment).expect("indices"), vec![0, 1]);
        assert_eq!(
            store.get(&commitment, 1).expect("get"),
            Some(encoded.chunks[1].clone())
        );
        assert_eq!(store.get(&commitment, 2).expect("get"), None);
        let mut flipped = encoded.chunks[0].to_bytes();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        store
            .put_raw_for_tests(&commitment, 0, &flipped)
            .expect("raw put");
        assert!(matches!(
            store.get(&commitment, 0),
            Err(DaError::StoreCorrupted { index: 0, .. })
        ));
    }
}
