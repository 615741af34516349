//! Weak DA: block bodies in S3-style object storage.
//!
//! Sequencers push each block body here as soon as it is packed, with no consensus, so that any
//! sequencer or execution node can pull a body it lacks without asking the origin sequencer. The
//! key names the sequencer, the height and the Merkle root, so an object is content-addressed;
//! every read is decoded with bounds and checked against the header's root before it is used.
//!
//! The store is any `object_store` backend: a local directory by default. (S3 by URL, retries
//! with backoff and listing come with the [da] work.)

use std::{path::Path as FsPath, sync::Arc};

use object_store::{ObjectStore, ObjectStoreExt, PutPayload, local::LocalFileSystem, path::Path};
use primitives::{BlockBody, BlockHeader, DecodeError, block::BlockId, codec::Decode};
use tracing::trace;

/// Why a weak-DA read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum WeakDaError {
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The object is not a valid body.
    #[error("body does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The object decodes but its Merkle root is not the header's.
    #[error("body root {actual} does not match header root {expected}")]
    RootMismatch {
        /// The header's root.
        expected: primitives::B256,
        /// The root of what was read.
        actual: primitives::B256,
    },
    /// The object is larger than the header says.
    #[error("body is {len} bytes, header says {expected}")]
    SizeMismatch {
        /// Bytes read.
        len: usize,
        /// Bytes the header declares.
        expected: u32,
    },
}

/// A handle on weak DA; cheap to clone.
#[derive(Clone, Debug)]
pub struct WeakDa {
    store: Arc<dyn ObjectStore>,
}

impl WeakDa {
    /// Weak DA in a local directory (created if missing).
    pub fn local(directory: &FsPath) -> Result<Self, WeakDaError> {
        std::fs::create_dir_all(directory).map_err(|error| {
            WeakDaError::Store(object_store::Error::Generic {
                store: "local",
                source: Box::new(error),
            })
        })?;
        Ok(Self::from_store(Arc::new(
            LocalFileSystem::new_with_prefix(directory)?,
        )))
    }

    /// Weak DA on any object store.
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        WeakDa { store }
    }

    /// The object key of a block body: sequencer, height and root.
    pub fn key(header: &BlockHeader) -> Path {
        Path::from(format!(
            "blocks/{}/{:020}-{}",
            header.sequencer.0, header.height, header.root
        ))
    }

    /// Stores an encoded body under its header's key.
    pub async fn put_body(
        &self,
        header: &BlockHeader,
        encoded_body: Vec<u8>,
    ) -> Result<(), WeakDaError> {
        let key = Self::key(header);
        self.store.put(&key, PutPayload::from(encoded_body)).await?;
        trace!(target: "da_weak", %key, "put body");
        Ok(())
    }

    /// Reads the body of `header` and checks it against the header's size and root.
    pub async fn get_body(&self, header: &BlockHeader) -> Result<BlockBody, WeakDaError> {
        let bytes = self.store.get(&Self::key(header)).await?.bytes().await?;
        verify_body(header, &bytes)
    }
}

/// Decodes a body pulled from anywhere and checks it against its header.
pub fn verify_body(header: &BlockHeader, bytes: &[u8]) -> Result<BlockBody, WeakDaError> {
    if bytes.len() != header.body_bytes as usize {
        return Err(WeakDaError::SizeMismatch {
            len: bytes.len(),
            expected: header.body_bytes,
        });
    }
    let body = BlockBody::from_bytes(bytes)?;
    let actual = body.root();
    if actual != header.root {
        return Err(WeakDaError::RootMismatch {
            expected: header.root,
            actual,
        });
    }
    Ok(body)
}

/// Names the block a body belongs to, for logs.
pub fn describe(id: &BlockId) -> String {
    format!("{}#{}", id.sequencer, id.height)
}

#[cfg(test)]
mod tests {
    use primitives::{
        AccountAccess, AccountKey, Address, B256, Bytes, SpaceAccessList, Transaction, U256,
        codec::Encode,
    };

    use super::*;

    fn body() -> BlockBody {
        let key = AccountKey::from_seed(1);
        let moves = (0..3)
            .map(|nonce| {
                Transaction {
                    chain_id: 1,
                    nonce,
                    to: Address::repeat_byte(9),
                    value: U256::ZERO,
                    data: Bytes::new(),
                    gas_limit: 50_000,
                    gas_price: 0,
                    sponsor: None,
                    access_list: SpaceAccessList::new([AccountAccess::read(key.address())]),
                }
                .sign(&key)
            })
            .collect();
        BlockBody { moves }
    }

    #[tokio::test]
    async fn round_trips_and_detects_tampering() {
        let directory = tempfile::tempdir().expect("temp dir");
        let da = WeakDa::local(directory.path()).expect("local store");
        let body = body();
        let encoded = body.to_bytes();
        let key = AccountKey::from_seed(3);
        let header = BlockHeader::seal(&key, 0, B256::ZERO, 0, &body, encoded.len() as u32);
        da.put_body(&header, encoded.clone()).await.expect("put");
        assert_eq!(da.get_body(&header).await.expect("get"), body);

        // Same size, one byte flipped inside a move: the root no longer matches.
        let mut tampered = encoded.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        da.put_body(&header, tampered).await.expect("put");
        assert!(matches!(
            da.get_body(&header).await,
            Err(WeakDaError::RootMismatch { .. } | WeakDaError::Decode(_))
        ));

        let mut missing = header.clone();
        missing.height = 1;
        assert!(matches!(
            da.get_body(&missing).await,
            Err(WeakDaError::Store(_))
        ));
    }
}
