//! Space Access List estimation through a shard node.
//!
//! A move is signed with its list, and the list declares the values the move writes, so the
//! list must come from executed state, which only the execution nodes hold. An [`Estimator`]
//! holds a KCP session with one shard node and asks it for the list of an unsigned move
//! ([`primitives::estimate`]); [`Estimator::prepare`] puts the list into the move, ready to sign.
//! Requests are pipelined: many may be in flight on one session, each answered by its id.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use netstack::{
    driver::{KcpClient, KcpSender},
    kcp::KcpConfig,
};
use parking_lot::Mutex;
use primitives::{
    Address, Decode, Encode, Transaction,
    estimate::{EstimateFound, EstimateReply, EstimateRequest},
    finality::StateItem,
};
use tokio::sync::oneshot;
use tracing::warn;

use crate::ClientError;

type Waiting = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<EstimateReply>>>>>;

/// A session with a shard node's estimation endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Estimator {
    sender: KcpSender,
    /// Requests awaiting their reply; `None` once the session has ended.
    waiting: Waiting,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Estimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Estimator")
            .field("shard_node", &self.sender.peer_addr())
            .finish_non_exhaustive()
    }
}

impl Estimator {
    /// Opens a session with the estimation endpoint at `shard_node`.
    pub async fn connect(shard_node: SocketAddr) -> Result<Estimator, ClientError> {
        let mut connection = KcpClient::connect(shard_node, KcpConfig::default()).await?;
        let waiting: Waiting = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = waiting.clone();
        let sender = connection.sender();
        tokio::spawn(async move {
            while let Some(bytes) = connection.recv().await {
                match EstimateReply::from_bytes(&bytes) {
                    Ok(reply) => {
                        let waiter = reader
                            .lock()
                            .as_mut()
                            .and_then(|waiting| waiting.remove(&reply.id));
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(reply);
                        }
                    }
                    Err(error) => {
                        warn!(target: "client_sdk::estimator", %error, "undecodable reply from shard node");
                    }
                }
            }
            // Every waiter's sender drops here: their requests end as `Closed`.
            reader.lock().take();
        });
        Ok(Estimator {
            sender,
            waiting,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The list `body` needs when sent by `sender`, found on executed state (`body`'s own list
    /// is ignored). Changes to the items in `deltas` are declared as deltas, so that the move
    /// still holds when other players change those items first.
    pub async fn estimate(
        &self,
        sender: Address,
        body: &Transaction,
        deltas: &[StateItem],
    ) -> Result<EstimateFound, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answered) = oneshot::channel();
        match self.waiting.lock().as_mut() {
            Some(waiting) => waiting.insert(id, reply),
            None => return Err(ClientError::Closed),
        };
        let request = EstimateRequest {
            id,
            sender,
            body: body.clone(),
            deltas: deltas.to_vec(),
        };
        if self.sender.send(request.to_bytes()).await.is_err() {
            if let Some(waiting) = self.waiting.lock().as_mut() {
                waiting.remove(&id);
            }
            return Err(ClientError::Closed);
        }
        let reply = answered.await.map_err(|_| ClientError::Closed)?;
        reply.result.map_err(ClientError::Estimate)
    }

    /// `body` with the list it needs, ready to sign, if it succeeds on executed state; a move
    /// that would fail is not prepared ([`ClientError::WouldFail`]).
    pub async fn prepare(
        &self,
        sender: Address,
        body: Transaction,
        deltas: &[StateItem],
    ) -> Result<Transaction, ClientError> {
        let found = self.estimate(sender, &body, deltas).await?;
        if let Err(reason) = found.status {
            return Err(ClientError::WouldFail(reason));
        }
        Ok(Transaction {
            access_list: found.access_list,
            ..body
        })
    }
}
