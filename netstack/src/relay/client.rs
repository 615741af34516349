//! A node's side of a relay: [`RelayClient`] (probe, register, tunnels) and [`dial`].

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use primitives::id::NodeId;
use rand::{TryRngCore, rngs::OsRng};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
    task::JoinSet,
    time::MissedTickBehavior,
};
use tracing::{Instrument, debug, info_span, trace, warn};

use super::{
    KCP_CHANNEL, Reachability, registration_prehash,
    wire::{CHALLENGE_BYTES, RelayFrame},
};
use crate::{
    constants::{
        DATAGRAM_BUFFER_BYTES, RELAY_DIAL_BACK_GRACE, RELAY_PAYLOAD_BYTES_MAX,
        RELAY_REGISTER_TIMEOUT, RELAY_RESEND_INTERVAL, RELAY_TUNNELS_MAX,
    },
    dht::ProximityTable,
    driver::{KcpClient, KcpConnection, is_transient},
    error::RelayError,
    kcp::KcpConfig,
    secure::NodeIdentity,
};

/// Relay candidates [`dial`] tries before it gives up.
const DIAL_RELAYS_TRIED: usize = 3;

/// Counters of a relay client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayClientStats {
    /// Datagrams sent to the relay for forwarding.
    pub forwarded: u64,
    /// Datagrams the relay delivered and the client passed to a local socket.
    pub delivered: u64,
    /// Delivered datagrams from a node with no tunnel while nothing is exposed.
    pub unrouted: u64,
    /// No-route answers: a peer was not registered at the relay.
    pub no_route: u64,
    /// Datagrams from the relay's address that were no well-formed relay frame.
    pub malformed: u64,
    /// Registrations renewed after the first.
    pub renewals: u64,
    /// Payload bytes sent to the relay for forwarding (what the relay counts as the node's
    /// `bytes_from`, less what is lost on the way).
    pub forwarded_bytes: u64,
    /// Payload bytes the relay delivered, routed or not (its `bytes_to` for this node, less
    /// what is lost on the way).
    pub received_bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    delivered: AtomicU64,
    unrouted: AtomicU64,
    no_route: AtomicU64,
    malformed: AtomicU64,
    renewals: AtomicU64,
    forwarded_bytes: AtomicU64,
    received_bytes: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn add(counter: &AtomicU64, amount: usize) {
    counter.fetch_add(amount as u64, Ordering::Relaxed);
}

enum Command {
    Tunnel {
        peer: NodeId,
        channel: u8,
        reply: oneshot::Sender<Result<SocketAddr, RelayError>>,
    },
    Expose {
        channel: u8,
        server: SocketAddr,
    },
}

/// A node registered with one relay, carrying datagrams to and from other nodes registered
/// there.
///
/// Each remote node gets a local UDP socket that stands in for it: whatever a local socket
/// sends to [`tunnel_to`](Self::tunnel_to)'s address goes to that node through the relay, and
/// what the node sends back arrives from that address. With [`expose`](Self::expose), datagrams
/// from nodes with no tunnel yet reach a local server from a new stand-in socket each. So
/// [`KcpClient::connect_secure`] and [`crate::driver::KcpServer::bind_secure`] run through a
/// relay unchanged, and the Noise session stays end to end.
///
/// The registration is renewed every third of its lease. Dropping the client stops its task and
/// closes every stand-in socket.
#[derive(Debug)]
pub struct RelayClient {
    relay: SocketAddr,
    node: NodeId,
    reachability: Reachability,
    lease: Duration,
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    _shutdown: oneshot::Sender<()>,
}

impl RelayClient {
    /// Probes the relay at `relay` from a new socket, learns this node's reachability, registers
    /// `identity`'s node and starts the tunnel task.
    pub async fn register(
        relay: SocketAddr,
        identity: &NodeIdentity,
    ) -> Result<RelayClient, RelayError> {
        let socket = UdpSocket::bind(unspecified_like(relay)).await?;
        let local = socket.local_addr()?;
        let node = identity.node_id();
        let span = info_span!(target: "netstack::relay", "relay_client", %relay, %node, %local);
        let (reachability, challenge) = probe(&socket, relay, local)
            .instrument(span.clone())
            .await?;
        let lease = register(&socket, relay, identity, &challenge)
            .instrument(span.clone())
            .await?;
        debug!(target: "netstack::relay", parent: &span, ?reachability, ?lease, "registered");
        let (commands, queue) = mpsc::channel(16);
        let (shutdown, stopped) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        let task = Tunnels {
            relay,
            socket: Arc::new(socket),
            identity: identity.clone(),
            lease,
            tunnels: HashMap::new(),
            readers: JoinSet::new(),
            exposed: HashMap::new(),
            counters: counters.clone(),
            renewal: None,
        };
        tokio::spawn(task.run(queue, stopped).instrument(span));
        Ok(RelayClient {
            relay,
            node,
            reachability,
            lease,
            commands,
            counters,
            _shutdown: shutdown,
        })
    }

    /// The relay's address.
    pub fn relay(&self) -> SocketAddr {
        self.relay
    }

    /// The node registered.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// What the probe said about this node's reachability.
    pub fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// The registration's lease as the relay granted it.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The counters so far.
    pub fn stats(&self) -> RelayClientStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        RelayClientStats {
            forwarded: read(&counters.forwarded),
            delivered: read(&counters.delivered),
            unrouted: read(&counters.unrouted),
            no_route: read(&counters.no_route),
            malformed: read(&counters.malformed),
            renewals: read(&counters.renewals),
            forwarded_bytes: read(&counters.forwarded_bytes),
            received_bytes: read(&counters.received_bytes),
        }
    }

    /// A local address standing in for `peer`'s service on `channel`: datagrams sent to it
    /// reach `peer` through the relay (the first local socket to send owns the tunnel), and
    /// `peer`'s answers come back from it.
    pub async fn tunnel_to(&self, peer: NodeId, channel: u8) -> Result<SocketAddr, RelayError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Tunnel {
                peer,
                channel,
                reply,
            })
            .await
            .map_err(|_| RelayError::Stopped)?;
        answer.await.map_err(|_| RelayError::Stopped)?
    }

    /// Passes datagrams on `channel` from nodes with no tunnel to the local server at
    /// `server`, each node from its own stand-in socket (so the server tells them apart by
    /// address).
    pub async fn expose(&self, channel: u8, server: SocketAddr) -> Result<(), RelayError> {
        self.commands
            .send(Command::Expose { channel, server })
            .await
            .map_err(|_| RelayError::Stopped)
    }
}

/// An unspecified address of `peer`'s family (loopback if `peer` is), port 0.
fn unspecified_like(peer: SocketAddr) -> SocketAddr {
    let ip = match (peer.ip(), peer.ip().is_loopback()) {
        (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

fn random_nonce() -> Result<u64, RelayError> {
    // Drivers may use real randomness; the cores never do.
    OsRng
        .try_next_u64()
        .map_err(|error| RelayError::Io(io::Error::other(error)))
}

/// Sends probes until the relay answers, then waits a little for its dial-back.
async fn probe(
    socket: &UdpSocket,
    relay: SocketAddr,
    local: SocketAddr,
) -> Result<(Reachability, [u8; CHALLENGE_BYTES]), RelayError> {
    let nonce = random_nonce()?;
    let request = RelayFrame::Probe { nonce }.encode();
    let mut observed = None;
    let mut dial_back = false;
    let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
    let mut resend = tokio::time::interval(RELAY_RESEND_INTERVAL);
    resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let timeout = tokio::time::sleep(RELAY_REGISTER_TIMEOUT);
    tokio::pin!(timeout);
    let grace = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            () = &mut timeout => {
                return Err(RelayError::Timeout { relay, step: "probe", timeout: RELAY_REGISTER_TIMEOUT });
            }
            () = &mut grace, if observed.is_some() => break,
            _ = resend.tick(), if observed.is_none() => send_best_effort(socket, &request, relay).await?,
            received = socket.recv_from(&mut buffer) => {
                let (len, from) = match received {
                    Ok(received) => received,
                    Err(error) if is_transient(&error) => continue,
                    Err(error) => return Err(error.into()),
                };
                match RelayFrame::decode(buffer.get(..len).unwrap_or_default()) {
                    Ok(RelayFrame::Observed { nonce: echoed, observed: seen, challenge })
                        if echoed == nonce && from == relay && observed.is_none() =>
                    {
                        observed = Some((seen, challenge));
                        grace.as_mut().reset(tokio::time::Instant::now() + RELAY_DIAL_BACK_GRACE);
                        if dial_back {
                            break;
                        }
                    }
                    // From any socket but the one we sent to: that is the point of it.
                    Ok(RelayFrame::DialBack { nonce: echoed }) if echoed == nonce && from != relay => {
                        dial_back = true;
                        if observed.is_some() {
                            break;
                        }
                    }
                    _ => trace!(target: "netstack::relay", %from, "unexpected datagram while probing"),
                }
            }
        }
    }
    let (observed, challenge) = observed.ok_or(RelayError::Timeout {
        relay,
        step: "probe",
        timeout: RELAY_REGISTER_TIMEOUT,
    })?;
    Ok((
        Reachability {
            local,
            observed,
            dial_back,
        },
        challenge,
    ))
}

/// Sends the registration until the relay confirms it; returns the lease.
async fn register(
    socket: &UdpSocket,
    relay: SocketAddr,
    identity: &NodeIdentity,
    challenge: &[u8; CHALLENGE_BYTES],
) -> Result<Duration, RelayError> {
    let request = registration(identity, challenge);
    let node = identity.node_id();
    let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
    let mut resend = tokio::time::interval(RELAY_RESEND_INTERVAL);
    resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let attempt = async {
        loop {
            tokio::select! {
                _ = resend.tick() => send_best_effort(socket, &request, relay).await?,
                received = socket.recv_from(&mut buffer) => {
                    let (len, from) = match received {
                        Ok(received) => received,
                        Err(error) if is_transient(&error) => continue,
                        Err(error) => return Err(RelayError::from(error)),
                    };
                    if from != relay {
                        continue;
                    }
                    match RelayFrame::decode(buffer.get(..len).unwrap_or_default()) {
                        Ok(RelayFrame::Registered { node: found, lease_secs }) if found == node => {
                            return Ok(Duration::from_secs(u64::from(lease_secs)));
                        }
                        Ok(RelayFrame::Registered { node: found, .. }) => {
                            return Err(RelayError::WrongRegistration { expected: node, found });
                        }
                        _ => trace!(target: "netstack::relay", "unexpected datagram while registering"),
                    }
                }
            }
        }
    };
    match tokio::time::timeout(RELAY_REGISTER_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(RelayError::Timeout {
            relay,
            step: "registration",
            timeout: RELAY_REGISTER_TIMEOUT,
        }),
    }
}

fn registration(identity: &NodeIdentity, challenge: &[u8; CHALLENGE_BYTES]) -> Vec<u8> {
    RelayFrame::Register {
        node: identity.node_id(),
        challenge: *challenge,
        signature: identity.sign_prehash(&registration_prehash(challenge)),
    }
    .encode()
}

async fn send_best_effort(
    socket: &UdpSocket,
    datagram: &[u8],
    to: SocketAddr,
) -> Result<(), RelayError> {
    match socket.send_to(datagram, to).await {
        Ok(_) => Ok(()),
        Err(error) if is_transient(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// One remote node's stand-in socket.
struct Tunnel {
    socket: Arc<UdpSocket>,
    /// The local socket on the other side of the stand-in: the first to send to it, or the
    /// exposed server.
    target: Arc<Mutex<Option<SocketAddr>>>,
}

/// The client's task: datagrams from the relay to stand-in sockets, renewals, commands.
struct Tunnels {
    relay: SocketAddr,
    socket: Arc<UdpSocket>,
    identity: NodeIdentity,
    lease: Duration,
    tunnels: HashMap<(NodeId, u8), Tunnel>,
    readers: JoinSet<()>,
    exposed: HashMap<u8, SocketAddr>,
    counters: Arc<Counters>,
    /// The nonce of the renewal probe in flight.
    renewal: Option<u64>,
}

impl Tunnels {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
        let period = (self.lease / 3).max(RELAY_RESEND_INTERVAL);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) if from == self.relay => {
                        self.handle_relay_datagram(buffer.get(..len).unwrap_or_default()).await;
                    }
                    Ok((_, from)) => trace!(target: "netstack::relay", %from, "datagram from a stranger"),
                    Err(error) if is_transient(&error) => {}
                    Err(error) => {
                        warn!(target: "netstack::relay", %error, "relay socket failed; tunnels stop");
                        break;
                    }
                },
                Some(command) = commands.recv() => self.handle_command(command).await,
                _ = renew.tick() => {
                    // A fresh challenge first: the relay's may have changed since.
                    match random_nonce() {
                        Ok(nonce) => {
                            self.renewal = Some(nonce);
                            self.send_to_relay(&RelayFrame::Probe { nonce }.encode()).await;
                        }
                        Err(error) => debug!(target: "netstack::relay", %error, "no nonce for a renewal"),
                    }
                }
            }
        }
        self.readers.abort_all();
    }

    async fn send_to_relay(&self, datagram: &[u8]) {
        if let Err(error) = self.socket.send_to(datagram, self.relay).await {
            debug!(target: "netstack::relay", %error, "send to the relay failed");
        }
    }

    async fn handle_relay_datagram(&mut self, datagram: &[u8]) {
        let frame = match RelayFrame::decode(datagram) {
            Ok(frame) => frame,
            Err(error) => {
                trace!(target: "netstack::relay", %error, "malformed datagram from the relay");
                bump(&self.counters.malformed);
                return;
            }
        };
        match frame {
            RelayFrame::Delivered {
                from,
                channel,
                payload,
            } => self.deliver((from, channel), payload).await,
            RelayFrame::NoRoute { to } => {
                debug!(target: "netstack::relay", peer = %to, "peer not registered at the relay");
                bump(&self.counters.no_route);
            }
            RelayFrame::Observed {
                nonce, challenge, ..
            } if self.renewal == Some(nonce) => {
                self.renewal = None;
                let request = registration(&self.identity, &challenge);
                self.send_to_relay(&request).await;
            }
            RelayFrame::Registered { node, .. } if node == self.identity.node_id() => {
                bump(&self.counters.renewals);
            }
            frame => trace!(target: "netstack::relay", frame = frame.name(), "ignored"),
        }
    }

    async fn deliver(&mut self, from: (NodeId, u8), payload: &[u8]) {
        add(&self.counters.received_bytes, payload.len());
        if !self.tunnels.contains_key(&from) {
            let Some(server) = self.exposed.get(&from.1).copied() else {
                trace!(target: "netstack::relay", peer = %from.0, channel = from.1, "datagram for no tunnel");
                bump(&self.counters.unrouted);
                return;
            };
            if let Err(error) = self.open(from, Some(server)).await {
                debug!(target: "netstack::relay", peer = %from.0, %error, "no tunnel for an inbound peer");
                bump(&self.counters.unrouted);
                return;
            }
        }
        let Some(tunnel) = self.tunnels.get(&from) else {
            return;
        };
        let target = *tunnel.target.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(target) = target else {
            // Nothing local has used this tunnel yet: nobody to give it to.
            bump(&self.counters.unrouted);
            return;
        };
        match tunnel.socket.send_to(payload, target).await {
            Ok(_) => bump(&self.counters.delivered),
            Err(error) => debug!(target: "netstack::relay", %error, "local delivery failed"),
        }
    }

    async fn handle_command(&mut self, command: Command) {
        match command {
            Command::Tunnel {
                peer,
                channel,
                reply,
            } => {
                let key = (peer, channel);
                let result = match self.tunnels.get(&key) {
                    Some(tunnel) => tunnel.socket.local_addr().map_err(RelayError::from),
                    None => self.open(key, None).await,
                };
                let _ = reply.send(result);
            }
            Command::Expose { channel, server } => {
                // A server on the unspecified address is reached on loopback.
                let server = if server.ip().is_unspecified() {
                    let ip = match server {
                        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    };
                    SocketAddr::new(ip, server.port())
                } else {
                    server
                };
                self.exposed.insert(channel, server);
            }
        }
    }

    /// Opens a stand-in socket for `peer`, aimed at `target` if known.
    async fn open(
        &mut self,
        key: (NodeId, u8),
        target: Option<SocketAddr>,
    ) -> Result<SocketAddr, RelayError> {
        if self.tunnels.len() >= RELAY_TUNNELS_MAX {
            return Err(RelayError::TooManyTunnels);
        }
        // Next to the local socket it talks to, or on loopback.
        let ip = match target {
            Some(target) => target.ip(),
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let socket = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await?);
        let local = socket.local_addr()?;
        let target = Arc::new(Mutex::new(target));
        self.readers.spawn(
            forward_from_local(
                socket.clone(),
                target.clone(),
                self.socket.clone(),
                self.relay,
                key,
                self.counters.clone(),
            )
            .in_current_span(),
        );
        debug!(target: "netstack::relay", peer = %key.0, channel = key.1, %local, "tunnel opened");
        self.tunnels.insert(key, Tunnel { socket, target });
        Ok(local)
    }
}

/// Reads a stand-in socket and forwards what its local peer sends to `peer` through the relay.
async fn forward_from_local(
    socket: Arc<UdpSocket>,
    target: Arc<Mutex<Option<SocketAddr>>>,
    relay_socket: Arc<UdpSocket>,
    relay: SocketAddr,
    (peer, channel): (NodeId, u8),
    counters: Arc<Counters>,
) {
    let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
    let mut frame = Vec::new();
    loop {
        let (len, from) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) if is_transient(&error) => continue,
            Err(error) => {
                debug!(target: "netstack::relay", %peer, %error, "stand-in socket failed");
                return;
            }
        };
        {
            let mut target = target.lock().unwrap_or_else(PoisonError::into_inner);
            match *target {
                Some(owner) if owner != from => {
                    trace!(target: "netstack::relay", %from, %owner, "stand-in used by a second socket");
                    continue;
                }
                Some(_) => {}
                None => *target = Some(from),
            }
        }
        let payload = buffer.get(..len).unwrap_or_default();
        if payload.is_empty() || payload.len() > RELAY_PAYLOAD_BYTES_MAX {
            trace!(target: "netstack::relay", len, "datagram the relay would refuse");
            continue;
        }
        RelayFrame::Forward {
            to: peer,
            channel,
            payload,
        }
        .encode_into(&mut frame);
        match relay_socket.send_to(&frame, relay).await {
            Ok(_) => {
                bump(&counters.forwarded);
                add(&counters.forwarded_bytes, payload.len());
            }
            Err(error) => debug!(target: "netstack::relay", %error, "forward failed"),
        }
    }
}

/// How [`dial`] reached a peer.
#[derive(Debug)]
pub enum Route {
    /// Straight to the peer's address.
    Direct,
    /// Through a relay; the client must live as long as the connection.
    Relayed {
        /// The relay's node.
        relay: NodeId,
        /// The relay's registration, carrying the connection.
        client: RelayClient,
    },
}

/// Opens a secure KCP connection with `peer` at `peer_addr`: directly if that completes within
/// `attempt_timeout`, else through the reachable peers of `table` closest to both `local` (this
/// node's address as others see it) and `peer_addr`, best first, up to three of them. `peer`
/// must be registered at the relay that works.
pub async fn dial(
    peer: NodeId,
    peer_addr: SocketAddr,
    local: SocketAddr,
    table: &ProximityTable,
    config: KcpConfig,
    identity: &NodeIdentity,
    attempt_timeout: Duration,
) -> Result<(KcpConnection, Route), RelayError> {
    let direct = KcpClient::connect_secure(peer_addr, config.clone(), identity.clone(), peer);
    match tokio::time::timeout(attempt_timeout, direct).await {
        Ok(Ok(connection)) => return Ok((connection, Route::Direct)),
        Ok(Err(error)) => debug!(target: "netstack::relay", %peer, %error, "direct dial failed"),
        Err(_) => debug!(target: "netstack::relay", %peer, "direct dial timed out"),
    }
    let candidates = table.relays_between(local, peer_addr, DIAL_RELAYS_TRIED);
    for candidate in &candidates {
        let relay = candidate.entry;
        let attempt = async {
            let client = RelayClient::register(relay.addr, identity).await?;
            let stand_in = client.tunnel_to(peer, KCP_CHANNEL).await?;
            let connection =
                KcpClient::connect_secure(stand_in, config.clone(), identity.clone(), peer).await?;
            Ok::<_, RelayError>((connection, client))
        };
        match tokio::time::timeout(attempt_timeout, attempt).await {
            Ok(Ok((connection, client))) => {
                debug!(target: "netstack::relay", %peer, relay = %relay.node, addr = %relay.addr, "relayed");
                return Ok((
                    connection,
                    Route::Relayed {
                        relay: relay.node,
                        client,
                    },
                ));
            }
            Ok(Err(error)) => {
                debug!(target: "netstack::relay", %peer, relay = %relay.addr, %error, "relay failed");
            }
            Err(_) => {
                debug!(target: "netstack::relay", %peer, relay = %relay.addr, "relay timed out")
            }
        }
    }
    Err(RelayError::Unreachable {
        node: peer,
        relays_tried: candidates.len(),
    })
}
