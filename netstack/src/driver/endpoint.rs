//! The socket task: one per UDP socket, driving every session on it.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use primitives::{id::NodeId, time::Instant};
use rand::{TryRngCore, rngs::OsRng};
use tokio::{
    net::UdpSocket,
    sync::{Notify, Semaphore, mpsc, oneshot},
};
use tracing::{Instrument, debug, info_span, trace, warn};

use super::{
    connection::{ConnectionShared, KcpConnection, KcpSender},
    secure::{Inbound, SecureCounters, SecureEndpoint, SecureEndpointStats, SecureLink, dial},
};
use crate::{
    constants::{
        CONNECTION_RECEIVE_QUEUE_MAX, CONNECTION_SEND_QUEUE_MAX, DATAGRAM_BUFFER_BYTES,
        ENDPOINT_COMMAND_QUEUE_MAX, ENDPOINT_COMMANDS_PER_WAKE, SERVER_INCOMING_QUEUE_MAX,
        SERVER_SESSIONS_MAX,
    },
    error::{ConnectError, SendError},
    kcp::{KcpConfig, KcpSession, conv_of},
    secure::{NodeIdentity, PeerPolicy, SECURE_OVERHEAD_BYTES},
};

/// A session's identity on a socket: the peer's address and the conversation.
pub(crate) type SessionKey = (SocketAddr, u32);

/// What the application's handles ask of the socket task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Queue a message on a session.
    Send { key: SessionKey, message: Bytes },
    /// Close a session.
    Close { key: SessionKey },
}

/// A KCP server: one UDP socket, one session per (peer address, conversation).
///
/// A datagram from an unknown peer that starts a KCP conversation opens a session and yields a
/// [`KcpConnection`] on the receiver [`bind`](Self::bind) returns. Dropping the server stops
/// its socket task and ends every connection.
///
/// A server from [`bind_secure`](Self::bind_secure) first runs a Noise_XX handshake with every
/// peer address and seals every datagram after it; see [`crate::secure`].
#[derive(Debug)]
pub struct KcpServer {
    local_addr: SocketAddr,
    sessions: Arc<AtomicUsize>,
    secure: Option<Arc<SecureCounters>>,
    _shutdown: oneshot::Sender<()>,
}

impl KcpServer {
    /// Binds `addr` and starts the socket task.
    pub async fn bind(
        addr: SocketAddr,
        config: KcpConfig,
    ) -> io::Result<(KcpServer, mpsc::Receiver<KcpConnection>)> {
        config.validate()?;
        KcpServer::start(addr, config, None).await
    }

    /// Binds `addr` and starts a socket task that authenticates and encrypts every peer.
    ///
    /// A new peer address must complete a Noise_XX handshake as initiator, proving a node
    /// `policy` accepts, before any KCP session is created for it; its connections then carry
    /// the proven [`KcpConnection::peer_id`]. Every datagram after the handshake is sealed, and
    /// datagrams that fail to open are dropped and counted in
    /// [`secure_stats`](Self::secure_stats). One secure session per peer address: a new
    /// handshake from an address replaces the old session (ending its connections) only once
    /// it finishes.
    ///
    /// KCP runs with `config.mtu` minus [`SECURE_OVERHEAD_BYTES`], so sealed datagrams still
    /// fit in `config.mtu`; the client must use the same `config`.
    pub async fn bind_secure(
        addr: SocketAddr,
        config: KcpConfig,
        identity: NodeIdentity,
        policy: PeerPolicy,
    ) -> io::Result<(KcpServer, mpsc::Receiver<KcpConnection>)> {
        config.validate()?;
        let inner = config.with_datagram_overhead(SECURE_OVERHEAD_BYTES)?;
        let secure = SecureEndpoint::server(identity, policy);
        KcpServer::start(addr, inner, Some(secure)).await
    }

    async fn start(
        addr: SocketAddr,
        config: KcpConfig,
        secure: Option<SecureEndpoint>,
    ) -> io::Result<(KcpServer, mpsc::Receiver<KcpConnection>)> {
        let socket = UdpSocket::bind(addr).await?;
        let local_addr = socket.local_addr()?;
        let (incoming, accepted) = mpsc::channel(SERVER_INCOMING_QUEUE_MAX);
        let (shutdown, stopped) = oneshot::channel();
        let sessions = Arc::new(AtomicUsize::new(0));
        let counters = secure.as_ref().map(SecureEndpoint::counters);
        let (endpoint, commands) = Endpoint::new(
            socket,
            local_addr,
            config,
            Role::Server { incoming },
            sessions.clone(),
            secure,
        );
        let span = info_span!(
            target: "netstack::driver",
            "kcp_server",
            local = %local_addr,
            secure = counters.is_some()
        );
        tokio::spawn(endpoint.run(commands, stopped).instrument(span));
        let server = KcpServer {
            local_addr,
            sessions,
            secure: counters,
            _shutdown: shutdown,
        };
        Ok((server, accepted))
    }

    /// The secure layer's counters: `None` for a plain server.
    pub fn secure_stats(&self) -> Option<SecureEndpointStats> {
        self.secure.as_ref().map(|counters| counters.snapshot())
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }
}

/// Opens client sessions, each on its own socket.
#[derive(Debug)]
pub struct KcpClient;

impl KcpClient {
    /// Opens a session with the server at `server` from a new socket (on loopback if `server`
    /// is, else on the unspecified address of its family), with a random conversation ID.
    ///
    /// KCP has no handshake: the session announces itself with a keepalive and the call
    /// returns at once. The socket task ends with the session (dead link, idle timeout, or every
    /// handle dropped).
    pub async fn connect(server: SocketAddr, config: KcpConfig) -> io::Result<KcpConnection> {
        config.validate()?;
        let socket = client_socket(server).await?;
        KcpClient::start(socket, server, config, None)
    }

    /// Opens an authenticated, encrypted session with the node `expected` at `server` from a
    /// new socket (see [`KcpServer::bind_secure`]).
    ///
    /// Runs the Noise_XX handshake as initiator first, resending its last datagram every
    /// [`SECURE_HANDSHAKE_RESEND_INTERVAL`](crate::constants::SECURE_HANDSHAKE_RESEND_INTERVAL)
    /// until the server confirms it holds the session, and returns the connection only then.
    /// Fails with [`ConnectError::UnexpectedPeer`] if the server proves another node, and with
    /// [`ConnectError::HandshakeTimeout`] after
    /// [`SECURE_HANDSHAKE_TIMEOUT`](crate::constants::SECURE_HANDSHAKE_TIMEOUT) (a server says
    /// nothing to a peer its policy refuses).
    pub async fn connect_secure(
        server: SocketAddr,
        config: KcpConfig,
        identity: NodeIdentity,
        expected: NodeId,
    ) -> Result<KcpConnection, ConnectError> {
        config.validate()?;
        let inner = config.with_datagram_overhead(SECURE_OVERHEAD_BYTES)?;
        let socket = client_socket(server).await?;
        let local_addr = socket.local_addr()?;
        let epoch = tokio::time::Instant::now();
        let span = info_span!(
            target: "netstack::driver",
            "kcp_secure_dial",
            local = %local_addr,
            %server,
            node = %identity.node_id(),
            %expected
        );
        let link = dial(&socket, server, &identity, expected, || {
            instant_since(epoch)
        })
        .instrument(span)
        .await?;
        let secure = SecureEndpoint::client(server, link);
        Ok(KcpClient::start(socket, server, inner, Some(secure))?)
    }

    /// Starts the socket task of a client with one session, announced by a keepalive.
    fn start(
        socket: UdpSocket,
        server: SocketAddr,
        config: KcpConfig,
        secure: Option<SecureEndpoint>,
    ) -> io::Result<KcpConnection> {
        let local_addr = socket.local_addr()?;
        // Drivers may use real randomness; the core never does.
        let conv = OsRng.try_next_u32().map_err(io::Error::other)?;
        let (shutdown, stopped) = oneshot::channel();
        let peer = secure.as_ref().and_then(|secure| secure.peer(server));
        let (mut endpoint, commands) = Endpoint::new(
            socket,
            local_addr,
            config,
            Role::Client {
                server,
                _shutdown: shutdown,
            },
            Arc::new(AtomicUsize::new(0)),
            secure,
        );
        let key = (server, conv);
        let now = endpoint.now();
        let mut session = KcpSession::new(conv, &endpoint.config, now);
        session.ping();
        let connection = endpoint.insert(key, session, peer);
        let span = info_span!(
            target: "netstack::driver",
            "kcp_client",
            local = %local_addr,
            %server,
            conv,
            peer = ?peer
        );
        tokio::spawn(
            async move {
                endpoint.service(key).await;
                endpoint.run(commands, stopped).await;
            }
            .instrument(span),
        );
        Ok(connection)
    }
}

/// A new socket to reach `server` from: on loopback if `server` is, else on the unspecified
/// address of its family.
async fn client_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let ip = match (server.ip(), server.ip().is_loopback()) {
        (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    UdpSocket::bind(SocketAddr::new(ip, 0)).await
}

/// Time since `epoch` as the cores see it.
fn instant_since(epoch: tokio::time::Instant) -> Instant {
    let micros = epoch.elapsed().as_micros();
    Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

enum Role {
    Server {
        incoming: mpsc::Sender<KcpConnection>,
    },
    Client {
        server: SocketAddr,
        /// Held so the task's shutdown receiver stays pending; a client stops with its session.
        _shutdown: oneshot::Sender<()>,
    },
}

/// One session and the driver's state around it.
struct Slot {
    session: KcpSession,
    /// Messages from the application not yet in KCP's send queue (bounded by the credits).
    outgoing: VecDeque<Bytes>,
    incoming: mpsc::Sender<Vec<u8>>,
    shared: Arc<ConnectionShared>,
    /// The deadline registered in the timer heap, if any.
    deadline: Option<Instant>,
    /// Whether the session is in the endpoint's list of blocked readers.
    reader_listed: bool,
    /// The authenticated peer of a session on a secure link; its datagrams are sealed.
    peer: Option<NodeId>,
}

enum Wake {
    Shutdown,
    Datagram(usize, SocketAddr),
    SocketError(io::Error),
    Command(Command),
    ReaderProgress,
    Timer,
}

struct Endpoint {
    socket: UdpSocket,
    local_addr: SocketAddr,
    config: KcpConfig,
    role: Role,
    sessions: HashMap<SessionKey, Slot>,
    session_count: Arc<AtomicUsize>,
    /// Session deadlines, earliest first; entries whose deadline no longer matches the slot's
    /// are stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, SessionKey)>>,
    /// Sessions whose application receive queue was full.
    blocked_readers: Vec<SessionKey>,
    reader_progress: Arc<Notify>,
    commands: mpsc::Sender<Command>,
    epoch: tokio::time::Instant,
    /// The secure layer, if this socket runs it: then every datagram passes through it.
    secure: Option<SecureEndpoint>,
}

impl Endpoint {
    fn new(
        socket: UdpSocket,
        local_addr: SocketAddr,
        config: KcpConfig,
        role: Role,
        session_count: Arc<AtomicUsize>,
        secure: Option<SecureEndpoint>,
    ) -> (Endpoint, mpsc::Receiver<Command>) {
        let (commands, queue) = mpsc::channel(ENDPOINT_COMMAND_QUEUE_MAX);
        let endpoint = Endpoint {
            socket,
            local_addr,
            config,
            role,
            sessions: HashMap::new(),
            session_count,
            timers: BinaryHeap::new(),
            blocked_readers: Vec::new(),
            reader_progress: Arc::new(Notify::new()),
            commands,
            epoch: tokio::time::Instant::now(),
            secure,
        };
        (endpoint, queue)
    }

    /// The wall clock as the cores see it.
    fn now(&self) -> Instant {
        instant_since(self.epoch)
    }

    fn wall_clock(&self, at: Instant) -> Option<tokio::time::Instant> {
        self.epoch
            .checked_add(Duration::from_micros(at.as_micros()))
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: oneshot::Receiver<()>,
    ) {
        debug!(target: "netstack::driver", local = %self.local_addr, "socket task started");
        let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
        loop {
            let deadline = self.next_deadline().and_then(|at| self.wall_clock(at));
            let wake = tokio::select! {
                biased;
                _ = &mut shutdown => Wake::Shutdown,
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => Wake::Datagram(len, from),
                    Err(error) => Wake::SocketError(error),
                },
                // The task holds a sender itself, so the channel never closes.
                Some(command) = commands.recv() => Wake::Command(command),
                () = self.reader_progress.notified() => Wake::ReaderProgress,
                () = sleep_until(deadline), if deadline.is_some() => Wake::Timer,
            };
            match wake {
                Wake::Shutdown => break,
                Wake::Datagram(len, from) => {
                    let datagram = buffer.get(..len).unwrap_or_default();
                    self.handle_datagram(from, datagram).await;
                }
                Wake::SocketError(error) => {
                    if is_transient(&error) {
                        trace!(target: "netstack::driver", %error, "transient socket error");
                    } else {
                        warn!(target: "netstack::driver", %error, "socket failed; stopping");
                        break;
                    }
                }
                Wake::Command(command) => self.handle_commands(command, &mut commands).await,
                Wake::ReaderProgress => {
                    for key in std::mem::take(&mut self.blocked_readers) {
                        if let Some(slot) = self.sessions.get_mut(&key) {
                            slot.reader_listed = false;
                        }
                        self.service(key).await;
                    }
                }
                Wake::Timer => {}
            }
            self.handle_timeouts().await;
            if matches!(self.role, Role::Client { .. }) && self.sessions.is_empty() {
                break;
            }
        }
        for (_, slot) in self.sessions.drain() {
            slot.shared.credits.close();
        }
        self.session_count.store(0, Ordering::Relaxed);
        debug!(target: "netstack::driver", local = %self.local_addr, "socket task stopped");
    }

    async fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        if self.secure.is_some() {
            self.handle_secure_datagram(from, datagram).await;
        } else {
            self.handle_kcp_datagram(from, datagram, None).await;
        }
    }

    /// Passes a datagram through the secure layer: handshakes stay there, and only KCP
    /// datagrams that open under an established session reach KCP.
    async fn handle_secure_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        let now = self.now();
        let Some(secure) = self.secure.as_mut() else {
            return;
        };
        match secure.handle_datagram(now, from, datagram) {
            Inbound::Dropped | Inbound::Consumed => {}
            Inbound::Reply(answer) => self.send_raw(&answer, from).await,
            Inbound::Established(link) => self.establish(from, *link).await,
            Inbound::Opened(peer) => {
                let plaintext = secure.take_plaintext();
                self.handle_kcp_datagram(from, &plaintext, Some(peer)).await;
                if let Some(secure) = self.secure.as_mut() {
                    secure.restore_plaintext(plaintext);
                }
            }
        }
    }

    /// Installs a secure session that just finished its handshake. Sessions on the address's
    /// previous link end first: that peer restarted (or left), and its keys are gone.
    async fn establish(&mut self, from: SocketAddr, link: SecureLink) {
        let replaced: Vec<SessionKey> = self
            .sessions
            .keys()
            .filter(|key| key.0 == from)
            .copied()
            .collect();
        for key in replaced {
            debug!(target: "netstack::driver", peer = %from, conv = key.1, "peer shook hands again; session replaced");
            self.remove(key, false);
        }
        let Some(secure) = self.secure.as_mut() else {
            return;
        };
        if let Some(confirmation) = secure.install(from, link) {
            self.send_raw(&confirmation, from).await;
        }
    }

    async fn send_raw(&self, datagram: &[u8], to: SocketAddr) {
        if let Err(error) = self.socket.send_to(datagram, to).await {
            // The initiator resends until answered.
            debug!(target: "netstack::driver", peer = %to, %error, "send failed");
        }
    }

    /// Hands a KCP datagram (plain, or opened under `peer`'s secure session) to its session,
    /// opening one on a server if it starts a conversation.
    async fn handle_kcp_datagram(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        peer: Option<NodeId>,
    ) {
        let Some(conv) = conv_of(datagram) else {
            trace!(target: "netstack::driver", %from, len = datagram.len(), "not a KCP datagram");
            return;
        };
        let key = (from, conv);
        let now = self.now();
        if let Some(slot) = self.sessions.get_mut(&key) {
            if let Err(error) = slot.session.handle_datagram(now, datagram) {
                trace!(target: "netstack::driver", %from, conv, %error, "datagram refused");
                return;
            }
            self.service(key).await;
            return;
        }
        match &self.role {
            Role::Server { .. } => self.open(key, datagram, now, peer).await,
            // Sessions are keyed by the server's address, so strangers land here.
            Role::Client { server, .. } => {
                trace!(target: "netstack::driver", %from, conv, %server, "datagram for no session");
            }
        }
    }

    /// Opens a server session for a datagram from an unknown (address, conversation).
    async fn open(&mut self, key: SessionKey, datagram: &[u8], now: Instant, peer: Option<NodeId>) {
        let incoming = match &self.role {
            Role::Server { incoming } => incoming.clone(),
            Role::Client { .. } => return,
        };
        if self.sessions.len() >= SERVER_SESSIONS_MAX {
            debug!(target: "netstack::driver", peer = %key.0, "session limit reached; datagram dropped");
            return;
        }
        if KcpSession::opens_conversation(datagram, &self.config).is_none() {
            trace!(target: "netstack::driver", peer = %key.0, "datagram opens no conversation");
            return;
        }
        let permit = match incoming.try_reserve() {
            Ok(permit) => permit,
            Err(error) => {
                debug!(target: "netstack::driver", peer = %key.0, %error, "not accepting; datagram dropped");
                return;
            }
        };
        let mut session = KcpSession::new(key.1, &self.config, now);
        if session.handle_datagram(now, datagram).is_err() {
            return;
        }
        debug!(target: "netstack::driver", peer = %key.0, conv = key.1, node = ?peer, "session opened");
        let connection = self.insert(key, session, peer);
        permit.send(connection);
        self.service(key).await;
    }

    fn insert(
        &mut self,
        key: SessionKey,
        session: KcpSession,
        peer: Option<NodeId>,
    ) -> KcpConnection {
        if peer.is_some()
            && let Some(secure) = self.secure.as_mut()
        {
            secure.attach(key.0);
        }
        let shared = Arc::new(ConnectionShared {
            credits: Semaphore::new(CONNECTION_SEND_QUEUE_MAX),
            reader_blocked: AtomicBool::new(false),
            message_bytes_max: session.message_bytes_max(),
            peer,
        });
        let (incoming, received) = mpsc::channel(CONNECTION_RECEIVE_QUEUE_MAX);
        let slot = Slot {
            session,
            outgoing: VecDeque::new(),
            incoming,
            shared: shared.clone(),
            deadline: None,
            reader_listed: false,
            peer,
        };
        self.sessions.insert(key, slot);
        self.session_count
            .store(self.sessions.len(), Ordering::Relaxed);
        let sender = KcpSender::new(key, self.commands.clone(), shared);
        KcpConnection::new(sender, received, self.reader_progress.clone())
    }

    /// Takes `first` and every command already queued behind it (up to the queue's bound),
    /// then drives each session they touched once: messages sent back to back leave in as few
    /// datagrams as KCP can pack them into, not one datagram and one syscall each.
    async fn handle_commands(&mut self, first: Command, commands: &mut mpsc::Receiver<Command>) {
        let mut touched: Vec<SessionKey> = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(command) = next.take() {
            taken += 1;
            if let Some(key) = self.apply_command(command)
                && !touched.contains(&key)
            {
                touched.push(key);
            }
            if taken < ENDPOINT_COMMANDS_PER_WAKE {
                next = commands.try_recv().ok();
            }
        }
        for key in touched {
            self.service(key).await;
        }
    }

    /// Applies one command to its session; returns the session to drive, if it exists.
    fn apply_command(&mut self, command: Command) -> Option<SessionKey> {
        match command {
            Command::Send { key, message } => {
                let slot = self.sessions.get_mut(&key)?;
                slot.outgoing.push_back(message);
                assert!(
                    slot.outgoing.len() <= CONNECTION_SEND_QUEUE_MAX,
                    "credits bound the messages a connection holds in the driver"
                );
                Some(key)
            }
            Command::Close { key } => {
                let slot = self.sessions.get_mut(&key)?;
                slot.session.close();
                Some(key)
            }
        }
    }

    /// Handles every session whose deadline has come.
    async fn handle_timeouts(&mut self) {
        let now = self.now();
        let mut due = Vec::new();
        while let Some(Reverse((deadline, key))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if let Some(slot) = self.sessions.get_mut(&key)
                && slot.deadline == Some(deadline)
            {
                slot.deadline = None;
                due.push(key);
            }
        }
        for key in due {
            self.service(key).await;
        }
    }

    /// The earliest live deadline; drops stale heap entries on the way.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, key))) = self.timers.peek().copied() {
            match self.sessions.get(&key) {
                Some(slot) if slot.deadline == Some(deadline) => return Some(deadline),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// Drives one session after any input, in quinn's order: application messages into KCP,
    /// a due timeout, transmits, received messages, then the next deadline.
    async fn service(&mut self, key: SessionKey) {
        let now = self.now();
        let Some(slot) = self.sessions.get_mut(&key) else {
            return;
        };
        pump_outgoing(slot);
        if slot.session.poll_timeout() <= now {
            slot.session.handle_timeout(now);
        }
        while let Some(datagram) = slot.session.poll_transmit() {
            let wire = match (slot.peer, self.secure.as_mut()) {
                (Some(_), Some(secure)) => match secure.seal(key.0, &datagram) {
                    Some(sealed) => sealed,
                    // The link is gone; the session goes with it.
                    None => continue,
                },
                _ => datagram.as_slice(),
            };
            // The KCP MTU of a secure socket leaves room for the seal.
            debug_assert!(
                slot.peer.is_none() || wire.len() <= self.config.mtu + SECURE_OVERHEAD_BYTES
            );
            if let Err(error) = self.socket.send_to(wire, key.0).await {
                // KCP retransmits what the socket dropped.
                debug!(target: "netstack::driver", peer = %key.0, %error, "send failed");
            }
        }
        if deliver(slot) && !slot.reader_listed {
            slot.reader_listed = true;
            self.blocked_readers.push(key);
        }
        let abandoned = Arc::strong_count(&slot.shared) == 1;
        if slot.session.is_dead() || abandoned {
            self.remove(key, abandoned);
            return;
        }
        let deadline = slot.session.poll_timeout();
        if slot.deadline != Some(deadline) {
            slot.deadline = Some(deadline);
            self.timers.push(Reverse((deadline, key)));
        }
        // Stale entries pile up as deadlines move; rebuild before they outnumber live ones.
        if self.timers.len() > 4 * self.sessions.len() + 64 {
            self.timers = self
                .sessions
                .iter()
                .filter_map(|(key, slot)| slot.deadline.map(|at| Reverse((at, *key))))
                .collect();
        }
    }

    fn remove(&mut self, key: SessionKey, abandoned: bool) {
        let Some(slot) = self.sessions.remove(&key) else {
            return;
        };
        slot.shared.credits.close();
        self.session_count
            .store(self.sessions.len(), Ordering::Relaxed);
        if slot.peer.is_some()
            && let Some(secure) = self.secure.as_mut()
        {
            secure.detach(key.0);
        }
        debug!(
            target: "netstack::driver",
            peer = %key.0,
            conv = key.1,
            reason = ?slot.session.close_reason(),
            abandoned,
            stats = ?slot.session.stats(),
            "session removed"
        );
    }
}

/// Moves application messages into KCP's send queue while it has room.
fn pump_outgoing(slot: &mut Slot) {
    while let Some(message) = slot.outgoing.front() {
        match slot.session.send(message) {
            Ok(()) => {}
            Err(SendError::QueueFull { .. }) | Err(SendError::Closed) => return,
            Err(error) => {
                // The sender checked the bound already; not expected.
                warn!(target: "netstack::driver", %error, "message refused by the session");
            }
        }
        slot.outgoing.pop_front();
        slot.shared.credits.add_permits(1);
    }
}

/// Hands received messages to the application; returns whether its queue was full.
fn deliver(slot: &mut Slot) -> bool {
    loop {
        if slot.incoming.is_closed() {
            // Nobody reads this connection any more: drain so the peer's window stays open.
            while slot.session.poll_message().is_some() {}
            return false;
        }
        let permit = match slot.incoming.try_reserve() {
            Ok(permit) => permit,
            Err(_) => {
                slot.shared.reader_blocked.store(true, Ordering::Release);
                // The reader may have made room between the attempt and the flag; retry once
                // so its wake-up is never lost.
                match slot.incoming.try_reserve() {
                    Ok(permit) => permit,
                    Err(_) => return true,
                }
            }
        };
        match slot.session.poll_message() {
            Some(message) => permit.send(message),
            None => return false,
        }
    }
}

pub(crate) fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
