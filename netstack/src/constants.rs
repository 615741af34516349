//! Every bound that netstack's queues, maps and decoders enforce, in one place.

use std::time::Duration;

/// Bytes of a KCP segment header (conv, cmd, frg, wnd, ts, sn, una, len).
pub const KCP_HEADER_BYTES: usize = kcp::KCP_OVERHEAD;
/// Most fragments one KCP message may have: `kcp` 0.6 refuses a message of 128 or more.
pub const KCP_FRAGMENTS_MAX: usize = 127;
/// Default maximum transmission unit: the largest datagram a session sends.
pub const KCP_MTU_DEFAULT: usize = 1400;
/// Smallest MTU a [`crate::kcp::KcpConfig`] may ask for.
pub const KCP_MTU_MIN: usize = 256;
/// Largest MTU a [`crate::kcp::KcpConfig`] may ask for; also bounds every datagram we accept.
pub const KCP_MTU_MAX: usize = 9_000;

/// Largest message (frame) a session carries, in bytes. A move of
/// [`primitives::constants::TX_ENCODED_BYTES_MAX`] plus its request envelope fits.
pub const MAX_MESSAGE_BYTES: usize = 160 * 1024;
const _: () = assert!(MAX_MESSAGE_BYTES > primitives::constants::TX_ENCODED_BYTES_MAX + 1024);
// A message at the default MTU must fit in KCP's fragment limit.
const _: () =
    assert!(MAX_MESSAGE_BYTES <= KCP_FRAGMENTS_MAX * (KCP_MTU_DEFAULT - KCP_HEADER_BYTES));

/// Default limit on segments waiting in a session's send queue and send buffer.
pub const KCP_SEND_QUEUE_SEGMENTS_MAX: usize = 1_024;
const _: () = assert!(KCP_SEND_QUEUE_SEGMENTS_MAX > KCP_FRAGMENTS_MAX);
/// Datagrams a session holds for the driver before it drops the oldest new ones (KCP
/// retransmits what is dropped). One flush writes at most a window of segments plus acks.
pub const KCP_OUTBOX_DATAGRAMS_MAX: usize = 1_024;

/// Largest sequence number (sn, una) either end may use. `kcp` 0.6 compares sequence numbers
/// and timestamps with `i32` subtraction, which overflows (and panics in debug builds) once
/// values cross 2^31; a session ends before that and refuses peer values beyond it.
pub const KCP_SEQUENCE_MAX: u32 = (1 << 31) - (1 << 20);
/// Oldest a session's KCP clock may get, in milliseconds (about 24 days), for the same reason.
pub const KCP_CLOCK_MS_MAX: u32 = (1 << 31) - (1 << 24);
/// Oldest timestamp an acknowledgement may echo, in milliseconds: KCP's largest RTO. Older or
/// future echoes are hostile and would poison the RTT estimate.
pub const KCP_ACK_AGE_MS_MAX: u32 = 60_000;

/// Default flush interval: the longest an acknowledgement or fast retransmission waits. 1 ms
/// was tried on the kcp-vs-tcp link: no latency gain within the runs' noise, and about 3 %
/// more bytes, as acknowledgements left before replies the busy machine slowed.
pub const KCP_INTERVAL_MS_DEFAULT: u32 = 5;
/// Default time without any datagram from the peer after which a session is closed.
pub const KCP_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default time without sending anything after which a session sends a keepalive.
pub const KCP_KEEPALIVE_INTERVAL_DEFAULT: Duration = Duration::from_secs(2);

/// Most sessions one server socket holds; datagrams that would open more are dropped.
pub const SERVER_SESSIONS_MAX: usize = 4_096;
/// New connections a server queues before the application accepts them.
pub const SERVER_INCOMING_QUEUE_MAX: usize = 256;
/// Commands (sends, closes) queued from the application to one socket task.
pub const ENDPOINT_COMMAND_QUEUE_MAX: usize = 1_024;
/// Commands a socket task takes in one go before driving the sessions they touched: enough for
/// back-to-back sends to share datagrams, few enough that received datagrams wait little.
pub const ENDPOINT_COMMANDS_PER_WAKE: usize = 256;
/// Messages one connection may hold in the driver before they enter KCP's send queue; a send
/// beyond it waits (or `try_send` fails).
pub const CONNECTION_SEND_QUEUE_MAX: usize = 128;
/// Received messages one connection queues for the application; beyond it they stay in KCP's
/// receive window, which closes and slows the peer down.
pub const CONNECTION_RECEIVE_QUEUE_MAX: usize = 256;
/// Size of the buffer a socket task receives into: the largest UDP payload.
pub const DATAGRAM_BUFFER_BYTES: usize = 65_536;
const _: () = assert!(DATAGRAM_BUFFER_BYTES > KCP_MTU_MAX);

/// Longest a secure handshake may take, from the first datagram to the responder's
/// confirmation: a dialling client gives up after it, and a server forgets a half-done
/// handshake older than it once its table is full.
pub const SECURE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a dialling client waits for an answer before it resends its last handshake
/// datagram (the sans-IO handshake has no timer of its own).
pub const SECURE_HANDSHAKE_RESEND_INTERVAL: Duration = Duration::from_millis(100);
const _: () = assert!(
    SECURE_HANDSHAKE_TIMEOUT.as_millis() >= 10 * SECURE_HANDSHAKE_RESEND_INTERVAL.as_millis()
);
/// Half-done handshakes one server socket holds; step-one datagrams beyond it are dropped.
pub const SECURE_HANDSHAKES_PENDING_MAX: usize = 1_024;
/// Half-done handshakes one source (an IPv4 address, an IPv6 /64) may hold on one server
/// socket; its step-one datagrams beyond it are dropped before any public-key work.
pub const SECURE_HANDSHAKES_PER_SOURCE_MAX: usize = 8;
const _: () = assert!(SECURE_HANDSHAKES_PER_SOURCE_MAX < SECURE_HANDSHAKES_PENDING_MAX);
/// Established secure sessions (one per peer address) one server socket holds.
pub const SECURE_SESSIONS_MAX: usize = SERVER_SESSIONS_MAX;

/// Datagrams the lossy link holds in flight (delayed) before it drops new ones.
pub const LOSSY_IN_FLIGHT_MAX: usize = 65_536;
/// Longest extra hold, in milliseconds, of a datagram the lossy link reorders.
pub const LOSSY_REORDER_HOLD_MS_MAX: u64 = 8;

/// Copies the emulated link holds in flight before it drops new ones: far beyond what a 20 ms
/// link carries at benchmark rates.
pub const EMULATED_IN_FLIGHT_MAX: usize = 65_536;
/// Size of the buffer the emulated link reads a packet into: the largest IP packet.
pub const EMULATED_PACKET_BYTES_MAX: usize = 65_536;
/// MTU of the emulated link's TUN devices: Ethernet's, so TCP and KCP segments fit as usual.
pub const EMULATED_DEVICE_MTU: u16 = 1_500;

/// Kademlia bucket size (k): entries per bucket and nodes a lookup returns.
pub const DHT_BUCKET_SIZE: usize = 8;
/// Parallel queries one lookup keeps in flight (alpha).
pub const DHT_ALPHA: usize = 3;
/// Buckets of a routing table: one per bit of the 160-bit ID space.
pub const DHT_BUCKETS: usize = 160;
/// Nodes one bucket keeps waiting for a slot ("stable Kademlia"'s replacement cache).
pub const DHT_REPLACEMENTS_MAX: usize = 8;
/// Consecutive failed contacts after which an entry leaves its bucket even with no
/// replacement waiting.
pub const DHT_FAILURES_MAX: u8 = 2;
/// Candidates one lookup remembers; the farthest are forgotten beyond it.
pub const DHT_LOOKUP_CANDIDATES_MAX: usize = 128;
const _: () = assert!(DHT_LOOKUP_CANDIDATES_MAX >= 4 * DHT_BUCKET_SIZE);
const _: () = assert!(DHT_ALPHA <= DHT_BUCKET_SIZE);
/// Nodes one lookup response carries at most (longer responses are cut): twice k, so a
/// lookup still learns the k nearest when churn or full buckets hide some of them from the
/// nodes it asks. 16 IDs are 320 bytes, one datagram.
pub const DHT_RESPONSE_NODES_MAX: usize = 2 * DHT_BUCKET_SIZE;
/// Time a lookup waits for one response before it counts the peer as failed.
pub const DHT_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries one lookup may send in all; a lookup that reaches it ends with what it has.
pub const DHT_LOOKUP_QUERIES_MAX: u32 = 512;
/// Peers one IP-proximity table holds; newcomers beyond it are refused until an entry fails.
pub const PROXIMITY_TABLE_MAX: usize = 4_096;

/// Largest payload a relay frame carries: any datagram a KCP session may send, sealed, with room
/// to spare. Longer frames are refused with a typed error.
pub const RELAY_PAYLOAD_BYTES_MAX: usize = KCP_MTU_MAX + 64;
/// Nodes one relay holds registrations for; registrations beyond it are refused.
pub const RELAY_REGISTRATIONS_MAX: usize = 4_096;
/// Default lease of a relay registration; a node registers again well before it runs out.
pub const RELAY_LEASE_DEFAULT: Duration = Duration::from_secs(30);
/// A relay's registration challenges change every this long; a challenge stays good for two
/// periods.
pub const RELAY_CHALLENGE_PERIOD: Duration = Duration::from_secs(30);
/// Default soft bound on the bytes a relay forwards for one registered node (from and to it)
/// before it warns; the relay keeps forwarding (soft accounting).
pub const RELAY_PEER_BYTES_SOFT_MAX_DEFAULT: u64 = 1 << 30;
/// How long a node waits for a relay's answer before it resends a probe or registration.
pub const RELAY_RESEND_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a node waits for a relay to answer its probe and registration.
pub const RELAY_REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node waits for a dial-back after the relay's observed-address answer.
pub const RELAY_DIAL_BACK_GRACE: Duration = Duration::from_millis(300);
/// Peers one node's relay client tunnels to or accepts from, each with its own local socket.
pub const RELAY_TUNNELS_MAX: usize = 1_024;

/// Messages a resumable session keeps unacknowledged; a send beyond it is refused
/// (back-pressure).
pub const RESUME_UNACKED_MAX: usize = 1_024;
/// A resumable session acknowledges after this many delivered messages...
pub const RESUME_ACK_EVERY: u32 = 16;
/// ...or this long after the first one it has not acknowledged.
pub const RESUME_ACK_DELAY: Duration = Duration::from_millis(20);
/// How long a server waits for a new connection's first (resume) frame.
pub const RESUME_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A redialing session's wait before its first redial after a drop (it doubles per failure).
pub const REDIAL_BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// A redialing session's longest wait between two redials.
pub const REDIAL_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Redials a session tries after one drop before reporting it.
pub const REDIAL_ATTEMPTS_MAX: u32 = 12;
/// Resumable sessions one server keeps routes for.
pub const RESUME_SESSIONS_MAX: usize = SERVER_SESSIONS_MAX;
