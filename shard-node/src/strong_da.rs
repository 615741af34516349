//! The shard network's strong DA: what it disperses, and how a verifier reads it back.
//!
//! DESIGN.md, path of a move, step 5: a finalized batch is erasure-coded into strong DA and its
//! commitment goes to the upper chain. The shard driver is where each finalized batch arrives
//! exactly once with its commit certificate checked, so it hands the batch to a
//! [`StrongDaPublisher`] there; the network hands it each batch's [`ExecutionRecord`] (the moves,
//! the pre-state slices they ran on and their outcomes: what a fraud proof re-executes) and the
//! genesis those records start from. The publisher disperses each payload with a
//! [`DaClient`] and records its commitment and availability certificate on the upper chain
//! ([`UpperChain::record_availability`]), keyed by kind and batch number, so that anyone finds
//! it from the chain alone.
//!
//! Publishing never holds up execution: [`StrongDaPublisher::publish`] only queues (a bounded
//! queue; a full one drops the payload with an error log rather than block a batch), and the
//! dispersals run on their own task, several at a time.
//!
//! [`StrongDaReader`] is the other side: it finds a payload's commitment on the chain, checks
//! the availability certificate against the DA committee, rebuilds the payload from any k DA
//! nodes (every chunk checked against the commitment) and decodes it. Every way a DA node, the
//! chain or the payload can be wrong is a [`StrongDaError`].

use std::{sync::Arc, time::Duration};

use da_strong::{DaClient, DaError, ErasureParams};
use execution::StateDiff;
use primitives::{B256, Decode, DecodeError, FinalizedBatch};
use tokio::{sync::mpsc, task::JoinSet};
use tracing::{debug, error, warn};
use upper_chain::{AvailabilityKind, AvailabilityRecord, ChainError, UpperChain};

use crate::record::ExecutionRecord;

/// Payloads queued for dispersal at most.
pub const PUBLISH_QUEUE_MAX: usize = 4_096;
/// Dispersals in flight at once.
pub const DISPERSALS_IN_FLIGHT_MAX: usize = 8;
/// Attempts at dispersing one payload and recording its commitment before giving up on it.
pub const PUBLISH_ATTEMPTS_MAX: u32 = 5;
/// Wait before the first retry; doubled at each further one.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// One payload to disperse.
#[derive(Debug)]
struct Publication {
    kind: AvailabilityKind,
    number: u64,
    payload: Vec<u8>,
}

/// Queues payloads for strong DA; cheap to clone.
#[derive(Clone, Debug)]
pub struct StrongDaPublisher {
    queue: mpsc::Sender<Publication>,
}

impl StrongDaPublisher {
    /// Starts the task that disperses with `client` and records on `chain`. Must be called
    /// within a tokio runtime.
    pub fn spawn(client: Arc<DaClient>, chain: Arc<dyn UpperChain>) -> Self {
        let (queue, mut inbound) = mpsc::channel::<Publication>(PUBLISH_QUEUE_MAX);
        tokio::spawn(async move {
            let mut running = JoinSet::new();
            loop {
                tokio::select! {
                    publication = inbound.recv(), if running.len() < DISPERSALS_IN_FLIGHT_MAX => {
                        let Some(publication) = publication else { break };
                        running.spawn(publish(client.clone(), chain.clone(), publication));
                    }
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
            while running.join_next().await.is_some() {}
        });
        StrongDaPublisher { queue }
    }

    /// Queues `payload` (`kind` of batch `number`) for dispersal; never waits.
    pub fn publish(&self, kind: AvailabilityKind, number: u64, payload: Vec<u8>) {
        let publication = Publication {
            kind,
            number,
            payload,
        };
        if let Err(error) = self.queue.try_send(publication) {
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "publisher stopped",
            };
            error!(target: "shard_node::strong_da", ?kind, number, reason, "payload not dispersed to strong DA");
        }
    }
}

/// Disperses one payload and records its commitment, retrying a few times.
async fn publish(client: Arc<DaClient>, chain: Arc<dyn UpperChain>, publication: Publication) {
    let Publication {
        kind,
        number,
        payload,
    } = publication;
    let mut backoff = RETRY_BACKOFF;
    for attempt in 1..=PUBLISH_ATTEMPTS_MAX {
        let outcome = async {
            let dispersal = client
                .disperse(&payload)
                .await
                .map_err(|error| error.to_string())?;
            let record = AvailabilityRecord {
                kind,
                number,
                commitment: dispersal.commitment,
                certificate: dispersal.certificate.certificate,
            };
            let chain = chain.clone();
            // A remote chain blocks on its socket.
            let recorded = tokio::task::spawn_blocking(move || chain.record_availability(record))
                .await
                .map_err(|join| join.to_string())?;
            match recorded {
                Ok(()) => Ok(dispersal.commitment),
                // The first certified commitment stands; ours is a duplicate, not a failure.
                Err(ChainError::AvailabilityConflict { recorded, .. }) => {
                    warn!(target: "shard_node::strong_da", ?kind, number, %recorded, ours = %dispersal.commitment,
                        "another commitment is recorded for this payload");
                    Ok(recorded)
                }
                Err(error) => Err(error.to_string()),
            }
        }
        .await;
        match outcome {
            Ok(commitment) => {
                debug!(target: "shard_node::strong_da", ?kind, number, %commitment, "dispersed and recorded");
                return;
            }
            Err(message) if attempt < PUBLISH_ATTEMPTS_MAX => {
                warn!(target: "shard_node::strong_da", ?kind, number, attempt, %message, "dispersal failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(message) => {
                error!(target: "shard_node::strong_da", ?kind, number, %message, "dispersal failed; given up");
            }
        }
    }
}

/// Why a payload could not be read back from strong DA.
#[derive(Debug, thiserror::Error)]
pub enum StrongDaError {
    /// The upper chain could not be read.
    #[error("upper chain: {0}")]
    Chain(#[from] ChainError),
    /// The chain has no DA committee, so no strong-DA commitments.
    #[error("the upper chain has no strong-DA committee")]
    NoCommittee,
    /// The DA nodes given do not match the chain's committee.
    #[error("{given} DA nodes given; the chain's committee has {committee}")]
    CommitteeMismatch {
        /// Nodes given.
        given: usize,
        /// Nodes in the chain's committee.
        committee: usize,
    },
    /// The chain records no commitment for this payload.
    #[error("no strong-DA commitment of {kind:?} {number} on the upper chain")]
    NotRecorded {
        /// What the payload is.
        kind: AvailabilityKind,
        /// Its batch number.
        number: u64,
    },
    /// The recorded certificate does not verify against the committee.
    #[error("{kind:?} {number}: availability certificate: {source}")]
    Certificate {
        /// What the payload is.
        kind: AvailabilityKind,
        /// Its batch number.
        number: u64,
        /// Why.
        source: DaError,
    },
    /// The payload could not be rebuilt (too few nodes answer with verified chunks, or the
    /// chunks are not one codeword).
    #[error("{kind:?} {number} ({commitment}): {source}")]
    Retrieve {
        /// What the payload is.
        kind: AvailabilityKind,
        /// Its batch number.
        number: u64,
        /// Its commitment.
        commitment: B256,
        /// Why.
        source: DaError,
    },
    /// The rebuilt payload does not decode as what it should be.
    #[error("{kind:?} {number} ({commitment}) does not decode: {source}")]
    Decode {
        /// What the payload is.
        kind: AvailabilityKind,
        /// Its batch number.
        number: u64,
        /// Its commitment.
        commitment: B256,
        /// Why.
        source: DecodeError,
    },
    /// The payload is of another batch than the one it is recorded for.
    #[error("{kind:?} recorded for batch {number} holds batch {found}")]
    Misplaced {
        /// What the payload is.
        kind: AvailabilityKind,
        /// The batch it is recorded for.
        number: u64,
        /// The batch it holds.
        found: u64,
    },
    /// The DA client could not start.
    #[error("DA client: {0}")]
    Client(DaError),
}

/// Reads payloads back from strong DA, by the commitments on the upper chain.
pub struct StrongDaReader {
    client: DaClient,
    chain: Arc<dyn UpperChain>,
}

impl std::fmt::Debug for StrongDaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrongDaReader")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl StrongDaReader {
    /// A reader of the DA nodes at `addresses` (QUIC address and pinned certificate, in
    /// committee order), whose keys and erasure parameters come from the chain's DA committee.
    /// Must be called within a tokio runtime (the client's QUIC endpoint).
    pub fn connect(
        chain: Arc<dyn UpperChain>,
        addresses: Vec<(
            std::net::SocketAddr,
            da_strong::client::CertificateDer<'static>,
        )>,
    ) -> Result<Self, StrongDaError> {
        let committee = chain.da_committee()?.ok_or(StrongDaError::NoCommittee)?;
        if addresses.len() != committee.keys.len() {
            return Err(StrongDaError::CommitteeMismatch {
                given: addresses.len(),
                committee: committee.keys.len(),
            });
        }
        let total =
            u16::try_from(committee.keys.len()).map_err(|_| StrongDaError::CommitteeMismatch {
                given: addresses.len(),
                committee: committee.keys.len(),
            })?;
        let params =
            ErasureParams::new(committee.data_chunks, total).map_err(StrongDaError::Client)?;
        let nodes = addresses
            .into_iter()
            .zip(&committee.keys)
            .map(
                |((address, certificate), public_key)| da_strong::DaNodeAddress {
                    address,
                    public_key: *public_key,
                    certificate,
                },
            )
            .collect();
        let client = DaClient::new(params, nodes).map_err(StrongDaError::Client)?;
        Ok(StrongDaReader { client, chain })
    }

    /// A reader over an existing client (its committee must be the chain's).
    pub fn with_client(client: DaClient, chain: Arc<dyn UpperChain>) -> Self {
        StrongDaReader { client, chain }
    }

    /// The client.
    pub fn client(&self) -> &DaClient {
        &self.client
    }

    /// The commitment recorded for a payload, its certificate checked; `None` if none is.
    pub fn commitment(
        &self,
        kind: AvailabilityKind,
        number: u64,
    ) -> Result<Option<B256>, StrongDaError> {
        let Some(record) = self.chain.availability(kind, number)? else {
            return Ok(None);
        };
        let certificate = da_strong::AvailabilityCertificate {
            commitment: record.commitment,
            certificate: record.certificate,
        };
        certificate
            .verify(&self.client.committee_keys(), &self.client.params())
            .map_err(|source| StrongDaError::Certificate {
                kind,
                number,
                source,
            })?;
        Ok(Some(record.commitment))
    }

    async fn payload<T: Decode>(
        &self,
        kind: AvailabilityKind,
        number: u64,
        commitment: B256,
    ) -> Result<T, StrongDaError> {
        let bytes =
            self.client
                .retrieve(commitment)
                .await
                .map_err(|source| StrongDaError::Retrieve {
                    kind,
                    number,
                    commitment,
                    source,
                })?;
        T::from_bytes(&bytes).map_err(|source| StrongDaError::Decode {
            kind,
            number,
            commitment,
            source,
        })
    }

    /// The genesis accounts the records start from (one diff over the empty state), if
    /// recorded.
    pub async fn genesis(&self) -> Result<Option<StateDiff>, StrongDaError> {
        let kind = AvailabilityKind::Genesis;
        match self.commitment(kind, 0)? {
            Some(commitment) => Ok(Some(self.payload(kind, 0, commitment).await?)),
            None => Ok(None),
        }
    }

    /// The execution record of batch `number`, if recorded.
    pub async fn record(&self, number: u64) -> Result<Option<ExecutionRecord>, StrongDaError> {
        match self.commitment(AvailabilityKind::ExecutionRecord, number)? {
            Some(commitment) => Ok(Some(self.record_at(number, commitment).await?)),
            None => Ok(None),
        }
    }

    /// The execution record of batch `number` dispersed under `commitment` (whether or not
    /// the chain records it).
    pub async fn record_at(
        &self,
        number: u64,
        commitment: B256,
    ) -> Result<ExecutionRecord, StrongDaError> {
        let kind = AvailabilityKind::ExecutionRecord;
        let record: ExecutionRecord = self.payload(kind, number, commitment).await?;
        if record.number != number {
            return Err(StrongDaError::Misplaced {
                kind,
                number,
                found: record.number,
            });
        }
        Ok(record)
    }

    /// Finalized batch `number`, if recorded.
    pub async fn batch(&self, number: u64) -> Result<Option<FinalizedBatch>, StrongDaError> {
        let kind = AvailabilityKind::Batch;
        let Some(commitment) = self.commitment(kind, number)? else {
            return Ok(None);
        };
        let batch: FinalizedBatch = self.payload(kind, number, commitment).await?;
        if batch.batch.number != number {
            return Err(StrongDaError::Misplaced {
                kind,
                number,
                found: batch.batch.number,
            });
        }
        Ok(Some(batch))
    }
}
