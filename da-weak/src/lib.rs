//! Weak DA: block bodies in S3-style object storage.
//!
//! Sequencers push each block body here as soon as it is packed, with no consensus, so that any
//! sequencer or execution node can pull a body it lacks without asking the origin sequencer.
//!
//! # Bird's-eye view
//! - **Stores.** Any `object_store` backend: a local directory by default ([`WeakDa::local`]),
//!   S3 or any S3-compatible server by URL ([`WeakDa::from_url`] with
//!   `s3://bucket?endpoint=http://host:port&region=us-east-1`, credentials from the usual
//!   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment). S3 requests are retried with
//!   exponential backoff by `object_store` itself ([`s3_retry_config`]); on top of that every
//!   call is retried [`RETRY_ATTEMPTS_MAX`] times on a transient error, with its own backoff, so
//!   a local store behaves the same.
//! - **Keys are content addresses.** `blocks/<sequencer>/<height, 20 digits>/<root>`: the key
//!   names the sequencer, the height and the Merkle root, so two bodies never share a key and a
//!   sequencer's blocks list in height order ([`WeakDa::list_blocks`]).
//! - **Nothing read is trusted.** Every read is bounded by the header's size, decoded with
//!   bounds, and checked against the header's root ([`verify_body`]); a tampered object is a
//!   typed error ([`WeakDaError::RootMismatch`], [`WeakDaError::SizeMismatch`] or
//!   [`WeakDaError::Decode`]), never a body.
//! - Logs go to the `da_weak` target; metrics are listed in [`metrics`].

pub mod error;
pub mod metrics;

use std::{path::Path as FsPath, str::FromStr, sync::Arc, time::Duration};

use futures::TryStreamExt;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    local::LocalFileSystem,
    path::Path,
};
use primitives::{Address, B256, BlockBody, BlockHeader, NodeId, block::BlockId, codec::Decode};
use tracing::{debug, trace, warn};

pub use crate::error::WeakDaError;

/// Attempts of one store call on our side (each S3 attempt has its own retries inside).
pub const RETRY_ATTEMPTS_MAX: u32 = 3;
/// Backoff before our second attempt; doubled for each later one.
pub const RETRY_BACKOFF_MS_INITIAL: u64 = 20;
/// Most entries one [`WeakDa::list_blocks`] call returns.
pub const LIST_BLOCKS_MAX: usize = 10_000;
/// Digits of the zero-padded height in a key (`u64::MAX` has 20).
const HEIGHT_DIGITS: usize = 20;

/// A block body found in the store by [`WeakDa::list_blocks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    /// The sequencer's block height.
    pub height: u64,
    /// The Merkle root the key names.
    pub root: B256,
    /// Object size in bytes.
    pub size: u64,
}

/// A handle on weak DA; cheap to clone.
#[derive(Clone, Debug)]
pub struct WeakDa {
    store: Arc<dyn ObjectStore>,
}

/// Retries `object_store` applies to each S3 request: backoff from 50 ms up to 2 s, at most 5
/// retries and 30 s in all, so a stalled server surfaces within a batch interval or two.
pub fn s3_retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(30),
    }
}

impl WeakDa {
    /// Weak DA in a local directory (created if missing).
    pub fn local(directory: &FsPath) -> Result<Self, WeakDaError> {
        std::fs::create_dir_all(directory).map_err(|source| WeakDaError::Directory {
            path: directory.display().to_string(),
            source,
        })?;
        Ok(Self::from_store(Arc::new(
            LocalFileSystem::new_with_prefix(directory)?,
        )))
    }

    /// Weak DA from a URL: `s3://bucket?endpoint=..&region=..` (any `aws_*` option of
    /// `object_store` as a query pair), `file:///path`, or a plain directory path.
    pub fn from_url(url: &str) -> Result<Self, WeakDaError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return Self::s3(url, rest);
        }
        let directory = url.strip_prefix("file://").unwrap_or(url);
        if directory.is_empty() || directory.contains("://") {
            return Err(WeakDaError::InvalidUrl {
                url: url.to_string(),
                why: "expected s3://bucket?..., file:///dir or a directory".into(),
            });
        }
        Self::local(FsPath::new(directory))
    }

    fn s3(url: &str, rest: &str) -> Result<Self, WeakDaError> {
        let invalid = |why: String| WeakDaError::InvalidUrl {
            url: url.to_string(),
            why,
        };
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains('/') {
            return Err(invalid("the bucket name is missing or has a path".into()));
        }
        // Credentials, region and endpoint from AWS_* variables first; the URL overrides them.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(s3_retry_config());
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("query pair {pair:?} has no '='")))?;
            if name == "endpoint" && value.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            let key = AmazonS3ConfigKey::from_str(name)
                .map_err(|_| invalid(format!("unknown S3 option {name:?}")))?;
            builder = builder.with_config(key, value);
        }
        install_tls_provider();
        let store = builder.build()?;
        debug!(target: "da_weak", bucket, "weak DA on S3");
        Ok(Self::from_store(Arc::new(store)))
    }

    /// Weak DA on any object store.
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        WeakDa { store }
    }

    /// The underlying store (for tools and tests that inspect or damage objects).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object key of a block body: sequencer, zero-padded height and root.
    pub fn key(header: &BlockHeader) -> Path {
        block_key(&header.sequencer, header.height, &header.root)
    }

    /// Stores an encoded body under its header's key.
    pub async fn put_body(
        &self,
        header: &BlockHeader,
        encoded_body: Vec<u8>,
    ) -> Result<(), WeakDaError> {
        let started = std::time::Instant::now();
        let key = Self::key(header);
        let bytes = encoded_body.len();
        let payload = PutPayload::from(encoded_body);
        retrying("put", || self.store.put(&key, payload.clone())).await?;
        metrics::put(bytes, started.elapsed());
        trace!(target: "da_weak", %key, bytes, "put body");
        Ok(())
    }

    /// Reads the body of `header` and checks it against the header's size and root.
    pub async fn get_body(&self, header: &BlockHeader) -> Result<BlockBody, WeakDaError> {
        let started = std::time::Instant::now();
        let key = Self::key(header);
        let bytes = retrying("get", || async {
            self.store.get(&key).await?.bytes().await
        })
        .await
        .map_err(|error| match error {
            object_store::Error::NotFound { .. } => WeakDaError::NotFound {
                key: key.to_string(),
            },
            other => WeakDaError::Store(other),
        })?;
        let body = verify_body(header, &bytes).inspect_err(|error| {
            metrics::rejected();
            warn!(target: "da_weak", %key, %error, "refused body");
        })?;
        metrics::get(started.elapsed());
        Ok(body)
    }

    /// The bodies stored for `sequencer` from `height_from` on, in height order, at most `limit`
    /// (capped at [`LIST_BLOCKS_MAX`]). Keys that are not ours are skipped.
    pub async fn list_blocks(
        &self,
        sequencer: &NodeId,
        height_from: u64,
        limit: usize,
    ) -> Result<Vec<StoredBlock>, WeakDaError> {
        let limit = limit.min(LIST_BLOCKS_MAX);
        let prefix = Path::from(format!("blocks/{}", lower_hex(sequencer.0.as_slice())));
        // Keys sort by height because heights are zero-padded; `height_from` with no root sorts
        // before every key of that height and after every key of the heights below.
        let offset = Path::from(format!(
            "blocks/{}/{height_from:0HEIGHT_DIGITS$}",
            lower_hex(sequencer.0.as_slice())
        ));
        let objects: Vec<object_store::ObjectMeta> = retrying("list", || {
            self.store
                .list_with_offset(Some(&prefix), &offset)
                .try_collect()
        })
        .await?;
        let mut blocks: Vec<StoredBlock> = objects
            .iter()
            .filter_map(|meta| parse_key(&meta.location, meta.size))
            .filter(|block| block.height >= height_from)
            .collect();
        blocks.sort_by_key(|block| (block.height, block.root));
        blocks.truncate(limit);
        Ok(blocks)
    }
}

/// The key of the body of block `height` of `sequencer` with Merkle root `root`.
pub fn block_key(sequencer: &NodeId, height: u64, root: &B256) -> Path {
    Path::from(format!(
        "blocks/{}/{height:0HEIGHT_DIGITS$}/{}",
        lower_hex(sequencer.0.as_slice()),
        lower_hex(root.as_slice())
    ))
}

fn parse_key(location: &Path, size: u64) -> Option<StoredBlock> {
    let mut parts = location.parts();
    let (blocks, sequencer, height, root) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if blocks.as_ref() != "blocks" || parts.next().is_some() {
        return None;
    }
    Address::from_str(sequencer.as_ref()).ok()?;
    if height.as_ref().len() != HEIGHT_DIGITS {
        return None;
    }
    Some(StoredBlock {
        height: height.as_ref().parse().ok()?,
        root: B256::from_str(root.as_ref()).ok()?,
        size,
    })
}

fn lower_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Whether a store error may pass if the call is repeated.
fn is_transient(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::Generic { .. })
}

/// Runs `call` up to [`RETRY_ATTEMPTS_MAX`] times while it fails transiently, doubling the
/// pause between attempts from [`RETRY_BACKOFF_MS_INITIAL`].
async fn retrying<T, F, Fut>(operation: &'static str, mut call: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let mut backoff = Duration::from_millis(RETRY_BACKOFF_MS_INITIAL);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(error) if attempt < RETRY_ATTEMPTS_MAX && is_transient(&error) => {
                metrics::retried();
                debug!(target: "da_weak", operation, attempt, %error, "retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// reqwest's rustls is built without a bundled provider so the workspace keeps one crypto stack
/// (ring, which quinn uses too); it needs a process default before the first client is built.
fn install_tls_provider() {
    // An error only says a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// Test support shared by the unit tests, the integration tests and benchmarks.
pub mod testing {
    use primitives::{
        AccountAccess, AccountKey, Address, B256, BlockBody, BlockHeader, Bytes, SpaceAccessList,
        Transaction, U256, codec::Encode,
    };

    /// A signed header and its encoded body of `moves` transfers, each carrying `data_bytes`
    /// of call data, at `height` of the sequencer keyed by `sequencer_seed`.
    pub fn block(
        sequencer_seed: u64,
        height: u64,
        moves: u64,
        data_bytes: usize,
    ) -> (BlockHeader, BlockBody, Vec<u8>) {
        let player = AccountKey::from_seed(1_000 + height);
        let body = BlockBody {
            moves: (0..moves)
                .map(|nonce| {
                    Transaction {
                        chain_id: 1,
                        nonce,
                        to: Address::repeat_byte(9),
                        value: U256::ZERO,
                        data: Bytes::from(vec![(nonce % 251) as u8; data_bytes]),
                        gas_limit: 50_000,
                        gas_price: 0,
                        sponsor: None,
                        access_list: SpaceAccessList::new([AccountAccess::read(player.address())]),
                    }
                    .sign(&player)
                })
                .collect(),
        };
        let encoded = body.to_bytes();
        let sequencer = AccountKey::from_seed(sequencer_seed);
        let header = BlockHeader::seal(
            &sequencer,
            height,
            B256::ZERO,
            0,
            &body,
            encoded.len() as u32,
        );
        (header, body, encoded)
    }

    /// Where the `s3s-fs` binary is looked for when `TICKRATE_S3S_FS` is not set
    /// (`scripts/setup.sh` installs it there).
    pub const S3S_FS_DEFAULT_PATH: &str = "/var/cache/tickrate-tools/bin/s3s-fs";
    /// Access key the test server is started with.
    pub const S3_ACCESS_KEY: &str = "tickrate-test";
    /// Secret key the test server is started with.
    pub const S3_SECRET_KEY: &str = "tickrate-test-secret";
    /// Bucket the test server is started with.
    pub const S3_BUCKET: &str = "weak-da";
    /// How long the server may take to accept connections.
    const S3_START_TIMEOUT_MS: u64 = 15_000;

    /// The `s3s-fs` binary: `TICKRATE_S3S_FS`, else [`S3S_FS_DEFAULT_PATH`], if it exists.
    pub fn s3s_fs_binary() -> Option<std::path::PathBuf> {
        let path = std::env::var_os("TICKRATE_S3S_FS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| S3S_FS_DEFAULT_PATH.into());
        path.is_file().then_some(path)
    }

    /// A real S3 server (`s3s-fs`, the s3s project's file-system-backed server) on a free
    /// loopback port over a temporary directory, with one bucket; killed on drop.
    #[derive(Debug)]
    pub struct S3Server {
        child: std::process::Child,
        /// Its address.
        pub address: std::net::SocketAddr,
        _root: tempfile::TempDir,
    }

    impl S3Server {
        /// Starts `binary` and waits until it accepts TCP connections.
        pub fn start(binary: &std::path::Path) -> std::io::Result<S3Server> {
            let root = tempfile::tempdir()?;
            std::fs::create_dir_all(root.path().join(S3_BUCKET))?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let child = std::process::Command::new(binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(root.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let mut server = S3Server {
                child,
                address,
                _root: root,
            };
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_millis(S3_START_TIMEOUT_MS);
            while std::net::TcpStream::connect(address).is_err() {
                if let Some(status) = server.child.try_wait()? {
                    return Err(std::io::Error::other(format!("s3s-fs exited: {status}")));
                }
                if std::time::Instant::now() > deadline {
                    return Err(std::io::Error::other("s3s-fs did not start listening"));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(server)
        }

        /// The weak-DA URL of its bucket, credentials included as query options.
        pub fn url(&self) -> String {
            format!(
                "s3://{S3_BUCKET}?endpoint=http://{}&region=us-east-1\
                 &access_key_id={S3_ACCESS_KEY}&secret_access_key={S3_SECRET_KEY}",
                self.address
            )
        }
    }

    impl Drop for S3Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_lists_and_detects_tampering() {
        let directory = tempfile::tempdir().expect("temp dir");
        let da = WeakDa::local(directory.path()).expect("local store");
        let (header, body, encoded) = testing::block(3, 0, 3, 0);
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
            Err(WeakDaError::NotFound { .. })
        ));

        for height in 1..5 {
            let (header, _, encoded) = testing::block(3, height, 1, 0);
            da.put_body(&header, encoded).await.expect("put");
        }
        let (other, _, encoded) = testing::block(4, 2, 1, 0);
        da.put_body(&other, encoded).await.expect("put");
        let listed = da
            .list_blocks(&header.sequencer, 2, 100)
            .await
            .expect("list");
        assert_eq!(
            listed.iter().map(|block| block.height).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        let first_two = da.list_blocks(&header.sequencer, 0, 2).await.expect("list");
        assert_eq!(first_two[0].root, header.root);
        assert_eq!(first_two.len(), 2);
    }

    #[test]
    fn urls_pick_the_store_or_say_what_is_wrong() {
        let directory = tempfile::tempdir().expect("temp dir");
        let url = format!("file://{}", directory.path().display());
        assert!(WeakDa::from_url(&url).is_ok());
        assert!(matches!(
            WeakDa::from_url("s3://?region=x"),
            Err(WeakDaError::InvalidUrl { .. })
        ));
        assert!(matches!(
            WeakDa::from_url("s3://bucket?colour=blue"),
            Err(WeakDaError::InvalidUrl { .. })
        ));
        assert!(matches!(
            WeakDa::from_url("gs://bucket"),
            Err(WeakDaError::InvalidUrl { .. })
        ));
        assert!(
            WeakDa::from_url("s3://bucket?endpoint=http://127.0.0.1:1&region=us-east-1").is_ok()
        );
    }

    #[test]
    fn keys_sort_by_height_and_parse_back() {
        let (header, _, _) = testing::block(3, 42, 1, 0);
        let key = WeakDa::key(&header);
        let parsed = parse_key(&key, 7).expect("our key");
        assert_eq!(
            (parsed.height, parsed.root, parsed.size),
            (42, header.root, 7)
        );
        let lower = block_key(&header.sequencer, 9, &B256::repeat_byte(0xff));
        assert!(lower.as_ref() < key.as_ref());
    }
}
