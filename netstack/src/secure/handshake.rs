//! The Noise_XX handshake with node-key binding.

use std::{
    collections::BTreeSet,
    sync::{Arc, PoisonError, RwLock},
};

use primitives::id::NodeId;
use snow::HandshakeState;

use super::{
    HANDSHAKE_TAG, NodeIdentity, SECURE_DATAGRAM_BYTES_MAX, SecureSession, bound_node, builder,
};
use crate::error::AuthError;

/// Which peers a responder accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerPolicy {
    /// Any node that proves its node key.
    AnyNode,
    /// Only these nodes.
    Only(Vec<NodeId>),
    /// The nodes an [`AllowList`] holds when the handshake completes: its owner changes it
    /// while the server runs.
    Listed(AllowList),
}

impl PeerPolicy {
    fn accepts(&self, node: &NodeId) -> bool {
        match self {
            PeerPolicy::AnyNode => true,
            PeerPolicy::Only(nodes) => nodes.contains(node),
            PeerPolicy::Listed(list) => list.contains(node),
        }
    }
}

/// A set of node IDs shared by a server's [`PeerPolicy::Listed`] and its owner, who replaces it
/// while the server runs (a validator set that changes by epoch, a whitelist that grows).
/// Sessions already open stay open when their peer leaves the list; only new handshakes are
/// checked against it.
#[derive(Clone, Debug, Default)]
pub struct AllowList(Arc<RwLock<BTreeSet<NodeId>>>);

impl AllowList {
    /// A list holding `nodes`.
    pub fn new(nodes: impl IntoIterator<Item = NodeId>) -> Self {
        AllowList(Arc::new(RwLock::new(nodes.into_iter().collect())))
    }

    /// Replaces the nodes; returns whether the list changed.
    pub fn replace(&self, nodes: impl IntoIterator<Item = NodeId>) -> bool {
        let nodes: BTreeSet<NodeId> = nodes.into_iter().collect();
        let mut held = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let changed = *held != nodes;
        *held = nodes;
        changed
    }

    /// Whether `node` is on the list.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(node)
    }

    /// The nodes on the list, in order.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}

impl PartialEq for AllowList {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.nodes() == other.nodes()
    }
}

impl Eq for AllowList {}

/// One side of a Noise_XX handshake (three messages: initiator, responder, initiator).
///
/// The responder's second message and the initiator's third carry the sender's binding
/// signature, checked against the Noise static key the same message revealed. The initiator
/// knows whom it dials and refuses any other node; the responder applies its [`PeerPolicy`].
///
/// Inputs: [`SecureHandshake::handle_datagram`]. Drains: [`SecureHandshake::poll_transmit`],
/// then [`SecureHandshake::is_finished`] and [`SecureHandshake::into_session`]. The last
/// message sent stays available through [`SecureHandshake::last_transmit`] for the owner to
/// resend when no answer comes (a lost datagram).
pub struct SecureHandshake {
    noise: HandshakeState,
    identity: NodeIdentity,
    expected: Option<NodeId>,
    policy: PeerPolicy,
    peer: Option<NodeId>,
    /// The next message number to write or read: 0, 1, 2; 3 when done.
    step: u8,
    outbox: Option<Vec<u8>>,
    last_transmit: Option<Vec<u8>>,
    failed: bool,
}

impl std::fmt::Debug for SecureHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureHandshake")
            .field("identity", &self.identity)
            .field("peer", &self.peer)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl SecureHandshake {
    /// The dialling side, which will accept only `expected`. Its first message is ready in
    /// [`poll_transmit`](Self::poll_transmit). `seed` draws its ephemeral key.
    pub fn initiator(identity: &NodeIdentity, expected: NodeId, seed: u64) -> Self {
        let noise = builder(seed)
            .local_private_key(&identity.static_secret)
            .expect("a 32-byte x25519 key")
            .build_initiator()
            .expect("NOISE_PARAMS with a static key builds");
        let mut handshake = Self::with(noise, identity, Some(expected), PeerPolicy::AnyNode);
        handshake.write(&[]).expect("the first XX message writes");
        handshake
    }

    /// The answering side, accepting peers that `policy` allows.
    pub fn responder(identity: &NodeIdentity, policy: PeerPolicy, seed: u64) -> Self {
        let noise = builder(seed)
            .local_private_key(&identity.static_secret)
            .expect("a 32-byte x25519 key")
            .build_responder()
            .expect("NOISE_PARAMS with a static key builds");
        Self::with(noise, identity, None, policy)
    }

    fn with(
        noise: HandshakeState,
        identity: &NodeIdentity,
        expected: Option<NodeId>,
        policy: PeerPolicy,
    ) -> Self {
        SecureHandshake {
            noise,
            identity: identity.clone(),
            expected,
            policy,
            peer: None,
            step: 0,
            outbox: None,
            last_transmit: None,
            failed: false,
        }
    }

    /// Feeds one handshake datagram. Any error ends the handshake: the owner drops it (and
    /// counts the error) and may start over.
    pub fn handle_datagram(&mut self, datagram: &[u8]) -> Result<(), AuthError> {
        if self.failed || self.is_finished() {
            return Err(AuthError::UnexpectedHandshake);
        }
        let result = self.read(datagram);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn read(&mut self, datagram: &[u8]) -> Result<(), AuthError> {
        let [tag, step, message @ ..] = datagram else {
            return Err(AuthError::Malformed {
                len: datagram.len(),
            });
        };
        if *tag != HANDSHAKE_TAG || *step != self.step || self.noise.is_my_turn() {
            return Err(AuthError::UnexpectedHandshake);
        }
        let mut payload = vec![0u8; SECURE_DATAGRAM_BYTES_MAX];
        let len = self
            .noise
            .read_message(message, &mut payload)
            .map_err(|_| AuthError::HandshakeFailed)?;
        self.step += 1;
        if self.step >= 2 {
            // Messages 2 and 3 reveal the sender's static key with its binding.
            let remote_static = self
                .noise
                .get_remote_static()
                .ok_or(AuthError::HandshakeFailed)?;
            let peer = bound_node(remote_static, &payload[..len]).ok_or(AuthError::BadBinding)?;
            let allowed = match self.expected {
                Some(expected) => expected == peer,
                None => self.policy.accepts(&peer),
            };
            if !allowed {
                return Err(AuthError::UnknownPeer { node: peer });
            }
            self.peer = Some(peer);
        }
        if self.step < 3 {
            let binding = self.identity.binding.0;
            self.write(&binding)?;
        }
        Ok(())
    }

    fn write(&mut self, payload: &[u8]) -> Result<(), AuthError> {
        let mut message = vec![0u8; SECURE_DATAGRAM_BYTES_MAX];
        let len = self
            .noise
            .write_message(payload, &mut message)
            .map_err(|_| AuthError::HandshakeFailed)?;
        let mut datagram = Vec::with_capacity(2 + len);
        datagram.push(HANDSHAKE_TAG);
        datagram.push(self.step);
        datagram.extend_from_slice(&message[..len]);
        self.step += 1;
        self.last_transmit = Some(datagram.clone());
        self.outbox = Some(datagram);
        Ok(())
    }

    /// The next handshake datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.take()
    }

    /// The last handshake datagram sent, to resend after a loss.
    pub fn last_transmit(&self) -> Option<&[u8]> {
        self.last_transmit.as_deref()
    }

    /// Whether both sides are authenticated (on the initiator, once its last message is out).
    pub fn is_finished(&self) -> bool {
        self.noise.is_handshake_finished() && self.peer.is_some()
    }

    /// The peer's node ID, once proven.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// The session, once finished.
    pub fn into_session(self) -> Result<SecureSession, AuthError> {
        if self.failed || !self.is_finished() {
            return Err(AuthError::HandshakeUnfinished);
        }
        let peer = self.peer.expect("a finished handshake has a peer");
        let transport = self
            .noise
            .into_stateless_transport_mode()
            .map_err(|_| AuthError::HandshakeFailed)?;
        Ok(SecureSession::new(peer, transport))
    }
}
