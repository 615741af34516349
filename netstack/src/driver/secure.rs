//! The secure layer in the socket task: a server answers Noise_XX handshakes and keeps one
//! sealed link per peer address; a client dials before its socket task starts.
//!
//! The sans-IO [`SecureHandshake`] has no timer, so the initiator drives retransmission: it
//! resends its last handshake datagram until answered. The responder never resends on its own;
//! it answers a repeated datagram from the state it kept. The responder only learns it is done
//! on the initiator's third message, which may be lost, so it confirms with a sealed empty
//! datagram and the initiator keeps resending its third message until a sealed datagram opens.
//! Only then does the client create its KCP session, so its first KCP datagram never arrives
//! before the server can open it.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use primitives::{id::NodeId, time::Instant};
use rand::{TryRngCore, rngs::OsRng};
use tokio::{net::UdpSocket, time::MissedTickBehavior};
use tracing::{debug, trace};

use super::endpoint::is_transient;
use crate::{
    constants::{
        DATAGRAM_BUFFER_BYTES, SECURE_HANDSHAKE_RESEND_INTERVAL, SECURE_HANDSHAKE_TIMEOUT,
        SECURE_HANDSHAKES_PENDING_MAX, SECURE_HANDSHAKES_PER_SOURCE_MAX, SECURE_SESSIONS_MAX,
    },
    error::{AuthError, ConnectError, HandshakeRefusal},
    secure::{
        HANDSHAKE_TAG, NodeIdentity, PeerPolicy, SecureHandshake, SecureSession, SecureStats,
        TRANSPORT_TAG,
    },
};

/// Counters of a secure server socket, over every peer it has had.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecureEndpointStats {
    /// Handshakes begun (a first handshake message accepted).
    pub handshakes_started: u64,
    /// Handshakes that ended with an authenticated peer.
    pub handshakes_completed: u64,
    /// Handshakes whose peer proved a node the policy refuses, or proved none.
    pub handshakes_refused: u64,
    /// Handshakes that broke off otherwise (malformed, out of turn, forged, no room for the
    /// session).
    pub handshakes_failed: u64,
    /// First handshake messages refused, before any work, because
    /// [`SECURE_HANDSHAKES_PENDING_MAX`] handshakes were half open
    /// ([`HandshakeRefusal::Busy`]).
    pub handshakes_refused_busy: u64,
    /// First handshake messages refused, before any work, because their source had
    /// [`SECURE_HANDSHAKES_PER_SOURCE_MAX`] handshakes half open
    /// ([`HandshakeRefusal::SourceBusy`]).
    pub handshakes_refused_source_busy: u64,
    /// Datagrams from an address with no secure session or handshake for them.
    pub datagrams_unattached: u64,
    /// Datagrams neither a handshake nor a transport datagram.
    pub datagrams_malformed: u64,
    /// Transport datagrams sealed, opened and dropped by their reason, over every session.
    pub transport: SecureStats,
}

/// The socket task's live counters behind [`SecureEndpointStats`].
#[derive(Debug, Default)]
pub(crate) struct SecureCounters {
    handshakes_started: AtomicU64,
    handshakes_completed: AtomicU64,
    handshakes_refused: AtomicU64,
    handshakes_failed: AtomicU64,
    handshakes_refused_busy: AtomicU64,
    handshakes_refused_source_busy: AtomicU64,
    datagrams_unattached: AtomicU64,
    datagrams_malformed: AtomicU64,
    sealed: AtomicU64,
    opened: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_forged: AtomicU64,
    dropped_replayed: AtomicU64,
    dropped_stale: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl SecureCounters {
    pub(crate) fn snapshot(&self) -> SecureEndpointStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SecureEndpointStats {
            handshakes_started: read(&self.handshakes_started),
            handshakes_completed: read(&self.handshakes_completed),
            handshakes_refused: read(&self.handshakes_refused),
            handshakes_failed: read(&self.handshakes_failed),
            handshakes_refused_busy: read(&self.handshakes_refused_busy),
            handshakes_refused_source_busy: read(&self.handshakes_refused_source_busy),
            datagrams_unattached: read(&self.datagrams_unattached),
            datagrams_malformed: read(&self.datagrams_malformed),
            transport: SecureStats {
                sealed: read(&self.sealed),
                opened: read(&self.opened),
                dropped_malformed: read(&self.dropped_malformed),
                dropped_forged: read(&self.dropped_forged),
                dropped_replayed: read(&self.dropped_replayed),
                dropped_stale: read(&self.dropped_stale),
            },
        }
    }

    /// Mirrors the reason [`SecureSession::open`] counted, so the totals outlive sessions.
    fn count_open(&self, result: &Result<(), AuthError>) {
        match result {
            Ok(()) => bump(&self.opened),
            Err(AuthError::Malformed { .. }) => bump(&self.dropped_malformed),
            Err(AuthError::Forged) => bump(&self.dropped_forged),
            Err(AuthError::Replayed { .. }) => bump(&self.dropped_replayed),
            Err(AuthError::Stale { .. }) => bump(&self.dropped_stale),
            Err(_) => {}
        }
    }
}

/// An established secure session with the peer at one address.
pub(crate) struct SecureLink {
    session: SecureSession,
    /// The handshake's first and last datagrams (the initiator's), so their late copies are
    /// recognised instead of taken for a restart.
    first_message: Vec<u8>,
    last_message: Vec<u8>,
    established_at: Instant,
    /// KCP sessions riding on this link; the link goes with the last of them.
    kcp_sessions: u32,
}

impl SecureLink {
    pub(crate) fn peer(&self) -> NodeId {
        self.session.peer()
    }
}

/// A responder's handshake waiting for the initiator's third message.
struct PendingHandshake {
    handshake: SecureHandshake,
    first_message: Vec<u8>,
    started_at: Instant,
}

/// What the socket task does with a datagram after the secure layer looked at it.
pub(crate) enum Inbound {
    /// Refused and counted.
    Dropped,
    /// Handled here; nothing for KCP.
    Consumed,
    /// Send this back to the sender.
    Reply(Vec<u8>),
    /// A handshake finished. The socket task ends the KCP sessions of the address's previous
    /// link, if any, then [`install`](SecureEndpoint::install)s this one.
    Established(Box<SecureLink>),
    /// A KCP datagram from this peer is in [`take_plaintext`](SecureEndpoint::take_plaintext).
    Opened(NodeId),
}

/// The secure state of one socket.
pub(crate) struct SecureEndpoint {
    /// The server's identity and policy; a client has none, as it answers no handshake.
    responder: Option<(NodeIdentity, PeerPolicy)>,
    links: HashMap<SocketAddr, SecureLink>,
    pending: HashMap<SocketAddr, PendingHandshake>,
    counters: Arc<SecureCounters>,
    sealed: Vec<u8>,
    plaintext: Vec<u8>,
}

impl SecureEndpoint {
    pub(crate) fn server(identity: NodeIdentity, policy: PeerPolicy) -> SecureEndpoint {
        SecureEndpoint::with(Some((identity, policy)))
    }

    /// A client's, holding the link `dial` established with `server`.
    pub(crate) fn client(server: SocketAddr, link: SecureLink) -> SecureEndpoint {
        let mut endpoint = SecureEndpoint::with(None);
        endpoint.links.insert(server, link);
        endpoint
    }

    fn with(responder: Option<(NodeIdentity, PeerPolicy)>) -> SecureEndpoint {
        SecureEndpoint {
            responder,
            links: HashMap::new(),
            pending: HashMap::new(),
            counters: Arc::new(SecureCounters::default()),
            sealed: Vec::new(),
            plaintext: Vec::new(),
        }
    }

    pub(crate) fn counters(&self) -> Arc<SecureCounters> {
        self.counters.clone()
    }

    /// Sorts one datagram from `from` by its first byte.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Inbound {
        match datagram.first() {
            Some(&TRANSPORT_TAG) => self.open(from, datagram),
            Some(&HANDSHAKE_TAG) if self.responder.is_some() => {
                self.handle_handshake(now, from, datagram)
            }
            Some(&HANDSHAKE_TAG) => {
                // A client's handshake is over before its socket task runs: a late copy.
                trace!(target: "netstack::driver", %from, "late handshake datagram");
                bump(&self.counters.datagrams_unattached);
                Inbound::Dropped
            }
            _ => {
                trace!(target: "netstack::driver", %from, len = datagram.len(), "not a secure datagram");
                bump(&self.counters.datagrams_malformed);
                Inbound::Dropped
            }
        }
    }

    fn open(&mut self, from: SocketAddr, datagram: &[u8]) -> Inbound {
        let Some(link) = self.links.get_mut(&from) else {
            trace!(target: "netstack::driver", %from, "transport datagram from no secure session");
            bump(&self.counters.datagrams_unattached);
            return Inbound::Dropped;
        };
        let result = link.session.open(datagram, &mut self.plaintext);
        self.counters.count_open(&result);
        match result {
            // KCP datagrams are never empty: this is a handshake confirmation.
            Ok(()) if self.plaintext.is_empty() => Inbound::Consumed,
            Ok(()) => Inbound::Opened(link.session.peer()),
            Err(error) => {
                trace!(target: "netstack::driver", %from, %error, "transport datagram dropped");
                Inbound::Dropped
            }
        }
    }

    fn handle_handshake(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Inbound {
        if let Some(link) = self.links.get(&from) {
            if datagram == link.last_message.as_slice() {
                // The peer missed our confirmation and resent its last message.
                return match self.confirmation(from) {
                    Some(confirmation) => Inbound::Reply(confirmation),
                    None => Inbound::Dropped,
                };
            }
            if datagram == link.first_message.as_slice() {
                return Inbound::Consumed;
            }
        }
        match datagram.get(1) {
            Some(0) => self.start_handshake(now, from, datagram),
            Some(2) => self.finish_handshake(now, from, datagram),
            _ => {
                trace!(target: "netstack::driver", %from, "handshake datagram out of turn");
                bump(&self.counters.datagrams_malformed);
                Inbound::Dropped
            }
        }
    }

    /// Answers a first handshake message. An established link is left alone: it is replaced
    /// only if this handshake finishes, so an unauthenticated datagram cannot end it.
    fn start_handshake(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Inbound {
        if let Some(pending) = self.pending.get(&from)
            && pending.first_message == datagram
        {
            // Our answer was lost or the first message duplicated; answer from the same
            // state, or the initiator's third message would not match ours.
            return match pending.handshake.last_transmit() {
                Some(answer) => Inbound::Reply(answer.to_vec()),
                None => Inbound::Dropped,
            };
        }
        if let Err(refusal) = self.admit(now, from) {
            debug!(target: "netstack::driver", %from, %refusal, "handshake refused before any work");
            match refusal {
                HandshakeRefusal::Busy { .. } => bump(&self.counters.handshakes_refused_busy),
                HandshakeRefusal::SourceBusy { .. } => {
                    bump(&self.counters.handshakes_refused_source_busy);
                }
            }
            return Inbound::Dropped;
        }
        let Some((identity, policy)) = &self.responder else {
            return Inbound::Dropped;
        };
        // Drivers may use real randomness; the core never does.
        let seed = match OsRng.try_next_u64() {
            Ok(seed) => seed,
            Err(error) => {
                debug!(target: "netstack::driver", %error, "no randomness for a handshake");
                bump(&self.counters.handshakes_failed);
                return Inbound::Dropped;
            }
        };
        let mut handshake = SecureHandshake::responder(identity, policy.clone(), seed);
        if let Err(error) = handshake.handle_datagram(datagram) {
            trace!(target: "netstack::driver", %from, %error, "first handshake message refused");
            bump(&self.counters.handshakes_failed);
            return Inbound::Dropped;
        }
        let Some(answer) = handshake.poll_transmit() else {
            bump(&self.counters.handshakes_failed);
            return Inbound::Dropped;
        };
        bump(&self.counters.handshakes_started);
        // Replaces a half-done handshake from this address: the peer started over.
        self.pending.insert(
            from,
            PendingHandshake {
                handshake,
                first_message: datagram.to_vec(),
                started_at: now,
            },
        );
        Inbound::Reply(answer)
    }

    /// Whether a first handshake message from `from` may start a handshake, before any
    /// public-key work: at most [`SECURE_HANDSHAKES_PENDING_MAX`] half-open handshakes in all
    /// and [`SECURE_HANDSHAKES_PER_SOURCE_MAX`] from one source (see [`handshake_source`]).
    /// Half-open handshakes older than [`SECURE_HANDSHAKE_TIMEOUT`] are forgotten to make room.
    /// A peer restarting its own half-open handshake from the same address is always admitted.
    pub(crate) fn admit(&mut self, now: Instant, from: SocketAddr) -> Result<(), HandshakeRefusal> {
        if self.pending.contains_key(&from) {
            return Ok(());
        }
        let source = handshake_source(from);
        let from_source = |pending: &HashMap<SocketAddr, PendingHandshake>| {
            pending
                .keys()
                .filter(|addr| handshake_source(**addr) == source)
                .count()
        };
        let full = |pending: &HashMap<SocketAddr, PendingHandshake>| {
            pending.len() >= SECURE_HANDSHAKES_PENDING_MAX
                || from_source(pending) >= SECURE_HANDSHAKES_PER_SOURCE_MAX
        };
        if full(&self.pending) {
            self.pending.retain(|_, pending| {
                now.saturating_duration_since(pending.started_at) < SECURE_HANDSHAKE_TIMEOUT
            });
        }
        if self.pending.len() >= SECURE_HANDSHAKES_PENDING_MAX {
            return Err(HandshakeRefusal::Busy {
                pending: self.pending.len(),
            });
        }
        let pending = from_source(&self.pending);
        if pending >= SECURE_HANDSHAKES_PER_SOURCE_MAX {
            return Err(HandshakeRefusal::SourceBusy {
                origin: source,
                pending,
            });
        }
        Ok(())
    }

    fn finish_handshake(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Inbound {
        let Some(pending) = self.pending.get_mut(&from) else {
            trace!(target: "netstack::driver", %from, "third handshake message without a handshake");
            bump(&self.counters.datagrams_unattached);
            return Inbound::Dropped;
        };
        let result = pending.handshake.handle_datagram(datagram);
        let Some(pending) = self.pending.remove(&from) else {
            return Inbound::Dropped;
        };
        match result {
            Ok(()) => {}
            Err(error @ (AuthError::UnknownPeer { .. } | AuthError::BadBinding)) => {
                debug!(target: "netstack::driver", %from, %error, "peer refused");
                bump(&self.counters.handshakes_refused);
                return Inbound::Dropped;
            }
            Err(error) => {
                debug!(target: "netstack::driver", %from, %error, "handshake failed");
                bump(&self.counters.handshakes_failed);
                return Inbound::Dropped;
            }
        }
        if !self.links.contains_key(&from) && self.links.len() >= SECURE_SESSIONS_MAX {
            // Links that never carried a KCP session would otherwise hold their slot forever.
            self.links.retain(|_, link| {
                link.kcp_sessions > 0
                    || now.saturating_duration_since(link.established_at) < SECURE_HANDSHAKE_TIMEOUT
            });
            if self.links.len() >= SECURE_SESSIONS_MAX {
                debug!(target: "netstack::driver", %from, "secure session limit reached");
                bump(&self.counters.handshakes_failed);
                return Inbound::Dropped;
            }
        }
        let session = match pending.handshake.into_session() {
            Ok(session) => session,
            Err(error) => {
                debug!(target: "netstack::driver", %from, %error, "handshake unfinished");
                bump(&self.counters.handshakes_failed);
                return Inbound::Dropped;
            }
        };
        bump(&self.counters.handshakes_completed);
        Inbound::Established(Box::new(SecureLink {
            session,
            first_message: pending.first_message,
            last_message: datagram.to_vec(),
            established_at: now,
            kcp_sessions: 0,
        }))
    }

    /// Installs a link that finished its handshake (replacing the address's previous one) and
    /// returns the confirmation to send.
    pub(crate) fn install(&mut self, peer_addr: SocketAddr, link: SecureLink) -> Option<Vec<u8>> {
        debug!(target: "netstack::driver", peer = %peer_addr, node = %link.peer(), "secure session established");
        self.links.insert(peer_addr, link);
        self.confirmation(peer_addr)
    }

    /// A sealed empty datagram: tells the initiator we hold the session.
    fn confirmation(&mut self, peer_addr: SocketAddr) -> Option<Vec<u8>> {
        self.seal(peer_addr, &[]).map(<[u8]>::to_vec)
    }

    /// The peer proven at `peer_addr`, if a link is established.
    pub(crate) fn peer(&self, peer_addr: SocketAddr) -> Option<NodeId> {
        self.links.get(&peer_addr).map(SecureLink::peer)
    }

    /// Seals `datagram` for `peer_addr`; `None` if there is no link (or it refused).
    pub(crate) fn seal(&mut self, peer_addr: SocketAddr, datagram: &[u8]) -> Option<&[u8]> {
        let link = self.links.get_mut(&peer_addr)?;
        match link.session.seal(datagram, &mut self.sealed) {
            Ok(()) => {
                bump(&self.counters.sealed);
                Some(&self.sealed)
            }
            Err(error) => {
                debug!(target: "netstack::driver", peer = %peer_addr, %error, "seal refused");
                None
            }
        }
    }

    /// The last opened KCP datagram; hand the buffer back with
    /// [`restore_plaintext`](Self::restore_plaintext) so it is reused.
    pub(crate) fn take_plaintext(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.plaintext)
    }

    pub(crate) fn restore_plaintext(&mut self, buffer: Vec<u8>) {
        self.plaintext = buffer;
    }

    /// A KCP session now rides on the link at `peer_addr`.
    pub(crate) fn attach(&mut self, peer_addr: SocketAddr) {
        if let Some(link) = self.links.get_mut(&peer_addr) {
            link.kcp_sessions += 1;
        }
    }

    /// A KCP session on the link at `peer_addr` ended; the last one takes the link with it.
    pub(crate) fn detach(&mut self, peer_addr: SocketAddr) {
        let Some(link) = self.links.get_mut(&peer_addr) else {
            return;
        };
        link.kcp_sessions = link.kcp_sessions.saturating_sub(1);
        if link.kcp_sessions == 0 {
            let stats = link.session.stats();
            self.links.remove(&peer_addr);
            debug!(target: "netstack::driver", peer = %peer_addr, ?stats, "secure session ended");
        }
    }
}

/// The source a half-open handshake counts against: the IPv4 address, or the /64 of an IPv6
/// one (one host commonly holds a whole /64).
pub(crate) fn handshake_source(addr: SocketAddr) -> IpAddr {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => IpAddr::V4(ip),
        IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip) & !((1u128 << 64) - 1))),
    }
}

/// Runs the initiator's side of the handshake with `server` on `socket`, until the server
/// confirms it holds the session or [`SECURE_HANDSHAKE_TIMEOUT`] passes.
pub(crate) async fn dial(
    socket: &UdpSocket,
    server: SocketAddr,
    identity: &NodeIdentity,
    expected: NodeId,
    now: impl Fn() -> Instant,
) -> Result<SecureLink, ConnectError> {
    let attempt = dial_until_confirmed(socket, server, identity, expected, now);
    match tokio::time::timeout(SECURE_HANDSHAKE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::HandshakeTimeout {
            timeout: SECURE_HANDSHAKE_TIMEOUT,
        }),
    }
}

async fn dial_until_confirmed(
    socket: &UdpSocket,
    server: SocketAddr,
    identity: &NodeIdentity,
    expected: NodeId,
    now: impl Fn() -> Instant,
) -> Result<SecureLink, ConnectError> {
    let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
    let mut resend = tokio::time::interval(SECURE_HANDSHAKE_RESEND_INTERVAL);
    resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut handshake = initiator(identity, expected)?;
    let mut first_message = handshake.last_transmit().unwrap_or_default().to_vec();
    // Until the server's answer: the interval's first tick is immediate and sends message 1.
    while !handshake.is_finished() {
        tokio::select! {
            received = socket.recv_from(&mut buffer) => {
                let Some(datagram) = from_server(received, server, &buffer)? else {
                    continue;
                };
                if datagram.first() != Some(&HANDSHAKE_TAG) || datagram.get(1) != Some(&1) {
                    continue;
                }
                match handshake.handle_datagram(datagram) {
                    Ok(()) => {}
                    Err(AuthError::UnknownPeer { node }) => {
                        return Err(ConnectError::UnexpectedPeer { expected, found: node });
                    }
                    Err(AuthError::BadBinding) => {
                        return Err(ConnectError::Handshake(AuthError::BadBinding));
                    }
                    Err(error) => {
                        // Forged or corrupted: the handshake state is spent, so start over.
                        debug!(target: "netstack::driver", %error, "handshake restarted");
                        handshake = initiator(identity, expected)?;
                        first_message = handshake.last_transmit().unwrap_or_default().to_vec();
                        resend.reset_immediately();
                    }
                }
            }
            _ = resend.tick() => {
                if let Some(message) = handshake.last_transmit() {
                    send_best_effort(socket, message, server).await?;
                }
            }
        }
    }
    let last_message = handshake.last_transmit().unwrap_or_default().to_vec();
    send_best_effort(socket, &last_message, server).await?;
    let mut session = handshake.into_session().map_err(ConnectError::Handshake)?;
    resend.reset();
    let mut opened = Vec::new();
    // Until the server confirms; resending message 3 as long as it does not.
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buffer) => {
                let Some(datagram) = from_server(received, server, &buffer)? else {
                    continue;
                };
                if datagram.first() == Some(&TRANSPORT_TAG)
                    && session.open(datagram, &mut opened).is_ok()
                {
                    break;
                }
            }
            _ = resend.tick() => send_best_effort(socket, &last_message, server).await?,
        }
    }
    Ok(SecureLink {
        session,
        first_message,
        last_message,
        established_at: now(),
        kcp_sessions: 0,
    })
}

fn initiator(identity: &NodeIdentity, expected: NodeId) -> Result<SecureHandshake, ConnectError> {
    // Drivers may use real randomness; the core never does.
    let seed = OsRng
        .try_next_u64()
        .map_err(|error| ConnectError::Io(std::io::Error::other(error)))?;
    Ok(SecureHandshake::initiator(identity, expected, seed))
}

/// The datagram just received if it came from `server`; transient socket errors read as none.
fn from_server(
    received: std::io::Result<(usize, SocketAddr)>,
    server: SocketAddr,
    buffer: &[u8],
) -> Result<Option<&[u8]>, ConnectError> {
    match received {
        Ok((len, from)) if from == server => Ok(buffer.get(..len)),
        Ok((_, from)) => {
            trace!(target: "netstack::driver", %from, "datagram from a stranger while dialling");
            Ok(None)
        }
        Err(error) if is_transient(&error) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Sends one handshake datagram; a transient failure is left to the next resend.
async fn send_best_effort(
    socket: &UdpSocket,
    datagram: &[u8],
    server: SocketAddr,
) -> Result<(), ConnectError> {
    match socket.send_to(datagram, server).await {
        Ok(_) => Ok(()),
        Err(error) if is_transient(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use primitives::keys::AccountKey;

    use super::*;

    const T0: Instant = Instant::from_micros(0);

    fn identity(seed: u64) -> NodeIdentity {
        NodeIdentity::new(AccountKey::from_seed(seed))
    }

    fn server() -> SecureEndpoint {
        SecureEndpoint::server(identity(1), PeerPolicy::AnyNode)
    }

    /// A first handshake message for the server, from a fresh initiator.
    fn first_message(seed: u64) -> Vec<u8> {
        let handshake = SecureHandshake::initiator(&identity(2), identity(1).node_id(), seed);
        handshake
            .last_transmit()
            .expect("an initiator starts with message 1")
            .to_vec()
    }

    fn answered(endpoint: &mut SecureEndpoint, now: Instant, from: &str, message: &[u8]) -> bool {
        let from: SocketAddr = from.parse().expect("a socket address");
        matches!(
            endpoint.handle_datagram(now, from, message),
            Inbound::Reply(_)
        )
    }

    #[test]
    fn one_source_holds_a_bounded_number_of_half_open_handshakes() {
        let mut endpoint = server();
        let message = first_message(7);
        for port in 1..=SECURE_HANDSHAKES_PER_SOURCE_MAX {
            assert!(answered(
                &mut endpoint,
                T0,
                &format!("10.0.0.1:{port}"),
                &message
            ));
        }
        // A ninth port of the same host: refused before any work.
        assert!(!answered(&mut endpoint, T0, "10.0.0.1:999", &message));
        let from: SocketAddr = "10.0.0.1:999".parse().expect("addr");
        assert_eq!(
            endpoint.admit(T0, from),
            Err(HandshakeRefusal::SourceBusy {
                origin: from.ip(),
                pending: SECURE_HANDSHAKES_PER_SOURCE_MAX
            })
        );
        // A peer restarting its own handshake, and another host, are still answered.
        assert!(answered(&mut endpoint, T0, "10.0.0.1:1", &first_message(8)));
        assert!(answered(&mut endpoint, T0, "10.0.0.2:1", &message));
        // IPv6 counts by /64.
        for host in 1..=SECURE_HANDSHAKES_PER_SOURCE_MAX {
            assert!(answered(
                &mut endpoint,
                T0,
                &format!("[2001:db8::{host:x}]:5"),
                &message
            ));
        }
        assert!(!answered(
            &mut endpoint,
            T0,
            "[2001:db8::ffff:1]:5",
            &message
        ));
        assert!(answered(&mut endpoint, T0, "[2001:db8:0:1::1]:5", &message));
        let stats = endpoint.counters().snapshot();
        assert_eq!(stats.handshakes_refused_source_busy, 2);
        assert_eq!(stats.handshakes_refused_busy, 0);
        assert_eq!(
            stats.handshakes_started,
            2 * SECURE_HANDSHAKES_PER_SOURCE_MAX as u64 + 3
        );
        // Once the half-open ones time out, the source is answered again.
        let later = T0 + SECURE_HANDSHAKE_TIMEOUT;
        assert!(answered(&mut endpoint, later, "10.0.0.1:999", &message));
    }

    #[test]
    fn the_server_holds_a_bounded_number_of_half_open_handshakes_in_all() {
        let mut endpoint = server();
        let message = first_message(7);
        for index in 0..SECURE_HANDSHAKES_PENDING_MAX {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + u32::try_from(index).expect("small"));
            let from = SocketAddr::from((ip, 1));
            assert!(matches!(
                endpoint.handle_datagram(T0, from, &message),
                Inbound::Reply(_)
            ));
        }
        let from: SocketAddr = "192.0.2.1:1".parse().expect("addr");
        assert!(matches!(
            endpoint.handle_datagram(T0, from, &message),
            Inbound::Dropped
        ));
        assert_eq!(
            endpoint.admit(T0, from),
            Err(HandshakeRefusal::Busy {
                pending: SECURE_HANDSHAKES_PENDING_MAX
            })
        );
        let stats = endpoint.counters().snapshot();
        assert_eq!(stats.handshakes_refused_busy, 1);
        assert_eq!(stats.handshakes_refused_source_busy, 0);
        assert_eq!(stats.handshakes_failed, 0);
        assert_eq!(
            stats.handshakes_started,
            SECURE_HANDSHAKES_PENDING_MAX as u64
        );
        // Half-open handshakes that outlived the timeout make room.
        let later = T0 + SECURE_HANDSHAKE_TIMEOUT;
        assert!(matches!(
            endpoint.handle_datagram(later, from, &message),
            Inbound::Reply(_)
        ));
    }
}
