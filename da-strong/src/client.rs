//! The DA client: disperse a payload to the committee, rebuild it, sample it.
//!
//! - [`DaClient::disperse`] codes the payload, sends chunk `i` to node `i` in parallel, checks
//!   each returned attestation on its own (a forged one is dropped, not aggregated) and
//!   aggregates the valid ones into an [`AvailabilityCertificate`] once the quorum is reached.
//! - [`DaClient::retrieve`] asks k nodes for their chunks (data chunks first, so an all-honest
//!   committee needs no decoding) and, for every node that is down, refuses, or sends a chunk
//!   that does not verify, asks the next one, until a [`Rebuilder`] holds k verified chunks.
//! - [`DaClient::sample`] asks one node, chosen from the caller's seed, for a chunk it picks
//!   from the same seed, and verifies it against the commitment.
//!
//! Responses need no trust in the transport: chunks carry Merkle proofs and attestations are
//! BLS signatures, both checked against what the caller already knows (the commitment, the
//! committee's keys). QUIC still authenticates each node by its pinned certificate.

use std::{
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use netstack::quic::{self, QuicError};
use primitives::{
    B256,
    bls::{BlsPublicKey, BlsSignature},
    codec::{Decode, Encode},
};
pub use quinn::rustls::pki_types::CertificateDer;
use quinn::{Connection, Endpoint};
use tracing::{debug, warn};

use crate::{
    attestation::{AvailabilityCertificate, verify_attestation},
    coding::{Chunk, ErasureParams, Rebuilder, encode_payload},
    constants::{MESSAGE_BYTES_MAX, REQUEST_TIMEOUT_MS},
    error::DaError,
    metrics,
    wire::{DaRequest, DaResponse},
};

/// How long a client waits for a QUIC handshake before counting the node as down.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// How long a node that could not be reached is skipped before the client tries it again, so
/// that one node down does not cost every request a handshake timeout.
pub const DOWN_BACKOFF_MS: u64 = 2_000;

/// Where a DA node is and how to check it.
#[derive(Clone, Debug)]
pub struct DaNodeAddress {
    /// Its QUIC address.
    pub address: SocketAddr,
    /// Its BLS key, for attestations.
    pub public_key: BlsPublicKey,
    /// Its self-signed QUIC certificate, pinned.
    pub certificate: CertificateDer<'static>,
}

/// A dispersed payload: its commitment and the certificate that it is available.
#[derive(Clone, Debug)]
pub struct Dispersal {
    /// The DA commitment.
    pub commitment: B256,
    /// The availability certificate.
    pub certificate: AvailabilityCertificate,
    /// Nodes whose attestation verified, by position.
    pub attested: Vec<usize>,
}

/// A client of one DA committee.
#[derive(Debug)]
pub struct DaClient {
    endpoint: Endpoint,
    params: ErasureParams,
    nodes: Vec<DaNodeAddress>,
    connections: Mutex<Vec<Option<Connection>>>,
    /// Until when each node that could not be reached is skipped.
    down_until: Mutex<Vec<Option<Instant>>>,
    request_timeout: Duration,
    connect_timeout: Duration,
}

impl DaClient {
    /// A client of `nodes` (node `i` holds chunk `i`), coding with `params`.
    pub fn new(params: ErasureParams, nodes: Vec<DaNodeAddress>) -> Result<Self, DaError> {
        if nodes.len() != usize::from(params.total_chunks) {
            return Err(DaError::CommitteeSize {
                nodes: nodes.len(),
                total_chunks: params.total_chunks,
            });
        }
        let trusted: Vec<CertificateDer<'static>> =
            nodes.iter().map(|node| node.certificate.clone()).collect();
        let endpoint = quic::client_endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), &trusted)?;
        Ok(DaClient {
            endpoint,
            params,
            connections: Mutex::new(vec![None; nodes.len()]),
            down_until: Mutex::new(vec![None; nodes.len()]),
            nodes,
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
        })
    }

    /// The erasure parameters.
    pub fn params(&self) -> ErasureParams {
        self.params
    }

    /// The committee's BLS keys in position order, to verify certificates.
    pub fn committee_keys(&self) -> Vec<BlsPublicKey> {
        self.nodes.iter().map(|node| node.public_key).collect()
    }

    async fn connection(&self, node: usize) -> Result<Connection, DaError> {
        let down = self.down_until.lock().expect("not poisoned")[node];
        if down.is_some_and(|until| Instant::now() < until) {
            return Err(DaError::RecentlyDown { node });
        }
        let cached = self.connections.lock().expect("not poisoned")[node].clone();
        if let Some(connection) = cached.filter(|c| c.close_reason().is_none()) {
            return Ok(connection);
        }
        let connect = quic::connect(&self.endpoint, self.nodes[node].address);
        let connected = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| QuicError::Timeout {
                timeout_ms: self.connect_timeout.as_millis() as u64,
            })
            .and_then(|connected| connected);
        let connection = match connected {
            Ok(connection) => connection,
            Err(error) => {
                self.down_until.lock().expect("not poisoned")[node] =
                    Some(Instant::now() + Duration::from_millis(DOWN_BACKOFF_MS));
                return Err(error.into());
            }
        };
        self.down_until.lock().expect("not poisoned")[node] = None;
        self.connections.lock().expect("not poisoned")[node] = Some(connection.clone());
        Ok(connection)
    }

    /// Sends one request to node `node` and decodes its answer.
    pub async fn call(&self, node: usize, request: &DaRequest) -> Result<DaResponse, DaError> {
        let outcome = async {
            let connection = self.connection(node).await?;
            let bytes = quic::request(
                &connection,
                &request.to_bytes(),
                MESSAGE_BYTES_MAX,
                self.request_timeout,
            )
            .await?;
            Ok::<_, DaError>(DaResponse::from_bytes(&bytes)?)
        }
        .await;
        if let Err(error) = &outcome {
            metrics::node_failed();
            debug!(target: "da_strong::client", node, %error, "request failed");
            self.connections.lock().expect("not poisoned")[node] = None;
        }
        outcome
    }

    /// Codes `payload`, stores chunk `i` on node `i` and certifies availability.
    pub async fn disperse(&self, payload: &[u8]) -> Result<Dispersal, DaError> {
        let started = Instant::now();
        let encoded = encode_payload(payload, self.params)?;
        let commitment = encoded.commitment;
        let mut pending: FuturesUnordered<_> = encoded
            .chunks
            .into_iter()
            .enumerate()
            .map(|(node, chunk)| async move {
                let request = DaRequest::Store { commitment, chunk };
                (node, self.call(node, &request).await)
            })
            .collect();
        let mut attestations: Vec<(usize, BlsSignature)> = Vec::new();
        while let Some((node, response)) = pending.next().await {
            match response {
                Ok(DaResponse::Stored { attestation }) => {
                    let key = &self.nodes[node].public_key;
                    match verify_attestation(key, &commitment, &attestation) {
                        Ok(()) => attestations.push((node, attestation)),
                        Err(error) => {
                            warn!(target: "da_strong::client", node, %error, "bad attestation")
                        }
                    }
                }
                Ok(DaResponse::Refused { reason }) => {
                    warn!(target: "da_strong::client", node, %reason, "store refused")
                }
                Ok(_) => warn!(target: "da_strong::client", node, "unexpected response"),
                Err(error) => warn!(target: "da_strong::client", node, %error, "store failed"),
            }
        }
        attestations.sort_by_key(|(node, _)| *node);
        let certificate =
            AvailabilityCertificate::aggregate(commitment, &self.params, &attestations)?;
        metrics::dispersed(started.elapsed());
        Ok(Dispersal {
            commitment,
            certificate,
            attested: attestations.iter().map(|(node, _)| *node).collect(),
        })
    }

    async fn fetch(&self, node: usize, commitment: B256) -> Result<Chunk, DaError> {
        let request = DaRequest::Get {
            commitment,
            index: node as u16,
        };
        match self.call(node, &request).await? {
            DaResponse::Chunk(Some(chunk)) => Ok(chunk),
            DaResponse::Chunk(None) => Err(DaError::Remote {
                node,
                message: "chunk not held".into(),
            }),
            DaResponse::Refused { reason } => Err(DaError::Remote {
                node,
                message: reason,
            }),
            DaResponse::Stored { .. } => Err(DaError::UnexpectedResponse { node }),
        }
    }

    async fn fetch_from(&self, node: usize, commitment: B256) -> (usize, Result<Chunk, DaError>) {
        (node, self.fetch(node, commitment).await)
    }

    /// Rebuilds the payload of `commitment` from any k nodes that answer with verified chunks.
    pub async fn retrieve(&self, commitment: B256) -> Result<Vec<u8>, DaError> {
        let started = Instant::now();
        let mut rebuilder = Rebuilder::new(commitment);
        let mut next_node = 0..self.nodes.len();
        let mut pending = FuturesUnordered::new();
        for node in next_node
            .by_ref()
            .take(usize::from(self.params.data_chunks))
        {
            pending.push(self.fetch_from(node, commitment));
        }
        let mut failed = 0usize;
        while let Some((node, outcome)) = pending.next().await {
            let accepted = match outcome {
                Ok(chunk) if chunk.index as usize == node => rebuilder.handle_chunk(chunk),
                Ok(_) => Err(DaError::UnexpectedResponse { node }),
                Err(error) => {
                    failed += 1;
                    Err(error)
                }
            };
            if let Err(error) = accepted {
                metrics::chunk_rejected();
                warn!(target: "da_strong::client", node, %error, "chunk unusable, asking another node");
                if let Some(node) = next_node.next() {
                    pending.push(self.fetch_from(node, commitment));
                }
            }
            if rebuilder.is_complete() {
                break;
            }
        }
        drop(pending);
        if !rebuilder.is_complete() {
            return Err(DaError::Unavailable {
                verified: rebuilder.verified(),
                needed: usize::from(self.params.data_chunks),
                rejected: rebuilder.rejected() + failed,
            });
        }
        let payload = rebuilder.finish()?;
        metrics::retrieved(started.elapsed());
        Ok(payload)
    }

    /// Samples `commitment`: a chunk chosen from `seed`, verified against the commitment.
    pub async fn sample(&self, commitment: B256, seed: u64) -> Result<Chunk, DaError> {
        let node = (seed % self.nodes.len() as u64) as usize;
        match self
            .call(node, &DaRequest::Sample { commitment, seed })
            .await?
        {
            DaResponse::Chunk(Some(chunk)) => {
                chunk.verify(&commitment)?;
                Ok(chunk)
            }
            DaResponse::Chunk(None) => Err(DaError::Remote {
                node,
                message: "no chunk held".into(),
            }),
            DaResponse::Refused { reason } => Err(DaError::Remote {
                node,
                message: reason,
            }),
            DaResponse::Stored { .. } => Err(DaError::UnexpectedResponse { node }),
        }
    }
}
