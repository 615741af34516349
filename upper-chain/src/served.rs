//! The embedded chain served over TCP: one process owns it ([`ChainServer`]), others reach it
//! through [`RemoteChain`], an [`UpperChain`] like any other.
//!
//! The frames and their handling are in [`crate::wire`]. Nothing here authenticates the peer:
//! every write carries its own authority (a node's signature, the admin's signature, a quorum
//! certificate), checked by the chain as for any caller, and reads are public.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use primitives::{
    Address, B256, Decode, NodeId, Signature,
    bls::Certificate,
    pbft::EquivocationEvidence,
    preconf::{PreconfirmationEvidence, SignedPreconfirmation},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream as AsyncTcpStream},
    sync::Semaphore,
};
use tracing::{debug, info, warn};

use crate::{
    AdminOp, AvailabilityKind, AvailabilityRecord, ChainError, DaCommittee, Departure,
    DepartureProof, Deposit, GroupDecision, GroupRootCommitment, Registration, RegistrySnapshot,
    SequencerCandidate, SequencerEpoch, SequencerRecord, SponsorPolicyRecord, SponsorPolicyUpdate,
    SyncedRoot, UpperChain, WalletUpdate,
    wire::{
        ANSWER_BYTES_MAX, Answer, DEPOSITS_PER_REQUEST_MAX, REQUEST_BYTES_MAX, Request,
        frame_length, handle, put_frame,
    },
};

/// The chain id a devnet's served embedded chain announces unless told otherwise.
pub const DEVNET_CHAIN_ID: u64 = 0x7469_636b; // "tick"

/// Limits of a [`ChainServer`].
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// The chain id the server announces; clients refuse a chain with another.
    pub chain_id: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub connections_max: usize,
    /// A connection idle (or stalled mid-frame) this long is closed.
    pub idle_timeout: Duration,
}

impl ServerConfig {
    /// 256 connections, 5 minutes of idleness.
    pub fn new(chain_id: u64) -> Self {
        ServerConfig {
            chain_id,
            connections_max: 256,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Serves one chain to other processes over TCP.
pub struct ChainServer {
    listener: TcpListener,
    chain: Arc<dyn UpperChain>,
    config: ServerConfig,
}

impl std::fmt::Debug for ChainServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainServer")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("config", &self.config)
            .finish()
    }
}

impl ChainServer {
    /// Listens on `addr` (port 0 picks a free one).
    pub async fn bind(
        addr: impl tokio::net::ToSocketAddrs,
        chain: Arc<dyn UpperChain>,
        config: ServerConfig,
    ) -> std::io::Result<Self> {
        Ok(ChainServer {
            listener: TcpListener::bind(addr).await?,
            chain,
            config,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts and serves connections until the future is dropped.
    pub async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.config.connections_max.max(1)));
        info!(target: "upper_chain::served", addr = ?self.listener.local_addr().ok(), chain_id = self.config.chain_id, "serving the chain");
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return; // The semaphore is never closed.
            };
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(target: "upper_chain::served", %error, "accept failed");
                    continue;
                }
            };
            let chain = self.chain.clone();
            let config = self.config;
            tokio::spawn(async move {
                if let Err(reason) = serve_connection(stream, chain, config).await {
                    debug!(target: "upper_chain::served", %peer, %reason, "connection closed");
                }
                drop(slot);
            });
        }
    }
}

/// Serves requests on one connection, one at a time, until it closes or misbehaves.
async fn serve_connection(
    mut stream: AsyncTcpStream,
    chain: Arc<dyn UpperChain>,
    config: ServerConfig,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 4];
        match tokio::time::timeout(config.idle_timeout, stream.read_exact(&mut header)).await {
            Err(_) => return Err("idle".into()),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error.to_string()),
            Ok(Ok(_)) => {}
        }
        let len = match frame_length(header, REQUEST_BYTES_MAX) {
            Ok(len) => len,
            Err(error) => {
                // The frame boundary is lost: answer, then close.
                out.clear();
                put_frame(
                    &mut out,
                    &Answer::Refused(ChainError::Malformed(error.to_string())),
                );
                let _ = stream.write_all(&out).await;
                return Err(error.to_string());
            }
        };
        let mut body = vec![0u8; len];
        match tokio::time::timeout(config.idle_timeout, stream.read_exact(&mut body)).await {
            Err(_) => return Err("stalled mid-frame".into()),
            Ok(Err(error)) => return Err(error.to_string()),
            Ok(Ok(_)) => {}
        }
        let answer = match Request::from_bytes(&body) {
            Ok(request) => {
                let chain = chain.clone();
                let chain_id = config.chain_id;
                // The chain's calls block (RocksDB writes, BLS checks).
                tokio::task::spawn_blocking(move || handle(chain.as_ref(), chain_id, request))
                    .await
                    .unwrap_or_else(|error| {
                        Answer::Refused(ChainError::Storage(format!(
                            "the chain call failed: {error}"
                        )))
                    })
            }
            Err(error) => Answer::Refused(ChainError::Malformed(error.to_string())),
        };
        out.clear();
        put_frame(&mut out, &answer);
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
    }
}

/// A chain served by a [`ChainServer`] in another process, over one TCP connection.
///
/// Calls are one at a time. A connection that fails is dropped, the call reports
/// [`ChainError::Unreachable`], and the next call connects again; a call is never sent twice
/// (a write might have been applied before the connection failed).
pub struct RemoteChain {
    addr: String,
    chain_id: u64,
    timeout: Duration,
    stream: Mutex<Option<TcpStream>>,
}

impl std::fmt::Debug for RemoteChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteChain")
            .field("addr", &self.addr)
            .field("chain_id", &self.chain_id)
            .finish()
    }
}

impl RemoteChain {
    /// Connects to the server at `addr` (`host:port`) and checks it serves `expected_chain_id`.
    pub fn connect(addr: &str, expected_chain_id: u64) -> Result<Self, ChainError> {
        let chain = RemoteChain {
            addr: addr.to_string(),
            chain_id: expected_chain_id,
            timeout: Duration::from_secs(30),
            stream: Mutex::new(None),
        };
        match chain.call(&Request::Hello)? {
            Answer::Hello { chain_id } if chain_id == expected_chain_id => Ok(chain),
            Answer::Hello { chain_id } => Err(ChainError::WrongChainId {
                expected: expected_chain_id,
                got: chain_id,
            }),
            other => Err(unexpected(&other)),
        }
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> ChainError {
        ChainError::Unreachable {
            url: format!("tickrate://{}", self.addr),
            reason: reason.to_string(),
        }
    }

    fn open(&self) -> Result<TcpStream, ChainError> {
        let addrs: Vec<SocketAddr> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| self.unreachable(e))?
            .collect();
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    stream
                        .set_read_timeout(Some(self.timeout))
                        .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
                        .map_err(|e| self.unreachable(e))?;
                    return Ok(stream);
                }
                Err(error) => last = Some(error),
            }
        }
        Err(self.unreachable(last.map_or_else(|| "no address".to_string(), |e| e.to_string())))
    }

    /// Sends one request and reads its answer.
    fn call(&self, request: &Request) -> Result<Answer, ChainError> {
        let mut slot = self.stream.lock();
        let mut stream = match slot.take() {
            Some(stream) => stream,
            None => self.open()?,
        };
        let mut frame = Vec::new();
        put_frame(&mut frame, request);
        stream.write_all(&frame).map_err(|e| self.unreachable(e))?;
        let mut header = [0u8; 4];
        stream
            .read_exact(&mut header)
            .map_err(|e| self.unreachable(e))?;
        let len = frame_length(header, ANSWER_BYTES_MAX)
            .map_err(|e| ChainError::Malformed(format!("answer: {e}")))?;
        let mut body = vec![0u8; len];
        stream
            .read_exact(&mut body)
            .map_err(|e| self.unreachable(e))?;
        let answer =
            Answer::from_bytes(&body).map_err(|e| ChainError::Malformed(format!("answer: {e}")))?;
        // Only a connection that completed the exchange is kept.
        *slot = Some(stream);
        Ok(answer)
    }

    /// [`RemoteChain::call`] for a write.
    fn write(&self, request: &Request) -> Result<(), ChainError> {
        match self.call(request)? {
            Answer::Done => Ok(()),
            Answer::Refused(error) => Err(error),
            other => Err(unexpected(&other)),
        }
    }

    fn number(&self, request: &Request) -> Result<u64, ChainError> {
        match self.call(request)? {
            Answer::Number(number) => Ok(number),
            other => Err(refused_or_unexpected(other)),
        }
    }
}

fn unexpected(answer: &Answer) -> ChainError {
    ChainError::Malformed(format!("unexpected answer {answer:?}"))
}

fn refused_or_unexpected(answer: Answer) -> ChainError {
    match answer {
        Answer::Refused(error) => error,
        other => unexpected(&other),
    }
}

impl UpperChain for RemoteChain {
    fn register_node(
        &self,
        registration: Registration,
        signature: &Signature,
    ) -> Result<NodeId, ChainError> {
        match self.call(&Request::RegisterNode(registration, *signature))? {
            Answer::Node(id) => Ok(id),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn registry_snapshot(&self, epoch: u64) -> Result<RegistrySnapshot, ChainError> {
        match self.call(&Request::RegistrySnapshot(epoch))? {
            Answer::Snapshot(snapshot) => Ok(snapshot),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn epoch(&self) -> Result<u64, ChainError> {
        self.number(&Request::Epoch)
    }

    fn sequencer_set(&self) -> Result<Vec<SequencerRecord>, ChainError> {
        match self.call(&Request::SequencerSet)? {
            Answer::Sequencers(set) => Ok(set),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn sequencer_epoch(&self, epoch: u64) -> Result<Option<SequencerEpoch>, ChainError> {
        match self.call(&Request::SequencerEpoch(epoch))? {
            Answer::SequencerEpoch(epoch) => Ok(epoch),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn commit_batch(
        &self,
        number: u64,
        batch_hash: B256,
        commit_message: &[u8],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        self.write(&Request::CommitBatch {
            number,
            batch_hash,
            commit_message: commit_message.to_vec(),
            certificate: certificate.clone(),
        })
    }

    fn commit_group_root(
        &self,
        commitment: GroupRootCommitment,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        self.write(&Request::CommitGroupRoot(
            commitment,
            members.to_vec(),
            certificate.clone(),
        ))
    }

    fn commit_group_root_decided(
        &self,
        commitment: GroupRootCommitment,
        decision: GroupDecision,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        self.write(&Request::CommitGroupRootDecided(
            commitment,
            decision,
            members.to_vec(),
            certificate.clone(),
        ))
    }

    fn last_batch(&self) -> Result<u64, ChainError> {
        self.number(&Request::LastBatch)
    }

    fn group_root(&self, group: &B256) -> Result<Option<GroupRootCommitment>, ChainError> {
        match self.call(&Request::GroupRoot(*group))? {
            Answer::GroupRoot(root) => Ok(root),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn batch_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        match self.call(&Request::BatchHash(number))? {
            Answer::BatchHash(hash) => Ok(hash),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn record_synced_root(
        &self,
        synced: SyncedRoot,
        signature: &Signature,
    ) -> Result<(), ChainError> {
        self.write(&Request::RecordSyncedRoot(synced, *signature))
    }

    fn synced_root(&self, node: &NodeId) -> Result<Option<SyncedRoot>, ChainError> {
        match self.call(&Request::SyncedRoot(*node))? {
            Answer::SyncedRoot(synced) => Ok(synced),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn record_departure(
        &self,
        departure: Departure,
        proof: &DepartureProof,
    ) -> Result<(), ChainError> {
        self.write(&Request::RecordDeparture(departure, proof.clone()))
    }

    fn departure(&self, node: &NodeId) -> Result<Option<Departure>, ChainError> {
        match self.call(&Request::Departure(*node))? {
            Answer::Departure(departure) => Ok(departure),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn update_wallet(&self, update: WalletUpdate, signature: &Signature) -> Result<(), ChainError> {
        self.write(&Request::UpdateWallet(update, *signature))
    }

    fn wallet_nonce(&self, node: &NodeId) -> Result<u64, ChainError> {
        self.number(&Request::WalletNonce(*node))
    }

    fn set_sponsor_policy(
        &self,
        update: SponsorPolicyUpdate,
        signature: &Signature,
    ) -> Result<(), ChainError> {
        self.write(&Request::SetSponsorPolicy(update, *signature))
    }

    fn sponsor_nonce(&self, sponsor: &Address) -> Result<u64, ChainError> {
        self.number(&Request::SponsorNonce(*sponsor))
    }

    fn sponsor_policies(&self) -> Result<Vec<SponsorPolicyRecord>, ChainError> {
        match self.call(&Request::SponsorPolicies)? {
            Answer::SponsorPolicies(policies) => Ok(policies),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn admin(&self, op: AdminOp, signature: &Signature) -> Result<(), ChainError> {
        self.write(&Request::Admin(op, *signature))
    }

    fn admin_nonce(&self) -> Result<u64, ChainError> {
        self.number(&Request::AdminNonce)
    }

    fn sequencer_candidates(&self) -> Result<Vec<SequencerCandidate>, ChainError> {
        match self.call(&Request::SequencerCandidates)? {
            Answer::Candidates(candidates) => Ok(candidates),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn stake_cap(&self) -> Result<u128, ChainError> {
        match self.call(&Request::StakeCap)? {
            Answer::StakeCap(cap) => Ok(cap),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn deposits_since(&self, from: u64, limit: usize) -> Result<Vec<Deposit>, ChainError> {
        // Pages of at most DEPOSITS_PER_REQUEST_MAX, until the limit or the last deposit.
        let mut out = Vec::new();
        let mut next = from;
        while out.len() < limit {
            let page = (limit - out.len()).min(DEPOSITS_PER_REQUEST_MAX as usize) as u32;
            let deposits = match self.call(&Request::DepositsSince {
                from: next,
                limit: page,
            })? {
                Answer::Deposits(deposits) => deposits,
                other => return Err(refused_or_unexpected(other)),
            };
            if deposits.len() > page as usize {
                return Err(ChainError::Malformed(format!(
                    "{} deposits for a page of {page}",
                    deposits.len()
                )));
            }
            let full = deposits.len() == page as usize;
            next += deposits.len() as u64;
            out.extend(deposits);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    fn report_equivocation(
        &self,
        evidence: &EquivocationEvidence,
        offender: NodeId,
    ) -> Result<(), ChainError> {
        self.write(&Request::ReportEquivocation(evidence.clone(), offender))
    }

    fn equivocations(&self) -> Result<Vec<(NodeId, EquivocationEvidence)>, ChainError> {
        match self.call(&Request::Equivocations)? {
            Answer::Equivocations(offences) => Ok(offences),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn report_broken_preconfirmation(
        &self,
        evidence: &PreconfirmationEvidence,
    ) -> Result<(), ChainError> {
        self.write(&Request::ReportBrokenPreconfirmation(Box::new(
            evidence.clone(),
        )))
    }

    fn broken_preconfirmations(&self) -> Result<Vec<(NodeId, SignedPreconfirmation)>, ChainError> {
        match self.call(&Request::BrokenPreconfirmations)? {
            Answer::BrokenPreconfirmations(promises) => Ok(promises
                .into_iter()
                .map(|promise| (promise.preconfirmation.sequencer, promise))
                .collect()),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn da_committee(&self) -> Result<Option<DaCommittee>, ChainError> {
        match self.call(&Request::DaCommittee)? {
            Answer::DaCommittee(committee) => Ok(committee),
            other => Err(refused_or_unexpected(other)),
        }
    }

    fn record_availability(&self, record: AvailabilityRecord) -> Result<(), ChainError> {
        self.write(&Request::RecordAvailability(record))
    }

    fn availability(
        &self,
        kind: AvailabilityKind,
        number: u64,
    ) -> Result<Option<AvailabilityRecord>, ChainError> {
        match self.call(&Request::Availability(kind, number))? {
            Answer::Availability(record) => Ok(record),
            other => Err(refused_or_unexpected(other)),
        }
    }
}
