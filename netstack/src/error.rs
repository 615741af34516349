//! Every error netstack returns. Peer input never panics: it yields one of these and changes
//! nothing.

/// Why a message (frame) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message is larger than the session's bound.
    #[error("message too large: {len} > {max} bytes")]
    Oversized {
        /// The message length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The message is empty; empty messages are reserved for keepalives.
    #[error("empty message")]
    Empty,
}

/// Why a fragment of a message larger than one KCP message was refused
/// ([`crate::frame::Reassembly`]); the session that carried it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// A fragment of another version or kind than this stack speaks.
    #[error("unknown fragment (version {version}, kind {kind})")]
    UnknownFrame {
        /// The fragment's version byte.
        version: u8,
        /// The fragment's kind byte.
        kind: u8,
    },
    /// A fragment shorter than its header.
    #[error("truncated fragment")]
    Truncated,
    /// A message larger than the reassembly's bound.
    #[error("message over {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
}

/// Why a datagram was refused by a [`crate::kcp::KcpSession`]. The session is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KcpError {
    /// Shorter than one KCP segment header.
    #[error("datagram of {len} bytes is shorter than a KCP header ({min})")]
    TooShort {
        /// Datagram length.
        len: usize,
        /// Header length.
        min: usize,
    },
    /// Longer than the session's MTU.
    #[error("datagram of {len} bytes exceeds the MTU {max}")]
    TooLong {
        /// Datagram length.
        len: usize,
        /// The MTU.
        max: usize,
    },
    /// A segment names another conversation.
    #[error("conversation {found} where {expected} was expected")]
    ConvMismatch {
        /// This session's conversation.
        expected: u32,
        /// The conversation in the segment.
        found: u32,
    },
    /// A segment command KCP does not have.
    #[error("unknown KCP command {command}")]
    UnknownCommand {
        /// The command byte.
        command: u8,
    },
    /// A segment declares more payload than the datagram holds.
    #[error("segment declares {declared} payload bytes, {remaining} left")]
    Truncated {
        /// Declared payload length.
        declared: usize,
        /// Bytes left in the datagram.
        remaining: usize,
    },
    /// Bytes after the last whole segment.
    #[error("{count} trailing bytes after the last segment")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A segment's payload exceeds the session's segment size.
    #[error("segment payload of {len} bytes exceeds {max}")]
    SegmentTooLarge {
        /// Payload length.
        len: usize,
        /// The bound (MTU minus header).
        max: usize,
    },
    /// A fragment index no message of the session's maximum size has.
    #[error("fragment index {fragment} beyond {max}")]
    FragmentOutOfRange {
        /// The fragment index (fragments still to come).
        fragment: u8,
        /// The largest index allowed.
        max: u8,
    },
    /// A sequence number beyond [`crate::constants::KCP_SEQUENCE_MAX`].
    #[error("{field} {value} out of range")]
    SequenceOutOfRange {
        /// `sn` or `una`.
        field: &'static str,
        /// The value found.
        value: u32,
    },
    /// An acknowledgement echoes a timestamp from the future or from too long ago.
    #[error("acknowledgement echoes timestamp {timestamp_ms} ms at clock {clock_ms} ms")]
    AckTimestampOutOfRange {
        /// The echoed timestamp.
        timestamp_ms: u32,
        /// The session's clock.
        clock_ms: u32,
    },
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// The `kcp` crate refused a datagram that passed our checks.
    #[error("kcp refused the datagram: {reason}")]
    Rejected {
        /// kcp's error, as text (its type is neither `Clone` nor `PartialEq`).
        reason: String,
    },
}

/// Why [`crate::kcp::KcpSession::send`] refused a message. The session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The message is larger than the session's bound.
    #[error("message too large: {len} > {max} bytes")]
    TooLarge {
        /// The message length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The message is empty; empty messages are reserved for keepalives.
    #[error("empty message")]
    Empty,
    /// The send queue is full; retry once the peer has acknowledged some segments.
    #[error("send queue full: {queued} segments queued, {needed} more would pass {max}")]
    QueueFull {
        /// Segments waiting to be sent or acknowledged.
        queued: usize,
        /// Segments this message needs.
        needed: usize,
        /// The bound.
        max: usize,
    },
    /// The session is closed.
    #[error("session closed")]
    Closed,
}

impl From<FrameError> for SendError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::Oversized { len, max } => SendError::TooLarge { len, max },
            FrameError::Empty => SendError::Empty,
        }
    }
}

/// Why a [`crate::kcp::KcpConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field is outside its range.
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// Two fields contradict each other.
    #[error("{0}")]
    Inconsistent(&'static str),
}

impl From<ConfigError> for std::io::Error {
    fn from(error: ConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, error)
    }
}

/// Why a [`crate::driver::KcpConnection`] or [`crate::driver::KcpSender`] could not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The message is larger than the session's bound.
    #[error("message too large: {len} > {max} bytes")]
    TooLarge {
        /// The message length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The message is empty; empty messages are reserved for keepalives.
    #[error("empty message")]
    Empty,
    /// The connection's queue is full (only from `try_send`; `send` waits instead).
    #[error("connection send queue full")]
    QueueFull,
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

impl From<FrameError> for NetError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::Oversized { len, max } => NetError::TooLarge { len, max },
            FrameError::Empty => NetError::Empty,
        }
    }
}

/// Why the secure layer refused a handshake or a datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Too short, or not of the expected kind.
    #[error("malformed secure datagram of {len} bytes")]
    Malformed {
        /// Its length.
        len: usize,
    },
    /// A handshake message out of turn, or after the handshake ended.
    #[error("unexpected handshake message")]
    UnexpectedHandshake,
    /// Noise refused the message (bad key material or tampering).
    #[error("handshake failed")]
    HandshakeFailed,
    /// The handshake is not finished.
    #[error("handshake unfinished")]
    HandshakeUnfinished,
    /// The binding signature does not recover for the presented static key.
    #[error("binding signature does not prove a node key")]
    BadBinding,
    /// The peer proved a node key, but not one this side accepts.
    #[error("peer {node} is not the expected or an allowed node")]
    UnknownPeer {
        /// The node the peer proved to be.
        node: primitives::id::NodeId,
    },
    /// The tag did not verify: wrong key, forged or altered.
    #[error("datagram failed authentication")]
    Forged,
    /// The nonce was already accepted.
    #[error("replayed nonce {nonce}")]
    Replayed {
        /// The nonce.
        nonce: u64,
    },
    /// The nonce is older than the replay window.
    #[error("nonce {nonce} is older than the replay window")]
    Stale {
        /// The nonce.
        nonce: u64,
    },
    /// A plaintext too large to seal.
    #[error("plaintext of {len} bytes exceeds {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a secure server answered a first handshake message with silence, before any
/// public-key work. Counted in [`crate::driver::SecureEndpointStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeRefusal {
    /// [`crate::constants::SECURE_HANDSHAKES_PENDING_MAX`] handshakes are half open.
    #[error("{pending} handshakes half open, the most a server holds")]
    Busy {
        /// Half-open handshakes.
        pending: usize,
    },
    /// The source has [`crate::constants::SECURE_HANDSHAKES_PER_SOURCE_MAX`] handshakes half
    /// open.
    #[error("{pending} handshakes half open from {origin} already")]
    SourceBusy {
        /// The source: an IPv4 address or an IPv6 /64.
        origin: std::net::IpAddr,
        /// Its half-open handshakes.
        pending: usize,
    },
}

/// Why [`crate::driver::KcpClient::connect_secure`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The configuration is unusable once the secure layer's overhead is taken off its MTU.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server proved a node key, but not the one dialled.
    #[error("the server is {found}, not the expected {expected}")]
    UnexpectedPeer {
        /// The node the caller dialled.
        expected: primitives::id::NodeId,
        /// The node the server proved to be.
        found: primitives::id::NodeId,
    },
    /// The server's binding signature proves no node key.
    #[error("the server's handshake failed: {0}")]
    Handshake(AuthError),
    /// No confirmed handshake within the bound (the server is unreachable, or refused us: a
    /// server says nothing to a peer its policy refuses).
    #[error("no secure handshake within {timeout:?}")]
    HandshakeTimeout {
        /// The bound, [`crate::constants::SECURE_HANDSHAKE_TIMEOUT`].
        timeout: std::time::Duration,
    },
}

/// Why an [`crate::emulated::EmulatedLink`] could not start or run.
#[cfg(feature = "emulated-link")]
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A probability outside 0..=1, or another value out of range.
    #[error("link configuration: {0}")]
    Config(&'static str),
    /// A system call or device operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// An `ip` command (iproute2) failed.
    #[error("`ip {arguments}` failed ({status}): {stderr}")]
    Command {
        /// The arguments given to `ip`.
        arguments: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A thread of the link (namespace runtime or forwarder) stopped before it was ready.
    #[error("link thread {0} stopped early")]
    ThreadStopped(&'static str),
}

/// Why a datagram is not a well-formed relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayFrameError {
    /// No bytes at all.
    #[error("empty relay frame")]
    Empty,
    /// The first byte names no relay frame.
    #[error("unknown relay frame tag {tag:#04x}")]
    UnknownTag {
        /// The tag found.
        tag: u8,
    },
    /// The frame ends before a field it must have.
    #[error("{frame} frame truncated: {needed} bytes needed, {remaining} left")]
    Truncated {
        /// The frame's name.
        frame: &'static str,
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// Bytes after the frame's last field.
    #[error("{count} trailing bytes after a {frame} frame")]
    TrailingBytes {
        /// The frame's name.
        frame: &'static str,
        /// How many.
        count: usize,
    },
    /// An address family other than 4 or 6.
    #[error("unknown address family {family}")]
    BadAddressFamily {
        /// The family byte.
        family: u8,
    },
    /// A probe whose padding is not all zeros.
    #[error("probe padding is not zeros")]
    BadPadding,
    /// A forwarded datagram with nothing in it.
    #[error("{frame} frame with an empty payload")]
    EmptyPayload {
        /// The frame's name.
        frame: &'static str,
    },
    /// A forwarded datagram beyond [`crate::constants::RELAY_PAYLOAD_BYTES_MAX`].
    #[error("relay payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// Why a relay refused a datagram. Every refusal is counted and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayRefusal {
    /// Not a well-formed relay frame.
    #[error(transparent)]
    Frame(#[from] RelayFrameError),
    /// A frame only relays send (observed, dial-back, registered, delivered, no-route).
    #[error("a {frame} frame sent to a relay")]
    Unexpected {
        /// The frame's name.
        frame: &'static str,
    },
    /// A registration whose challenge is not the one this relay gave the sender's address
    /// (forged, copied from another address, or expired).
    #[error("registration challenge is not this address's")]
    BadChallenge,
    /// A registration whose signature does not recover to the node it claims.
    #[error("registration signed by {proven:?}, not the claimed {claimed}")]
    BadSignature {
        /// The node claimed.
        claimed: primitives::id::NodeId,
        /// The node the signature proves, if any.
        proven: Option<primitives::id::NodeId>,
    },
    /// The relay holds [`crate::constants::RELAY_REGISTRATIONS_MAX`] registrations already.
    #[error("relay full")]
    Full,
    /// A forward from an address no node registered.
    #[error("forward from {from}, which is not registered")]
    NotRegistered {
        /// The sender's address.
        from: std::net::SocketAddr,
    },
    /// A forward to a node not registered here (answered with a no-route frame).
    #[error("no registered node {to}")]
    NoRoute {
        /// The node asked for.
        to: primitives::id::NodeId,
    },
    /// A node forwarding to itself.
    #[error("a node forwarding to itself")]
    Loop,
}

/// Why a node could not register with a relay or run its relay tunnels.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The relay did not answer (it is unreachable, or refused the registration: a relay says
    /// nothing to a registration it refuses).
    #[error("relay {relay} did not answer the {step} within {timeout:?}")]
    Timeout {
        /// The relay.
        relay: std::net::SocketAddr,
        /// `probe` or `registration`.
        step: &'static str,
        /// The bound, [`crate::constants::RELAY_REGISTER_TIMEOUT`].
        timeout: std::time::Duration,
    },
    /// The relay registered another node than ours.
    #[error("relay registered {found}, not {expected}")]
    WrongRegistration {
        /// Our node.
        expected: primitives::id::NodeId,
        /// The node the relay named.
        found: primitives::id::NodeId,
    },
    /// The secure connection through the relay failed.
    #[error("secure connection through the relay: {0}")]
    Connect(#[from] ConnectError),
    /// The tunnel task stopped (the client was dropped or its socket failed).
    #[error("relay client stopped")]
    Stopped,
    /// [`crate::constants::RELAY_TUNNELS_MAX`] tunnels are open already.
    #[error("too many relay tunnels")]
    TooManyTunnels,
    /// Neither a direct path nor any relay candidate reached the peer.
    #[error("no route to {node}: direct dial failed and {relays_tried} relays failed")]
    Unreachable {
        /// The peer.
        node: primitives::id::NodeId,
        /// Relays tried.
        relays_tried: usize,
    },
}

/// Why a [`crate::resume::ResumableSession`] refused a message or a frame. It is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// A frame that does not decode.
    #[error("malformed resume frame: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// A first byte that names no frame.
    #[error("unknown resume frame tag {tag:#04x}")]
    UnknownTag {
        /// The tag.
        tag: u8,
    },
    /// A frame out of turn (data before the peer resumed, a second resume).
    #[error("unexpected {frame}")]
    Unexpected {
        /// What came.
        frame: &'static str,
    },
    /// A resume naming another session.
    #[error("resume of session {found}, this is {expected}")]
    SessionMismatch {
        /// This session.
        expected: u64,
        /// The one named.
        found: u64,
    },
    /// A message past the next one expected (the connection is ordered, so the peer is
    /// broken).
    #[error("message {found} where {expected} was expected")]
    Gap {
        /// The next sequence number expected.
        expected: u64,
        /// The one that came.
        found: u64,
    },
    /// An acknowledgement of messages never sent.
    #[error("acknowledgement up to {acked}, only {sent} sent")]
    AckBeyondSent {
        /// What was acknowledged.
        acked: u64,
        /// What was sent.
        sent: u64,
    },
    /// [`crate::constants::RESUME_UNACKED_MAX`] messages are unacknowledged.
    #[error("{max} messages unacknowledged")]
    QueueFull {
        /// The bound.
        max: usize,
    },
    /// An empty message.
    #[error("empty message")]
    Empty,
    /// The connection under the session failed or is gone.
    #[error("the connection is gone")]
    LinkDown,
    /// A redialing session could not get a new connection resumed within its policy's
    /// attempts; it keeps its state, so [`crate::driver::ResumableConnection::resume`] may
    /// still move it to a connection the caller finds.
    #[error("no resumed connection after {attempts} redials")]
    RedialExhausted {
        /// Redials tried since the link went down.
        attempts: u32,
    },
    /// The operating system gave no randomness for a session ID.
    #[error("no randomness for a session ID")]
    NoRandomness,
}
