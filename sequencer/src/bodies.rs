//! Block bodies between sequencers over QUIC, pulled from their origin.
//!
//! Only headers are broadcast. Each sequencer keeps the bodies it packed lately in memory
//! ([`BodyCache`]) and serves them ([`BodyServer`]) on a QUIC endpoint whose certificate is
//! bound to its operator key ([`netstack::quic::QuicIdentity::for_node`]). A sequencer that needs
//! a peer's body asks the block's origin first ([`Origins::fetch`]: the origin is the header's
//! sequencer, dialled by its node ID, so nobody else can answer for it) and checks what comes
//! back against the header's size and root; when the origin is unknown, unreachable, lacks the
//! body or sends one that does not match, [`fetch_body`] takes it from weak DA instead, which is
//! checked the same way. A mismatch is counted and logged.
//!
//! Wire: a request is `[version, sequencer (20 bytes), height (u64 BE)]`; the answer is `[0]`
//! (not held) or `[1]` followed by the encoded body, read with the header's `body_bytes` as
//! its bound.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use da_weak::{WeakDa, WeakDaError, verify_body};
use netstack::quic::{
    self, QuicError, QuicIdentity, client_endpoint, connect_to_node, read_frame, server_endpoint,
    write_frame,
};
use parking_lot::Mutex;
use primitives::{AccountKey, Address, BlockBody, BlockHeader, BlockId, NodeId};
use tracing::{debug, warn};

/// Bodies a sequencer keeps to serve, newest kept (a few seconds of blocks at a 10 ms tick).
pub const BODIES_CACHED_MAX: usize = 1_024;
/// How long a pull from an origin may take before weak DA is asked instead.
pub const ORIGIN_TIMEOUT: Duration = Duration::from_millis(500);

const REQUEST_VERSION: u8 = 1;
const REQUEST_BYTES: usize = 1 + 20 + 8;
const ANSWER_MISSING: u8 = 0;
const ANSWER_BODY: u8 = 1;

/// Why a body did not come from its origin.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// No QUIC address is known for the block's sequencer.
    #[error("no body endpoint known for {0}")]
    NoAddress(NodeId),
    /// The origin could not be reached or did not answer in time (or is not who it should be).
    #[error("origin unreachable: {0}")]
    Quic(#[from] QuicError),
    /// The origin does not hold the body.
    #[error("the origin does not hold the body")]
    Missing,
    /// The answer is not an answer.
    #[error("malformed answer from the origin")]
    Malformed,
    /// The body does not match its header.
    #[error("body refused: {0}")]
    Refused(#[from] WeakDaError),
}

/// The bodies this sequencer packed lately, by block.
#[derive(Debug, Default)]
pub struct BodyCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    bodies: HashMap<BlockId, Arc<Vec<u8>>>,
    order: VecDeque<BlockId>,
}

impl BodyCache {
    /// Keeps `encoded` as the body of `id`, forgetting the oldest past [`BODIES_CACHED_MAX`].
    pub fn insert(&self, id: BlockId, encoded: Vec<u8>) {
        let mut inner = self.inner.lock();
        if inner.bodies.insert(id, Arc::new(encoded)).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > BODIES_CACHED_MAX {
            if let Some(oldest) = inner.order.pop_front() {
                inner.bodies.remove(&oldest);
            }
        }
    }

    /// The encoded body of `id`, if kept.
    pub fn get(&self, id: &BlockId) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().bodies.get(id).cloned()
    }
}

fn encode_request(id: &BlockId) -> Vec<u8> {
    let mut out = Vec::with_capacity(REQUEST_BYTES);
    out.push(REQUEST_VERSION);
    out.extend_from_slice(id.sequencer.0.as_slice());
    out.extend_from_slice(&id.height.to_be_bytes());
    out
}

fn decode_request(bytes: &[u8]) -> Option<BlockId> {
    let [REQUEST_VERSION, rest @ ..] = bytes else {
        return None;
    };
    if rest.len() != REQUEST_BYTES - 1 {
        return None;
    }
    let (sequencer, height) = rest.split_at(20);
    Some(BlockId {
        sequencer: NodeId(Address::from_slice(sequencer)),
        height: u64::from_be_bytes(height.try_into().ok()?),
    })
}

/// Serves the bodies of a [`BodyCache`] over QUIC until dropped.
#[derive(Debug)]
pub struct BodyServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BodyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BodyServer {
    /// Binds `listen` with a certificate bound to `key` and serves `cache` from it.
    pub fn bind(
        listen: SocketAddr,
        key: &AccountKey,
        cache: Arc<BodyCache>,
    ) -> Result<BodyServer, QuicError> {
        let identity = QuicIdentity::for_node(key)?;
        let endpoint = server_endpoint(listen, &identity)?;
        let local_addr = endpoint.local_addr().map_err(|source| QuicError::Bind {
            address: listen,
            source,
        })?;
        let task = tokio::spawn(async move {
            // Owned here, so that dropping the server ends every connection with it.
            let mut connections = tokio::task::JoinSet::new();
            while let Some(incoming) = endpoint.accept().await {
                while connections.try_join_next().is_some() {}
                let cache = cache.clone();
                connections.spawn(async move {
                    let Ok(connection) = incoming.await else {
                        return;
                    };
                    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                        let Ok(request) = read_frame(&mut recv, REQUEST_BYTES).await else {
                            continue;
                        };
                        let Some(id) = decode_request(&request) else {
                            debug!(target: "sequencer", "malformed body request; stream dropped");
                            continue;
                        };
                        let answer = match cache.get(&id) {
                            Some(body) => [&[ANSWER_BODY][..], &body].concat(),
                            None => vec![ANSWER_MISSING],
                        };
                        if write_frame(&mut send, &answer, usize::MAX).await.is_ok() {
                            let _ = send.finish();
                        }
                    }
                });
            }
        });
        Ok(BodyServer { local_addr, task })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Counters of pulls from origins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginStats {
    /// Bodies taken from their origin.
    pub fetched: u64,
    /// Bodies an origin sent that did not match their header.
    pub refused: u64,
    /// Pulls that failed otherwise (no address, unreachable, not held).
    pub failed: u64,
}

/// The other sequencers' body endpoints, and the pulls from them.
#[derive(Debug)]
pub struct Origins {
    endpoint: quic::Endpoint,
    directory: HashMap<NodeId, SocketAddr>,
    connections: tokio::sync::Mutex<HashMap<NodeId, quic::Connection>>,
    fetched: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Origins {
    /// Pulls from the sequencers of `directory` (node ID, body endpoint), from a client
    /// endpoint bound to `bind`.
    pub fn new(
        bind: SocketAddr,
        directory: HashMap<NodeId, SocketAddr>,
    ) -> Result<Origins, QuicError> {
        Ok(Origins {
            endpoint: client_endpoint(bind, &[])?,
            directory,
            connections: tokio::sync::Mutex::new(HashMap::new()),
            fetched: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> OriginStats {
        OriginStats {
            fetched: self.fetched.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// The body of `header` from its origin, checked against the header.
    pub async fn fetch(&self, header: &BlockHeader) -> Result<BlockBody, BodyError> {
        let result = self.pull(header).await;
        let counter = match &result {
            Ok(_) => &self.fetched,
            Err(BodyError::Refused(_)) => &self.refused,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn pull(&self, header: &BlockHeader) -> Result<BlockBody, BodyError> {
        let origin = header.sequencer;
        let address = *self
            .directory
            .get(&origin)
            .ok_or(BodyError::NoAddress(origin))?;
        let connection = self.connection(origin, address).await?;
        let answer = quic::request(
            &connection,
            &encode_request(&header.id()),
            header.body_bytes as usize + 1,
            ORIGIN_TIMEOUT,
        )
        .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                // A broken connection is dialled again next time.
                self.connections.lock().await.remove(&origin);
                return Err(error.into());
            }
        };
        match answer.split_first() {
            Some((&ANSWER_BODY, bytes)) => Ok(verify_body(header, bytes)?),
            Some((&ANSWER_MISSING, [])) => Err(BodyError::Missing),
            _ => Err(BodyError::Malformed),
        }
    }

    async fn connection(
        &self,
        origin: NodeId,
        address: SocketAddr,
    ) -> Result<quic::Connection, BodyError> {
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(&origin)
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let connection = tokio::time::timeout(
            ORIGIN_TIMEOUT,
            connect_to_node(&self.endpoint, address, origin),
        )
        .await
        .map_err(|_| QuicError::Timeout {
            timeout_ms: ORIGIN_TIMEOUT.as_millis() as u64,
        })??;
        connections.insert(origin, connection.clone());
        Ok(connection)
    }
}

/// The body of `header`: from its origin if `origins` can reach it and it matches, else from
/// weak DA (which checks it too).
pub async fn fetch_body(
    origins: Option<&Origins>,
    weak_da: &WeakDa,
    header: &BlockHeader,
) -> Result<BlockBody, WeakDaError> {
    if let Some(origins) = origins {
        match origins.fetch(header).await {
            Ok(body) => return Ok(body),
            Err(error @ BodyError::Refused(_)) => {
                warn!(target: "sequencer", origin = %header.sequencer, height = header.height, %error,
                    "origin sent a body that does not match its header; taking it from weak DA");
            }
            Err(error) => {
                debug!(target: "sequencer", origin = %header.sequencer, height = header.height, %error,
                    "body not pulled from its origin; taking it from weak DA");
            }
        }
    }
    weak_da.get_body(header).await
}

#[cfg(test)]
mod tests {
    use da_weak::testing::block;

    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// The sequencer key `da_weak::testing::block` seals with, for `seed`.
    fn sequencer(seed: u64) -> AccountKey {
        AccountKey::from_seed(seed)
    }

    #[tokio::test]
    async fn a_body_is_pulled_from_its_origin_and_checked_against_its_header() {
        let (header, body, encoded) = block(5, 1, 3, 16);
        let cache = Arc::new(BodyCache::default());
        cache.insert(header.id(), encoded);
        let server = BodyServer::bind(loopback(), &sequencer(5), cache).expect("binds");
        let origins = Origins::new(
            loopback(),
            HashMap::from([(header.sequencer, server.local_addr())]),
        )
        .expect("client");
        assert_eq!(origins.fetch(&header).await.expect("pulled"), body);
        // A block the origin does not hold, and an origin nobody knows.
        let (unheld, _, _) = block(5, 2, 3, 16);
        assert!(matches!(
            origins.fetch(&unheld).await,
            Err(BodyError::Missing)
        ));
        let (elsewhere, _, _) = block(6, 1, 3, 16);
        assert!(matches!(
            origins.fetch(&elsewhere).await,
            Err(BodyError::NoAddress(_))
        ));
        assert_eq!(
            origins.stats(),
            OriginStats {
                fetched: 1,
                refused: 0,
                failed: 2
            }
        );
        assert_eq!(
            decode_request(&encode_request(&header.id())),
            Some(header.id())
        );
        assert_eq!(decode_request(&[REQUEST_VERSION, 1, 2]), None);
        assert_eq!(decode_request(&[9; REQUEST_BYTES]), None);
    }

    #[tokio::test]
    async fn a_body_that_does_not_match_its_root_is_refused_and_fetched_from_weak_da() {
        let (header, body, encoded) = block(7, 1, 4, 16);
        // The origin serves another body of the same size under this block's ID.
        let (_, _, other) = block(7, 9, 4, 16);
        assert_eq!(other.len(), encoded.len());
        let cache = Arc::new(BodyCache::default());
        cache.insert(header.id(), other);
        let server = BodyServer::bind(loopback(), &sequencer(7), cache).expect("binds");
        let origins = Origins::new(
            loopback(),
            HashMap::from([(header.sequencer, server.local_addr())]),
        )
        .expect("client");
        assert!(matches!(
            origins.fetch(&header).await,
            Err(BodyError::Refused(WeakDaError::RootMismatch { .. }))
        ));
        let dir = tempfile::tempdir().expect("dir");
        let weak_da = WeakDa::local(dir.path()).expect("weak DA");
        weak_da.put_body(&header, encoded).await.expect("stored");
        assert_eq!(
            fetch_body(Some(&origins), &weak_da, &header)
                .await
                .expect("from weak DA"),
            body
        );
        assert_eq!(origins.stats().refused, 2);
        assert_eq!(origins.stats().fetched, 0);
    }

    #[tokio::test]
    async fn only_the_blocks_sequencer_can_answer_for_it() {
        let (header, _, encoded) = block(8, 1, 2, 16);
        let cache = Arc::new(BodyCache::default());
        cache.insert(header.id(), encoded.clone());
        // Another node serves the right bytes at the origin's address: refused at the
        // handshake, so weak DA is asked.
        let impostor = BodyServer::bind(loopback(), &sequencer(99), cache).expect("binds");
        let origins = Origins::new(
            loopback(),
            HashMap::from([(header.sequencer, impostor.local_addr())]),
        )
        .expect("client");
        assert!(matches!(
            origins.fetch(&header).await,
            Err(BodyError::Quic(_))
        ));
        let dir = tempfile::tempdir().expect("dir");
        let weak_da = WeakDa::local(dir.path()).expect("weak DA");
        weak_da.put_body(&header, encoded).await.expect("stored");
        assert!(fetch_body(Some(&origins), &weak_da, &header).await.is_ok());
    }

    #[test]
    fn the_cache_keeps_the_newest_bodies() {
        let cache = BodyCache::default();
        for height in 0..(BODIES_CACHED_MAX as u64 + 10) {
            let id = BlockId {
                sequencer: NodeId(Address::repeat_byte(1)),
                height,
            };
            cache.insert(id, vec![1]);
        }
        let id = |height| BlockId {
            sequencer: NodeId(Address::repeat_byte(1)),
            height,
        };
        assert!(cache.get(&id(0)).is_none());
        assert!(cache.get(&id(BODIES_CACHED_MAX as u64 + 9)).is_some());
    }
}
