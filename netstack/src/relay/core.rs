//! [`RelayCore`]: the relay's state machine. Datagrams and instants in, datagrams out.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::Duration,
};

use alloy_primitives::keccak256;
use primitives::{id::NodeId, time::Instant};
use tracing::{debug, trace, warn};

use super::{
    registration_prehash,
    wire::{CHALLENGE_BYTES, RelayFrame},
};
use crate::{
    constants::{
        RELAY_CHALLENGE_PERIOD, RELAY_LEASE_DEFAULT, RELAY_PEER_BYTES_SOFT_MAX_DEFAULT,
        RELAY_REGISTRATIONS_MAX,
    },
    error::RelayRefusal,
};

/// What a relay accepts and when it warns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// How long a registration lasts without being renewed (forwarding from the node renews
    /// it too).
    pub lease: Duration,
    /// Registrations held at most.
    pub registrations_max: usize,
    /// Bytes forwarded for one node (from it plus to it) after which the relay logs a warning
    /// and marks the node over its bound. Soft: forwarding goes on.
    pub peer_bytes_soft_max: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            lease: RELAY_LEASE_DEFAULT,
            registrations_max: RELAY_REGISTRATIONS_MAX,
            peer_bytes_soft_max: RELAY_PEER_BYTES_SOFT_MAX_DEFAULT,
        }
    }
}

/// Which of the relay's two sockets a datagram leaves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelaySocket {
    /// The socket nodes send to.
    Main,
    /// The second socket, which only ever sends dial-backs: a datagram from it is unsolicited
    /// as far as the node's NAT or firewall is concerned.
    DialBack,
}

/// A datagram the relay sends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct RelayTransmit {
    /// The socket to send from.
    pub via: RelaySocket,
    /// The destination.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// What the relay forwarded for one registered node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerUsage {
    /// Payload bytes the node sent through the relay.
    pub bytes_from: u64,
    /// Payload bytes the relay delivered to the node.
    pub bytes_to: u64,
    /// Datagrams the node sent through the relay.
    pub datagrams_from: u64,
    /// Datagrams the relay delivered to the node.
    pub datagrams_to: u64,
    /// Whether `bytes_from + bytes_to` passed [`RelayConfig::peer_bytes_soft_max`] (a warning
    /// was logged when it did).
    pub over_bound: bool,
}

impl PeerUsage {
    /// Bytes forwarded for the node, both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes_from.saturating_add(self.bytes_to)
    }
}

/// Counters of a relay, over its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Probes answered.
    pub probes: u64,
    /// Registrations accepted (renewals included).
    pub registrations: u64,
    /// Datagrams forwarded.
    pub forwarded: u64,
    /// Payload bytes forwarded.
    pub forwarded_bytes: u64,
    /// Datagrams that were no relay frame, or a malformed one.
    pub refused_malformed: u64,
    /// Frames only a relay sends.
    pub refused_unexpected: u64,
    /// Registrations with a wrong challenge or signature.
    pub refused_unauthenticated: u64,
    /// Registrations refused because the relay was full.
    pub refused_full: u64,
    /// Forwards from unregistered addresses, to unregistered nodes, or to the sender itself.
    pub refused_unroutable: u64,
    /// Nodes that went past the soft byte bound.
    pub peers_over_bound: u64,
}

struct Registration {
    addr: SocketAddr,
    expires: Instant,
    usage: PeerUsage,
}

/// A relay, sans-IO: it answers probes (observed address, plus a dial-back from its second
/// socket), registers nodes that prove their node key over a challenge bound to their address,
/// and forwards opaque datagrams between registered nodes, counting bytes per node.
///
/// It never sees inside what it forwards: node-to-node traffic is sealed by the end-to-end
/// secure session. It only vouches for who sent it (the registered node at the source
/// address), which the end-to-end handshake checks again.
///
/// Inputs: [`handle_datagram`](Self::handle_datagram), [`handle_timeout`](Self::handle_timeout).
/// Outputs: [`poll_transmit`](Self::poll_transmit), [`poll_timeout`](Self::poll_timeout).
pub struct RelayCore {
    config: RelayConfig,
    secret: [u8; 32],
    nodes: HashMap<NodeId, Registration>,
    addrs: HashMap<SocketAddr, NodeId>,
    outbox: VecDeque<RelayTransmit>,
    stats: RelayStats,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for RelayCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCore")
            .field("config", &self.config)
            .field("registered", &self.nodes.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl RelayCore {
    /// A relay whose challenges derive from `secret` (the driver draws it at random).
    pub fn new(config: RelayConfig, secret: [u8; 32]) -> RelayCore {
        RelayCore {
            config,
            secret,
            nodes: HashMap::new(),
            addrs: HashMap::new(),
            outbox: VecDeque::new(),
            stats: RelayStats::default(),
            scratch: Vec::new(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// What was forwarded for `node` while it has been registered.
    pub fn usage(&self, node: &NodeId) -> Option<PeerUsage> {
        self.nodes.get(node).map(|registration| registration.usage)
    }

    /// Every registered node and its usage.
    pub fn usages(&self) -> Vec<(NodeId, PeerUsage)> {
        self.nodes
            .iter()
            .map(|(node, registration)| (*node, registration.usage))
            .collect()
    }

    /// The address `node` is registered at.
    pub fn registered_addr(&self, node: &NodeId) -> Option<SocketAddr> {
        self.nodes.get(node).map(|registration| registration.addr)
    }

    /// Handles one datagram from `from`. A refusal is counted, logged at trace level and
    /// changes nothing (except a no-route answer to a registered sender).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), RelayRefusal> {
        let result = match RelayFrame::decode(datagram) {
            Ok(frame) => self.handle_frame(now, from, frame),
            Err(error) => Err(RelayRefusal::Frame(error)),
        };
        if let Err(refusal) = &result {
            let counter = match refusal {
                RelayRefusal::Frame(_) => &mut self.stats.refused_malformed,
                RelayRefusal::Unexpected { .. } => &mut self.stats.refused_unexpected,
                RelayRefusal::BadChallenge | RelayRefusal::BadSignature { .. } => {
                    &mut self.stats.refused_unauthenticated
                }
                RelayRefusal::Full => &mut self.stats.refused_full,
                RelayRefusal::NotRegistered { .. }
                | RelayRefusal::NoRoute { .. }
                | RelayRefusal::Loop => &mut self.stats.refused_unroutable,
            };
            *counter += 1;
            trace!(target: "netstack::relay", %from, %refusal, "datagram refused");
        }
        result
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        from: SocketAddr,
        frame: RelayFrame<'_>,
    ) -> Result<(), RelayRefusal> {
        match frame {
            RelayFrame::Probe { nonce } => {
                self.stats.probes += 1;
                let challenge = self.challenge(from, period_of(now));
                self.push(
                    RelaySocket::Main,
                    from,
                    &RelayFrame::Observed {
                        nonce,
                        observed: from,
                        challenge,
                    },
                );
                self.push(RelaySocket::DialBack, from, &RelayFrame::DialBack { nonce });
                Ok(())
            }
            RelayFrame::Register {
                node,
                challenge,
                signature,
            } => {
                let period = period_of(now);
                let fresh = challenge == self.challenge(from, period)
                    || (period > 0 && challenge == self.challenge(from, period - 1));
                if !fresh {
                    return Err(RelayRefusal::BadChallenge);
                }
                let proven = signature
                    .recover_address(&registration_prehash(&challenge))
                    .ok()
                    .map(NodeId);
                if proven != Some(node) {
                    return Err(RelayRefusal::BadSignature {
                        claimed: node,
                        proven,
                    });
                }
                self.register(now, from, node)
            }
            RelayFrame::Forward {
                to,
                channel,
                payload,
            } => self.forward(now, from, to, channel, payload),
            frame @ (RelayFrame::Observed { .. }
            | RelayFrame::DialBack { .. }
            | RelayFrame::Registered { .. }
            | RelayFrame::Delivered { .. }
            | RelayFrame::NoRoute { .. }) => Err(RelayRefusal::Unexpected {
                frame: frame.name(),
            }),
        }
    }

    fn register(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: NodeId,
    ) -> Result<(), RelayRefusal> {
        let expires = now + self.config.lease;
        match self.nodes.get_mut(&node) {
            Some(registration) => {
                // A renewal, or the node moved (a new NAT mapping): it keeps its usage.
                if registration.addr != from {
                    debug!(target: "netstack::relay", %node, old = %registration.addr, new = %from, "node moved");
                    self.addrs.remove(&registration.addr);
                    registration.addr = from;
                }
                registration.expires = expires;
            }
            None => {
                if self.nodes.len() >= self.config.registrations_max {
                    self.expire(now);
                    if self.nodes.len() >= self.config.registrations_max {
                        return Err(RelayRefusal::Full);
                    }
                }
                debug!(target: "netstack::relay", %node, addr = %from, "node registered");
                self.nodes.insert(
                    node,
                    Registration {
                        addr: from,
                        expires,
                        usage: PeerUsage::default(),
                    },
                );
            }
        }
        // Another node registered from this address before: that registration is over.
        if let Some(previous) = self.addrs.insert(from, node)
            && previous != node
        {
            self.nodes.remove(&previous);
        }
        self.stats.registrations += 1;
        let lease_secs = u32::try_from(self.config.lease.as_secs()).unwrap_or(u32::MAX);
        self.push(
            RelaySocket::Main,
            from,
            &RelayFrame::Registered { node, lease_secs },
        );
        Ok(())
    }

    fn forward(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: NodeId,
        channel: u8,
        payload: &[u8],
    ) -> Result<(), RelayRefusal> {
        let Some(sender) = self.addrs.get(&from).copied() else {
            return Err(RelayRefusal::NotRegistered { from });
        };
        if sender == to {
            return Err(RelayRefusal::Loop);
        }
        let lease = self.config.lease;
        let Some(target) = self.nodes.get(&to).filter(|target| target.expires > now) else {
            self.push(RelaySocket::Main, from, &RelayFrame::NoRoute { to });
            return Err(RelayRefusal::NoRoute { to });
        };
        let target_addr = target.addr;
        let len = payload.len() as u64;
        self.push(
            RelaySocket::Main,
            target_addr,
            &RelayFrame::Delivered {
                from: sender,
                channel,
                payload,
            },
        );
        self.stats.forwarded += 1;
        self.stats.forwarded_bytes += len;
        let bound = self.config.peer_bytes_soft_max;
        if let Some(registration) = self.nodes.get_mut(&sender) {
            // Traffic from the node shows it is alive where it registered.
            registration.expires = now + lease;
            registration.usage.bytes_from += len;
            registration.usage.datagrams_from += 1;
            self.stats.peers_over_bound += check_bound(&sender, &mut registration.usage, bound);
        }
        if let Some(registration) = self.nodes.get_mut(&to) {
            registration.usage.bytes_to += len;
            registration.usage.datagrams_to += 1;
            self.stats.peers_over_bound += check_bound(&to, &mut registration.usage, bound);
        }
        Ok(())
    }

    /// Drops registrations whose lease ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        let addrs = &mut self.addrs;
        self.nodes.retain(|node, registration| {
            let live = registration.expires > now;
            if !live {
                debug!(target: "netstack::relay", %node, usage = ?registration.usage, "registration expired");
                addrs.remove(&registration.addr);
            }
            live
        });
    }

    /// When the next registration expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.nodes
            .values()
            .map(|registration| registration.expires)
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<RelayTransmit> {
        self.outbox.pop_front()
    }

    fn push(&mut self, via: RelaySocket, to: SocketAddr, frame: &RelayFrame<'_>) {
        frame.encode_into(&mut self.scratch);
        self.outbox.push_back(RelayTransmit {
            via,
            to,
            bytes: self.scratch.clone(),
        });
    }

    /// The challenge for `addr` in challenge period `period`: a keyed hash, so the relay keeps
    /// no state per probe and nobody else can make one.
    fn challenge(&self, addr: SocketAddr, period: u64) -> [u8; CHALLENGE_BYTES] {
        let mut material = Vec::with_capacity(32 + 8 + 19);
        material.extend_from_slice(&self.secret);
        material.extend_from_slice(&period.to_be_bytes());
        material.extend_from_slice(addr.to_string().as_bytes());
        let hash = keccak256(&material);
        let mut challenge = [0u8; CHALLENGE_BYTES];
        challenge.copy_from_slice(&hash[..CHALLENGE_BYTES]);
        challenge
    }
}

fn period_of(now: Instant) -> u64 {
    let period = u64::try_from(RELAY_CHALLENGE_PERIOD.as_micros()).unwrap_or(u64::MAX);
    now.as_micros() / period.max(1)
}

/// Marks `usage` over its bound the first time it passes it, warning once; returns 1 then.
fn check_bound(node: &NodeId, usage: &mut PeerUsage, bound: u64) -> u64 {
    if usage.over_bound || usage.bytes() <= bound {
        return 0;
    }
    usage.over_bound = true;
    warn!(
        target: "netstack::relay",
        %node,
        bytes = usage.bytes(),
        bound,
        "peer went past its relay bound; still forwarding (soft accounting)"
    );
    1
}
