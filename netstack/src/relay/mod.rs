//! Relays: how two nodes that cannot reach each other directly still exchange datagrams.
//!
//! # Reachability
//! A node probes a relay ([`wire::RelayFrame::Probe`]). The relay answers from its socket with
//! the address it saw ([`wire::RelayFrame::Observed`]) and, from a second socket the node never
//! sent to, with a dial-back. A node is directly reachable ([`Reachability::is_direct`]) when
//! the relay saw the address the node is bound to (no NAT rewrote it) and the dial-back came
//! through (no NAT or firewall drops unsolicited datagrams). Only reachable nodes serve as
//! relays; the [`crate::dht::ProximityTable`] marks them so.
//!
//! # Relaying
//! Each node registers with relays close to it: it signs the challenge from the relay's
//! observed-address answer with its node key ([`registration_prehash`]), which binds the node ID
//! to the address it registers from. When A cannot reach B, A picks the reachable peer closest
//! to both ([`crate::dht::ProximityTable::relays_between`]), registers there too, and sends
//! every datagram for B as a [`wire::RelayFrame::Forward`]; the relay delivers it to B's
//! registered address as a [`wire::RelayFrame::Delivered`] naming A. The end-to-end Noise
//! session stays between A and B, so the relay forwards sealed datagrams it cannot open or
//! forge, and counts the bytes it relays per node ([`PeerUsage`]), warning once a node passes
//! its soft bound.
//!
//! [`RelayCore`] is the relay, sans-IO; [`RelayServer`] runs it on two UDP sockets.
//! [`RelayClient`] is a node's side: it probes and registers, then carries KCP (plain or
//! secure) through the relay transparently by giving each remote node a local UDP socket that
//! stands in for it (one per remote node and channel), so [`crate::driver::KcpClient`] and
//! [`crate::driver::KcpServer`], or a QUIC endpoint, run unchanged. [`dial`] tries the direct path first and falls back to the best relay.

mod client;
mod core;
mod server;
#[cfg(test)]
mod tests;
pub mod wire;

use std::net::SocketAddr;

use alloy_primitives::{B256, keccak256};

pub use client::{RelayClient, RelayClientStats, Route, dial};
pub use core::{PeerUsage, RelayConfig, RelayCore, RelaySocket, RelayStats, RelayTransmit};
pub use server::RelayServer;

/// The channel of KCP traffic (plain or secure): what [`dial`] uses.
pub const KCP_CHANNEL: u8 = 0;
/// The channel of QUIC traffic.
pub const QUIC_CHANNEL: u8 = 1;

/// Domain of a registration signature.
const REGISTRATION_DOMAIN: &[u8] = b"tickrate/netstack/relay-register/v1";

/// What a node signs to register with a relay: the challenge bound to its address.
pub fn registration_prehash(challenge: &[u8; wire::CHALLENGE_BYTES]) -> B256 {
    let mut material = REGISTRATION_DOMAIN.to_vec();
    material.extend_from_slice(challenge);
    keccak256(&material)
}

/// What a probe told a node about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reachability {
    /// The address the node's socket is bound to.
    pub local: SocketAddr,
    /// The address the relay saw the probe come from.
    pub observed: SocketAddr,
    /// Whether the relay's dial-back, from a socket the node never sent to, arrived.
    pub dial_back: bool,
}

impl Reachability {
    /// Whether others can reach the node at its observed address without a relay: nothing
    /// rewrote its address (the port, and the IP unless the socket is bound to the unspecified
    /// address) and unsolicited datagrams come through.
    pub fn is_direct(&self) -> bool {
        let same_ip = self.local.ip().is_unspecified()
            || self.local.ip().to_canonical() == self.observed.ip().to_canonical();
        self.dial_back && same_ip && self.local.port() == self.observed.port()
    }
}
