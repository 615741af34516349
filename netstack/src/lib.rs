//! Tickrate's network stack: reliable, low-latency messages over UDP for the client path
//! (client SDK ↔ sequencer), built like quinn — protocol cores without IO, tokio drivers apart.
//!
//! # Bird's-eye view
//! - [`kcp`] — the sans-IO core. A [`kcp::KcpSession`] is one KCP conversation in message
//!   mode: the owner feeds it datagrams and timeouts with the current
//!   [`primitives::time::Instant`], and drains datagrams to send, whole received messages and
//!   the next deadline. It checks every datagram before the `kcp` crate sees it, bounds every
//!   queue, and flushes at once when a message is sent, so a request and its reply cross
//!   loopback without waiting for a timer.
//! - [`driver`] — the tokio driver: one task per UDP socket, `select!` over the socket, a
//!   bounded command channel and a timer set to the earliest session deadline.
//!   [`driver::KcpServer`] demultiplexes sessions by (peer address, conversation) and yields
//!   a [`driver::KcpConnection`] per new peer; [`driver::KcpClient`] opens one session on its
//!   own socket. Connections send with back-pressure and close on dead link or idle timeout.
//!   Opt-in for node-to-node links, [`driver::KcpServer::bind_secure`] and
//!   [`driver::KcpClient::connect_secure`] run the [`secure`] layer under KCP: a handshake per
//!   peer address before any session, sealed datagrams after it, the proven
//!   [`driver::KcpConnection::peer_id`] on every connection, and KCP's MTU shrunk by the seal.
//! - [`dht`] — node-ID Kademlia as a sans-IO core: [`dht::RoutingTable`] (k = 8 buckets that
//!   keep long-lived entries, a replacement cache for newcomers) and [`dht::Lookup`] (iterative,
//!   alpha = 3 parallel queries); [`dht::network::SimulatedNetwork`] runs many in one seeded
//!   process for tests and the `dht` benchmark. Its second half, [`dht::ProximityTable`], keys
//!   peers by socket address in an XOR space where shared address prefixes mean short distances,
//!   and answers which reachable peers are closest to two given addresses.
//! - [`relay`] — how nodes that cannot reach each other still talk: probes that tell a node
//!   whether it is directly reachable, a sans-IO [`relay::RelayCore`] that registers nodes by
//!   their node key and forwards sealed datagrams between them counting bytes per node, and a
//!   [`relay::RelayClient`] that carries unchanged secure KCP (and QUIC, on its own channel)
//!   through a relay, picked by [`relay::dial`] from the proximity table when the direct path
//!   fails.
//! - [`secure`] — opt-in authenticated, encrypted datagrams under KCP: a Noise_XX handshake
//!   ([`secure::SecureHandshake`]) whose static keys are bound to node IDs by a secp256k1
//!   signature, then [`secure::SecureSession`] seals and opens each datagram with an explicit
//!   nonce and a replay window, counting every datagram it drops.
//! - [`resume`] — [`resume::ResumableSession`], sans-IO: sequence numbers, acknowledgements
//!   and a resume handshake over any ordered connection, so a message stream survives link
//!   drops without losing or reordering a message; [`driver::ResumableConnection`] runs it on
//!   a [`driver::KcpConnection`] and moves to a new one after a drop, one the caller dials or
//!   one it redials by itself with backoff ([`driver::ResumableConnection::open_redialing`]).
//! - [`quic`] — QUIC (quinn) for node-to-node request/response traffic such as DA chunk
//!   transfers: self-signed identities clients pin, endpoints, bounded length-prefixed frames.
//! - [`frame`] — the message bound ([`frame::MAX_MESSAGE_BYTES`]) and its error.
//! - [`lossy`] — test support for any crate: a seeded UDP proxy that drops, duplicates,
//!   reorders and delays datagrams.
//! - `emulated` (feature `emulated-link`) — test support for transport benchmarks: two network
//!   namespaces joined by TUN devices and a seeded userspace forwarder that delays, drops,
//!   duplicates and reorders IP packets and counts bytes per protocol, so kernel TCP and KCP
//!   cross the same faults.
//! - [`error`], [`constants`] — every error and every bound of the crate.
//!
//! # Not here yet
//! A plain server ([`driver::KcpServer::bind`], the client path for anonymous players) lets
//! anyone who can send UDP open a session (bounded by [`constants::SERVER_SESSIONS_MAX`] and
//! the idle timeout). A secure server does public-key work in its socket task for every first
//! handshake message it admits: at most [`constants::SECURE_HANDSHAKES_PER_SOURCE_MAX`] half
//! open per source address (an IPv6 /64) and [`constants::SECURE_HANDSHAKES_PENDING_MAX`] in
//! all, refusals counted by [`HandshakeRefusal`]. There are no handshake cookies, so a flood
//! from spoofed sources still costs that work up to the bounds, and can fill the table. The DHT has no wire format or tokio driver yet, so
//! the proximity table is filled by its owner; a node announces no relays yet (a dialler and
//! its peer must pick the same one).

pub mod constants;
pub mod dht;
pub mod driver;
#[cfg(feature = "emulated-link")]
pub mod emulated;
pub mod error;
pub mod frame;
pub mod kcp;
pub mod lossy;
pub mod quic;
pub mod relay;
pub mod resume;
pub mod secure;

#[cfg(feature = "emulated-link")]
pub use error::LinkError;
pub use error::{
    AuthError, ConfigError, ConnectError, FragmentError, FrameError, HandshakeRefusal, KcpError,
    NetError, RelayError, RelayFrameError, RelayRefusal, ResumeError, SendError,
};
