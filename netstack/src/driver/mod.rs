//! The tokio driver: one task per UDP socket runs every [`crate::kcp::KcpSession`] on it.
//!
//! The task `select!`s over the socket, a bounded command channel from the application's
//! handles, and a sleep until the earliest session deadline (a heap of deadlines, so an idle
//! session costs nothing and hundreds of sessions do not spin). After every input it drives
//! the session touched in quinn's order: application messages into KCP, a due timeout,
//! `poll_transmit` → `send_to`, received messages to the application, the next deadline.
//!
//! Back-pressure runs end to end: a connection holds at most
//! [`crate::constants::CONNECTION_SEND_QUEUE_MAX`] messages in the driver beyond KCP's bounded
//! send queue, so [`KcpSender::send`] waits (and `try_send` fails) when the peer is slow; a
//! reader that falls behind leaves messages in KCP's receive window, which closes and slows
//! the peer.
//!
//! A secure socket ([`KcpServer::bind_secure`], [`KcpClient::connect_secure`]) passes every
//! datagram through the [`crate::secure`] layer first. Handshakes stay in the socket task;
//! established sessions are keyed by peer address, because the conversation ID is inside the
//! sealed datagram, and only what opens reaches KCP. KCP runs with the MTU less
//! [`crate::secure::SECURE_OVERHEAD_BYTES`], so sealed datagrams keep to the configured MTU.
//!
//! [`Dht`] runs one [`crate::dht::DhtNode`] on its own UDP socket, the same way.

mod connection;
mod dht;
mod endpoint;
mod resumable;
mod secure;

pub use connection::{KcpConnection, KcpSender};
pub use dht::{Dht, DhtError, DhtSnapshot, JoinReport};
pub(crate) use endpoint::is_transient;
pub use endpoint::{KcpClient, KcpServer};
pub use resumable::{Dial, RedialPolicy, ResumableConnection, ResumeAcceptor};
pub use secure::SecureEndpointStats;
