//! A committee of n = 6 DA nodes (k = 4) on loopback QUIC, each with its own RocksDB directory:
//! disperse and certify, rebuild with any two nodes stopped, detect a lying node, restart a node
//! from its directory, sample, and refuse bad certificates.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use da_strong::{
    AvailabilityCertificate, DaClient, DaError, DaNode, DaNodeAddress, DaServer, DaService,
    ErasureParams,
    server::load_or_create_identity,
    wire::{DaRequest, DaResponse},
};
use primitives::{
    B256,
    bls::{BlsSecretKey, Certificate},
};

const NODES: u16 = 6;
const DATA_CHUNKS: u16 = 4;

/// A node that answers like an honest one but flips a byte of every chunk it serves.
struct Lying(DaNode);

impl DaService for Lying {
    fn handle_request(&self, request: DaRequest) -> DaResponse {
        match self.0.handle_request(request) {
            DaResponse::Chunk(Some(mut chunk)) => {
                chunk.bytes[0] ^= 0x55;
                DaResponse::Chunk(Some(chunk))
            }
            other => other,
        }
    }
}

enum Running {
    Honest(DaServer<DaNode>),
    Lying(DaServer<Lying>),
}

struct Committee {
    _root: tempfile::TempDir,
    directories: Vec<PathBuf>,
    keys: Vec<BlsSecretKey>,
    addresses: Vec<DaNodeAddress>,
    servers: Vec<Option<Running>>,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Committee {
    async fn start() -> Committee {
        let root = tempfile::tempdir().expect("temp dir");
        let mut committee = Committee {
            directories: Vec::new(),
            keys: Vec::new(),
            addresses: Vec::new(),
            servers: Vec::new(),
            _root: root,
        };
        for position in 0..NODES {
            let directory = committee._root.path().join(format!("node{position}"));
            let key = BlsSecretKey::from_seed(&[position as u8 + 1; 32]);
            let identity = load_or_create_identity(&directory).expect("identity");
            let node =
                DaNode::open(&directory.join("chunks"), position, key.clone()).expect("open");
            let server = DaServer::start(loopback(), &identity, Arc::new(node)).expect("serve");
            committee.addresses.push(DaNodeAddress {
                address: server.local_addr(),
                public_key: key.public_key(),
                certificate: identity.certificate.clone(),
            });
            committee.directories.push(directory);
            committee.keys.push(key);
            committee.servers.push(Some(Running::Honest(server)));
        }
        committee
    }

    fn params() -> ErasureParams {
        ErasureParams::new(DATA_CHUNKS, NODES).expect("params")
    }

    fn client(&self) -> DaClient {
        DaClient::new(Self::params(), self.addresses.clone()).expect("client")
    }

    /// Stops node `position` and waits until its RocksDB is closed.
    async fn stop(&mut self, position: usize) {
        match self.servers[position].take() {
            Some(Running::Honest(server)) => release(server.shutdown().await).await,
            Some(Running::Lying(server)) => release(server.shutdown().await).await,
            None => {}
        }
    }

    /// Restarts node `position` from its directory on the same address.
    async fn restart(&mut self, position: usize, lying: bool) {
        self.stop(position).await;
        let directory = &self.directories[position];
        let identity = load_or_create_identity(directory).expect("identity");
        assert_eq!(identity.certificate, self.addresses[position].certificate);
        let node = DaNode::open(
            &directory.join("chunks"),
            position as u16,
            self.keys[position].clone(),
        )
        .expect("reopen");
        let address = self.addresses[position].address;
        self.servers[position] = Some(if lying {
            Running::Lying(start_retrying(address, &identity, Arc::new(Lying(node))).await)
        } else {
            Running::Honest(start_retrying(address, &identity, Arc::new(node)).await)
        });
    }
}

/// Starts a server on `address`, retrying while the old endpoint's driver still holds the port.
async fn start_retrying<S: DaService>(
    address: SocketAddr,
    identity: &netstack::quic::QuicIdentity,
    service: Arc<S>,
) -> DaServer<S> {
    for _ in 0..100 {
        match DaServer::start(address, identity, service.clone()) {
            Ok(server) => return server,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    panic!("could not rebind {address}");
}

/// Waits for the last reference to a stopped node (a blocking task may still hold one for a
/// moment) so its RocksDB lock is released before the directory is reopened.
async fn release<S>(mut service: Arc<S>) {
    for _ in 0..500 {
        match Arc::try_unwrap(service) {
            Ok(service) => {
                drop(service);
                return;
            }
            Err(shared) => service = shared,
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("a stopped node is still referenced");
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|index| (index * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_two_nodes_down_still_rebuild() {
    let mut committee = Committee::start().await;
    let client = committee.client();
    let batch = payload(300_001);
    let dispersal = client.disperse(&batch).await.expect("disperse");
    assert_eq!(dispersal.attested, vec![0, 1, 2, 3, 4, 5]);
    dispersal
        .certificate
        .verify(&client.committee_keys(), &client.params())
        .expect("certificate verifies");

    // Every pair of stopped nodes: stop, rebuild with a fresh client, bring back.
    for first in 0..NODES as usize {
        for second in first + 1..NODES as usize {
            committee.stop(first).await;
            committee.stop(second).await;
            let fresh = committee.client();
            let rebuilt = fresh
                .retrieve(dispersal.commitment)
                .await
                .unwrap_or_else(|error| panic!("{first} and {second} down: {error}"));
            assert_eq!(rebuilt, batch);
            committee.restart(first, false).await;
            committee.restart(second, false).await;
        }
    }

    // A third node down: only 3 of the needed 4 remain.
    for position in 0..3 {
        committee.stop(position).await;
    }
    assert!(matches!(
        committee.client().retrieve(dispersal.commitment).await,
        Err(DaError::Unavailable {
            verified: 3,
            needed: 4,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_chunk_is_detected_and_another_node_used() {
    let mut committee = Committee::start().await;
    let client = committee.client();
    let batch = payload(100_000);
    let dispersal = client.disperse(&batch).await.expect("disperse");
    // Nodes 1 and 2 now lie about their chunks; the client must notice and use 4 and 5.
    committee.restart(1, true).await;
    committee.restart(2, true).await;
    let fresh = committee.client();
    assert_eq!(
        fresh.retrieve(dispersal.commitment).await.expect("rebuild"),
        batch
    );
    // With a third liar only 3 honest chunks are left.
    committee.restart(3, true).await;
    assert!(matches!(
        committee.client().retrieve(dispersal.commitment).await,
        Err(DaError::Unavailable { verified: 3, .. })
    ));
    // A lying node's sample does not verify.
    assert!(matches!(
        fresh.sample(dispersal.commitment, 1).await,
        Err(DaError::BadChunk { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_its_chunks_from_rocksdb() {
    let mut committee = Committee::start().await;
    let client = committee.client();
    let batch = payload(64 * 1024);
    let dispersal = client.disperse(&batch).await.expect("disperse");
    for position in 0..NODES as usize {
        committee.restart(position, false).await;
    }
    let fresh = committee.client();
    assert_eq!(
        fresh.retrieve(dispersal.commitment).await.expect("rebuild"),
        batch
    );
    for seed in 0..NODES as u64 {
        let chunk = fresh
            .sample(dispersal.commitment, seed)
            .await
            .expect("sample");
        assert_eq!(u64::from(chunk.index), seed % u64::from(NODES));
        chunk.verify(&dispersal.commitment).expect("verifies");
    }
    // Unknown commitments are simply not held.
    assert!(matches!(
        fresh.sample(B256::repeat_byte(9), 0).await,
        Err(DaError::Remote { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_with_too_few_or_forged_attestations_are_refused() {
    let mut committee = Committee::start().await;
    let client = committee.client();
    let params = Committee::params();
    let keys = client.committee_keys();
    let batch = payload(10_000);

    // Two nodes down: 4 attestations are below the quorum of 5, so dispersal cannot certify.
    committee.stop(4).await;
    committee.stop(5).await;
    assert!(matches!(
        client.disperse(&batch).await,
        Err(DaError::TooFewAttestations {
            valid: 4,
            quorum: 5
        })
    ));
    committee.restart(4, false).await;
    committee.restart(5, false).await;

    let dispersal = committee.client().disperse(&batch).await.expect("disperse");
    dispersal.certificate.verify(&keys, &params).expect("valid");

    // Node 5's bit set with node 4's attestation counted twice: the aggregate fails.
    let commitment = dispersal.commitment;
    let attest =
        |position: usize| da_strong::attestation::attest(&committee.keys[position], &commitment);
    let votes: Vec<_> = [0usize, 1, 2, 3].iter().map(|&p| (p, attest(p))).collect();
    let mut forged_votes = votes.clone();
    forged_votes.push((5, attest(4)));
    let forged = AvailabilityCertificate {
        commitment,
        certificate: Certificate::aggregate(&forged_votes).expect("aggregate"),
    };
    assert!(matches!(
        forged.verify(&keys, &params),
        Err(DaError::Certificate(_))
    ));
    // An outsider's key signing for node 5.
    let outsider = BlsSecretKey::from_seed(&[99; 32]);
    let mut outsider_votes = votes.clone();
    outsider_votes.push((5, da_strong::attestation::attest(&outsider, &commitment)));
    let outsider_certificate = AvailabilityCertificate {
        commitment,
        certificate: Certificate::aggregate(&outsider_votes).expect("aggregate"),
    };
    assert!(outsider_certificate.verify(&keys, &params).is_err());
    // Four honest attestations: too few.
    let short = AvailabilityCertificate {
        commitment,
        certificate: Certificate::aggregate(&votes).expect("aggregate"),
    };
    assert!(matches!(
        short.verify(&keys, &params),
        Err(DaError::Certificate(
            primitives::bls::BlsError::TooFewSigners { .. }
        ))
    ));
    // A valid certificate does not certify another commitment.
    let mut moved = dispersal.certificate.clone();
    moved.commitment = B256::repeat_byte(1);
    assert!(moved.verify(&keys, &params).is_err());
}
