//! The estimation endpoint: clients ask a shard node for the Space Access List of a move over
//! KCP ([`primitives::estimate`]), and the node answers from executed state
//! ([`ShardNetwork::estimate`]).
//!
//! Estimation reads RocksDB stores and runs revm, so it runs on tokio's blocking pool, never on
//! the session tasks; at most [`ESTIMATES_IN_FLIGHT_MAX`] run at once and a request beyond that
//! is answered `Busy` at once rather than queued behind the others.

use std::{io, net::SocketAddr, sync::Arc};

use netstack::{
    driver::{KcpConnection, KcpServer},
    kcp::KcpConfig,
};
use parking_lot::Mutex;
use primitives::{
    Decode, Encode,
    estimate::{EstimateFound, EstimateRefusal, EstimateReply, EstimateRequest},
};
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use crate::network::ShardNetwork;

/// Estimations one node runs at once, over all sessions.
pub const ESTIMATES_IN_FLIGHT_MAX: usize = 4;

/// A running estimation endpoint; dropping it stops the socket task and every session.
#[derive(Debug)]
pub struct EstimatorServer {
    server: KcpServer,
}

impl EstimatorServer {
    /// Binds `listen` and answers estimation requests against `network`.
    pub async fn serve(
        network: Arc<Mutex<ShardNetwork>>,
        listen: SocketAddr,
    ) -> io::Result<EstimatorServer> {
        let (server, incoming) = KcpServer::bind(listen, KcpConfig::default()).await?;
        tokio::spawn(accept(
            incoming,
            network,
            Arc::new(Semaphore::new(ESTIMATES_IN_FLIGHT_MAX)),
        ));
        Ok(EstimatorServer { server })
    }

    /// The address clients reach it at.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

async fn accept(
    mut incoming: mpsc::Receiver<KcpConnection>,
    network: Arc<Mutex<ShardNetwork>>,
    in_flight: Arc<Semaphore>,
) {
    while let Some(connection) = incoming.recv().await {
        tokio::spawn(serve_session(
            connection,
            network.clone(),
            in_flight.clone(),
        ));
    }
}

async fn serve_session(
    mut connection: KcpConnection,
    network: Arc<Mutex<ShardNetwork>>,
    in_flight: Arc<Semaphore>,
) {
    let sender = connection.sender();
    while let Some(bytes) = connection.recv().await {
        let request = match EstimateRequest::from_bytes(&bytes) {
            Ok(request) => request,
            Err(error) => {
                debug!(target: "shard_node::estimate", %error, "malformed estimation request");
                let reply = EstimateReply {
                    id: 0,
                    result: Err(EstimateRefusal::Malformed),
                };
                if sender.send(reply.to_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let reply = EstimateReply {
                id: request.id,
                result: Err(EstimateRefusal::Busy),
            };
            if sender.send(reply.to_bytes()).await.is_err() {
                return;
            }
            continue;
        };
        let network = network.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let id = request.id;
            let answered = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                network
                    .lock()
                    .estimate(request.sender, &request.body, &request.deltas)
            })
            .await;
            let result = match answered {
                Ok(Ok(estimate)) => Ok(EstimateFound {
                    access_list: estimate.access_list,
                    status: estimate.status,
                    gas_used: estimate.gas_used,
                }),
                Ok(Err(refusal)) => Err(refusal),
                // The estimation task panicked: the node's state is not at fault, the request
                // is answered as if the state were unreadable.
                Err(_) => Err(EstimateRefusal::StateUnavailable),
            };
            let _ = sender.send(EstimateReply { id, result }.to_bytes()).await;
        });
    }
}
