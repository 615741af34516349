//! The outer shape of every sans-IO protocol core (KCP session, PBFT, group BFT, DHT routing,
//! packer, pending state), after quinn-proto and raft-rs.
//!
//! A core is fed `(now, input)` and drained; it never reads a clock, a socket or a thread, and
//! draws randomness only from a seed given at construction. After every `handle*` call the
//! driver drains, in this order: [`Machine::poll_transmit`] until `None`, then
//! [`Machine::poll_event`] until `None`, then re-arms its timer from [`Machine::poll_timeout`].
//! The tokio driver and the simulator both drive cores through this trait and nothing else.

use crate::{id::NodeId, time::Instant};

/// Where an input came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// An authenticated peer.
    Peer(NodeId),
    /// The node's own owner (a local command).
    Local,
}

/// Bytes the core wants sent.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The peer to send to.
    pub to: NodeId,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

/// A sans-IO protocol core.
pub trait Machine {
    /// A decoded, authenticated peer message or a local command.
    type Input;
    /// What the owner must act on: a commit, an ack, a lookup result.
    type Event;

    /// Feeds one input.
    fn handle(&mut self, now: Instant, from: Origin, input: Self::Input);
    /// Tells the core that `now` has passed its last [`Machine::poll_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// The next message to send, if any.
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;
    /// When the core next wants [`Machine::handle_timeout`], if ever.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next event for the owner, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;
}
