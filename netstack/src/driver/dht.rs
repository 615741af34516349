//! The DHT's tokio driver: one task per UDP socket runs one [`DhtNode`].
//!
//! The task `select!`s over the socket, a bounded command channel from the [`Dht`] handles and
//! a sleep until the node's next deadline; after every input it drains, in the core's order,
//! the datagrams to send, then the events (each answering the command that started it). Time
//! is the task's own clock since it started, passed to the core as
//! [`primitives::time::Instant`]. The task ends when every handle is dropped.

use std::{collections::HashMap, io, net::SocketAddr, time::Duration};

use alloy_primitives::Address;
use primitives::{id::NodeId, time::Instant};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
};
use tracing::{Instrument, debug, info_span, warn};

use super::is_transient;
use crate::{
    dht::{
        Contact, DhtBusy, DhtConfig, DhtEvent, DhtLookupResult, DhtNode, DhtStats, JoinId,
        LookupId, wire::DHT_DATAGRAM_BYTES_MAX,
    },
    secure::NodeIdentity,
};

/// Commands a [`Dht`] handle may queue before `send` waits.
const DHT_COMMAND_QUEUE_MAX: usize = 64;

/// Why a [`Dht`] command failed.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The node's task stopped (its socket failed).
    #[error("the DHT task stopped")]
    Stopped,
    /// The node runs as many lookups or joins as it may.
    #[error(transparent)]
    Busy(#[from] DhtBusy),
    /// The bootstrap never answered.
    #[error("bootstrap {bootstrap} did not answer")]
    JoinFailed {
        /// The address tried.
        bootstrap: SocketAddr,
    },
}

/// What a finished join learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinReport {
    /// The bootstrap node, as it proved itself.
    pub bootstrap: Contact,
    /// Nodes in the routing table after the join.
    pub table_len: usize,
}

enum Command {
    Join {
        bootstrap: SocketAddr,
        reply: oneshot::Sender<Result<JoinReport, DhtError>>,
    },
    Lookup {
        target: Address,
        reply: oneshot::Sender<Result<DhtLookupResult, DhtError>>,
    },
    Snapshot {
        reply: oneshot::Sender<DhtSnapshot>,
    },
}

/// A node's state at one moment, for tests and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtSnapshot {
    /// The counters.
    pub stats: DhtStats,
    /// Every node of the routing table with its proven address.
    pub contacts: Vec<Contact>,
    /// Requests waiting for an answer.
    pub requests_in_flight: usize,
}

/// A handle on a DHT node running on its own UDP socket. Cloning shares the node; the node
/// stops when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Dht {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    node_id: NodeId,
}

impl Dht {
    /// Binds `addr` and starts a node signing as `identity`.
    pub async fn bind(
        addr: SocketAddr,
        identity: NodeIdentity,
        config: DhtConfig,
    ) -> Result<Dht, DhtError> {
        let socket = UdpSocket::bind(addr).await?;
        let local_addr = socket.local_addr()?;
        let node_id = identity.node_id();
        let (commands, receiver) = mpsc::channel(DHT_COMMAND_QUEUE_MAX);
        let span = info_span!(target: "netstack::dht", "dht", local = %local_addr, node = %node_id);
        let task = DhtTask {
            socket,
            node: DhtNode::new(identity, config),
            epoch: tokio::time::Instant::now(),
            joins: HashMap::new(),
            lookups: HashMap::new(),
        };
        tokio::spawn(task.run(receiver).instrument(span));
        Ok(Dht {
            commands,
            local_addr,
            node_id,
        })
    }

    /// The socket address the node listens at.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's ID.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This node as others reach it.
    pub fn contact(&self) -> Contact {
        Contact {
            id: self.node_id,
            addr: self.local_addr,
        }
    }

    /// Joins through the node at `bootstrap`: learns its ID, looks up this node's own ID so
    /// its neighbours learn it, and refreshes the buckets farther than the nearest neighbour.
    pub async fn join(&self, bootstrap: SocketAddr) -> Result<JoinReport, DhtError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Join { bootstrap, reply }).await?;
        answer.await.map_err(|_| DhtError::Stopped)?
    }

    /// The k nodes nearest to `target` that answered an iterative lookup, nearest first.
    pub async fn lookup(&self, target: Address) -> Result<DhtLookupResult, DhtError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Lookup { target, reply }).await?;
        answer.await.map_err(|_| DhtError::Stopped)?
    }

    /// The node's counters, table and requests in flight.
    pub async fn snapshot(&self) -> Result<DhtSnapshot, DhtError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Snapshot { reply }).await?;
        answer.await.map_err(|_| DhtError::Stopped)
    }

    async fn command(&self, command: Command) -> Result<(), DhtError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| DhtError::Stopped)
    }
}

struct DhtTask {
    socket: UdpSocket,
    node: DhtNode,
    epoch: tokio::time::Instant,
    joins: HashMap<JoinId, oneshot::Sender<Result<JoinReport, DhtError>>>,
    lookups: HashMap<LookupId, oneshot::Sender<Result<DhtLookupResult, DhtError>>>,
}

impl DhtTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // One byte more than the largest datagram, so an oversized one is seen as such.
        let mut buffer = vec![0u8; DHT_DATAGRAM_BYTES_MAX + 1];
        loop {
            let deadline = self.node.poll_timeout().map(|at| self.wall_clock(at));
            tokio::select! {
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => {
                        let now = self.now();
                        self.node.handle_datagram(now, from, &buffer[..len]);
                    }
                    Err(error) if is_transient(&error) => {
                        debug!(target: "netstack::dht", %error, "transient receive error");
                    }
                    Err(error) => {
                        warn!(target: "netstack::dht", %error, "socket failed; the node stops");
                        return;
                    }
                },
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => return,
                },
                () = sleep_until(deadline) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
            }
            self.drain().await;
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Join { bootstrap, reply } => match self.node.start_join(now, bootstrap) {
                Ok(id) => {
                    self.joins.insert(id, reply);
                }
                Err(busy) => {
                    let _ = reply.send(Err(busy.into()));
                }
            },
            Command::Lookup { target, reply } => match self.node.start_lookup(now, target) {
                Ok(id) => {
                    self.lookups.insert(id, reply);
                }
                Err(busy) => {
                    let _ = reply.send(Err(busy.into()));
                }
            },
            Command::Snapshot { reply } => {
                let _ = reply.send(DhtSnapshot {
                    stats: self.node.stats(),
                    contacts: self.node.contacts(),
                    requests_in_flight: self.node.requests_in_flight(),
                });
            }
        }
    }

    /// Sends what the node wants sent, then answers the commands whose work ended.
    async fn drain(&mut self) {
        while let Some(transmit) = self.node.poll_transmit() {
            if let Err(error) = self.socket.send_to(&transmit.bytes, transmit.to).await {
                // A lost datagram: the request is retried, or the asker asks again.
                debug!(target: "netstack::dht", to = %transmit.to, %error, "send failed");
            }
        }
        while let Some(event) = self.node.poll_event() {
            match event {
                DhtEvent::LookupFinished { id, result } => {
                    if let Some(reply) = self.lookups.remove(&id) {
                        let _ = reply.send(Ok(result));
                    }
                }
                DhtEvent::Joined {
                    id,
                    bootstrap,
                    table_len,
                } => {
                    if let Some(reply) = self.joins.remove(&id) {
                        let _ = reply.send(Ok(JoinReport {
                            bootstrap,
                            table_len,
                        }));
                    }
                }
                DhtEvent::JoinFailed { id, bootstrap } => {
                    if let Some(reply) = self.joins.remove(&id) {
                        let _ = reply.send(Err(DhtError::JoinFailed { bootstrap }));
                    }
                }
            }
        }
    }

    fn now(&self) -> Instant {
        let micros = self.epoch.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    fn wall_clock(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + Duration::from_micros(at.as_micros())
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
