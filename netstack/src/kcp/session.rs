//! [`KcpSession`]: one KCP conversation, fed `(now, input)` and drained.

use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use kcp::Kcp;
use primitives::time::Instant;
use tracing::{debug, trace};

use super::{
    KcpConfig,
    wire::{self, Limits},
};
use crate::{
    constants::{KCP_CLOCK_MS_MAX, KCP_OUTBOX_DATAGRAMS_MAX, KCP_SEQUENCE_MAX},
    error::{KcpError, SendError},
    frame::{check_message_len, fragments_of},
};

/// Why a session closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The owner called [`KcpSession::close`].
    Local,
    /// No valid datagram arrived for the configured idle timeout.
    IdleTimeout,
    /// A segment went unacknowledged for the configured number of transmissions.
    DeadLink,
    /// The peer assembled a message larger than the session's bound.
    OversizedMessage {
        /// The message length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The session used up its sequence numbers or its 32-bit clock (see
    /// [`crate::constants::KCP_SEQUENCE_MAX`]); open a new one.
    Exhausted,
    /// `kcp` failed to flush; never expected, since the session's writer cannot fail.
    Internal(String),
}

/// Counters of one session, as quinn's `ConnectionStats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KcpStats {
    /// Datagrams accepted by [`KcpSession::handle_datagram`].
    pub datagrams_received: u64,
    /// Bytes of accepted datagrams.
    pub bytes_received: u64,
    /// Datagrams refused by [`KcpSession::handle_datagram`].
    pub datagrams_rejected: u64,
    /// Datagrams handed out by [`KcpSession::poll_transmit`].
    pub datagrams_sent: u64,
    /// Bytes of those datagrams.
    pub bytes_sent: u64,
    /// Datagrams dropped because the driver did not drain them (KCP retransmits them).
    pub datagrams_dropped: u64,
    /// Messages accepted by [`KcpSession::send`].
    pub messages_sent: u64,
    /// Messages handed out by [`KcpSession::poll_message`].
    pub messages_received: u64,
    /// Datagrams carrying a retransmission that were sent twice
    /// ([`KcpConfig::duplicate_retransmissions`]).
    pub retransmissions_duplicated: u64,
    /// Keepalives sent.
    pub keepalives_sent: u64,
    /// Keepalives received (and swallowed).
    pub keepalives_received: u64,
    /// Segments waiting in the send queue or for an acknowledgement, now.
    pub send_queue_segments: u64,
}

/// The datagrams `kcp` wrote, waiting for [`KcpSession::poll_transmit`]. `kcp` owns its writer
/// and offers no way back to it, so the queue is shared with the session.
type Outbox = Arc<Mutex<OutboxQueue>>;

#[derive(Debug, Default)]
struct OutboxQueue {
    datagrams: VecDeque<Vec<u8>>,
    dropped: u64,
    /// Whether a datagram carrying a retransmission goes out twice.
    duplicate_retransmissions: bool,
    /// The first push sequence number never written, to tell retransmissions apart.
    next_new_sequence: u32,
    duplicated: u64,
}

impl OutboxQueue {
    fn push(&mut self, datagram: &[u8]) {
        if self.datagrams.len() < KCP_OUTBOX_DATAGRAMS_MAX {
            self.datagrams.push_back(datagram.to_vec());
        } else {
            self.dropped += 1;
        }
    }
}

/// The writer `kcp` flushes into: every `write` is one datagram.
struct OutboxWriter(Outbox);

impl io::Write for OutboxWriter {
    fn write(&mut self, datagram: &[u8]) -> io::Result<usize> {
        let mut outbox = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (resent, next_new) = wire::scan_pushes(datagram, outbox.next_new_sequence);
        outbox.next_new_sequence = next_new;
        outbox.push(datagram);
        // A retransmission is the segment that has already cost a round trip; a second copy
        // makes losing it again (and waiting a backed-off RTO) as rare as two losses in a row.
        if resent && outbox.duplicate_retransmissions {
            outbox.duplicated += 1;
            outbox.push(datagram);
        }
        Ok(datagram.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One KCP conversation as a sans-IO state machine: it never reads a clock or a socket.
///
/// KCP counts time in `u32` milliseconds; the session counts them from the `now` it was created
/// at, so `kcp` sees small values whatever epoch the driver picked.
///
/// Methods, by group (as quinn's `Connection`):
/// - getters: [`conv`](Self::conv), [`is_dead`](Self::is_dead),
///   [`close_reason`](Self::close_reason), [`stats`](Self::stats),
///   [`message_bytes_max`](Self::message_bytes_max);
/// - inputs: [`handle_datagram`](Self::handle_datagram),
///   [`handle_timeout`](Self::handle_timeout);
/// - application commands: [`send`](Self::send), [`ping`](Self::ping),
///   [`close`](Self::close);
/// - drains, called after every input or command in this order:
///   [`poll_transmit`](Self::poll_transmit) until `None`, then
///   [`poll_message`](Self::poll_message) until `None`, then
///   [`poll_timeout`](Self::poll_timeout) to re-arm the timer.
///
/// A command asks for a flush at once: after [`send`](Self::send), `poll_timeout` returns the
/// current time, and the driver's [`handle_timeout`](Self::handle_timeout) writes the datagram
/// with a fresh clock. Acknowledgements of received data wait at most `interval_ms` (or ride
/// on the next send).
pub struct KcpSession {
    kcp: Kcp<OutboxWriter>,
    outbox: Outbox,
    conv: u32,
    limits: Limits,
    interval: Duration,
    idle_timeout: Duration,
    keepalive_interval: Duration,
    message_bytes_max: usize,
    segment_bytes_max: usize,
    send_queue_segments_max: usize,
    /// KCP's clock starts here.
    epoch: Instant,
    /// The latest time an input brought.
    now: Instant,
    clock_ms: u32,
    /// When the next flush is owed (a send, acks or a window update), if one is.
    flush_at: Option<Instant>,
    last_receive: Instant,
    last_transmit: Instant,
    segments_queued: u64,
    close_reason: Option<CloseReason>,
    stats: KcpStats,
}

impl std::fmt::Debug for KcpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpSession")
            .field("conv", &self.conv)
            .field("clock_ms", &self.clock_ms)
            .field("close_reason", &self.close_reason)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl KcpSession {
    /// A session of conversation `conv`, created at `now`.
    ///
    /// # Panics
    /// If `config` fails [`KcpConfig::validate`]; drivers check it before creating sessions.
    pub fn new(conv: u32, config: &KcpConfig, now: Instant) -> KcpSession {
        config
            .validate()
            .expect("the owner validates its KcpConfig before creating sessions");
        let outbox = Outbox::new(Mutex::new(OutboxQueue {
            duplicate_retransmissions: config.duplicate_retransmissions,
            ..OutboxQueue::default()
        }));
        let mut kcp = Kcp::new(conv, OutboxWriter(outbox.clone()));
        let interval_ms = i32::try_from(config.interval_ms).unwrap_or(i32::MAX);
        let fast_resend = i32::try_from(config.fast_resend).unwrap_or(i32::MAX);
        kcp.set_nodelay(
            config.nodelay,
            interval_ms,
            fast_resend,
            !config.congestion_control,
        );
        kcp.set_wndsize(config.send_window, config.receive_window);
        kcp.set_mtu(config.mtu)
            .expect("validate keeps the MTU within kcp's range");
        kcp.set_maximum_resend_times(config.dead_link_transmissions);
        let fragment_max = u8::try_from(config.message_fragments_max() - 1)
            .expect("validate keeps messages within kcp's fragment limit");
        let mut session = KcpSession {
            kcp,
            outbox,
            conv,
            limits: Limits {
                conv,
                datagram_bytes_max: config.mtu,
                segment_bytes_max: config.segment_bytes_max(),
                fragment_max,
                clock_ms: 0,
            },
            interval: Duration::from_millis(config.interval_ms.into()),
            idle_timeout: config.idle_timeout,
            keepalive_interval: config.keepalive_interval,
            message_bytes_max: config.message_bytes_max,
            segment_bytes_max: config.segment_bytes_max(),
            send_queue_segments_max: config.send_queue_segments_max,
            epoch: now,
            now,
            clock_ms: 0,
            flush_at: None,
            last_receive: now,
            last_transmit: now,
            segments_queued: 0,
            close_reason: None,
            stats: KcpStats::default(),
        };
        // kcp refuses to flush before its first update.
        session.advance(now);
        session
    }

    /// The conversation ID.
    pub fn conv(&self) -> u32 {
        self.conv
    }

    /// The largest message [`send`](Self::send) accepts and the peer may send.
    pub fn message_bytes_max(&self) -> usize {
        self.message_bytes_max
    }

    /// Whether a datagram from an unknown peer may open a session with `config`: it is a
    /// well-formed KCP datagram carrying the start of a conversation (a push within the first
    /// receive window). Returns the conversation ID. Stray acks and the middle of a
    /// conversation a server has forgotten open nothing.
    pub fn opens_conversation(datagram: &[u8], config: &KcpConfig) -> Option<u32> {
        let conv = wire::conv_of(datagram)?;
        let fragment_max = u8::try_from(config.message_fragments_max().checked_sub(1)?).ok()?;
        let limits = Limits {
            conv,
            datagram_bytes_max: config.mtu,
            segment_bytes_max: config.segment_bytes_max(),
            fragment_max,
            clock_ms: 0,
        };
        let summary = wire::check(datagram, &limits).ok()?;
        let first = summary.push_sequence_min?;
        (first < u32::from(config.receive_window)).then_some(conv)
    }

    /// Feeds one datagram received at `now`. A refused datagram changes nothing but the clock.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), KcpError> {
        if self.close_reason.is_some() {
            return Err(KcpError::Closed);
        }
        self.advance(now);
        if self.close_reason.is_some() {
            return Err(KcpError::Closed);
        }
        let result = wire::check(datagram, &self.limits).and_then(|_| {
            self.kcp
                .input(datagram)
                .map(drop)
                .map_err(|error| KcpError::Rejected {
                    reason: error.to_string(),
                })
        });
        if let Err(error) = &result {
            self.stats.datagrams_rejected += 1;
            trace!(target: "netstack::kcp", conv = self.conv, %error, "datagram refused");
            return result;
        }
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        self.last_receive = self.now;
        // Acks, fast retransmissions and window probes go out within one interval.
        self.owe_flush(self.now + self.interval);
        Ok(())
    }

    /// Queues one whole message; the peer's [`poll_message`](Self::poll_message) yields it
    /// whole. Asks for an immediate flush (see the type's doc).
    pub fn send(&mut self, message: &[u8]) -> Result<(), SendError> {
        if self.close_reason.is_some() {
            return Err(SendError::Closed);
        }
        check_message_len(message.len(), self.message_bytes_max)?;
        self.enqueue(message)?;
        self.stats.messages_sent += 1;
        Ok(())
    }

    /// Queues a keepalive: an empty message, acknowledged like any other and swallowed by the
    /// peer's session. A client sends one on connecting so the server learns of it at once.
    pub fn ping(&mut self) {
        if self.close_reason.is_some() {
            return;
        }
        if self.enqueue(&[]).is_ok() {
            self.stats.keepalives_sent += 1;
        }
    }

    /// Closes the session; KCP has no close handshake, so the peer finds out by its idle
    /// timeout.
    pub fn close(&mut self) {
        self.close_with(CloseReason::Local);
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let datagram = {
            let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
            self.stats.datagrams_dropped = outbox.dropped;
            self.stats.retransmissions_duplicated = outbox.duplicated;
            outbox.datagrams.pop_front()?
        };
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += datagram.len() as u64;
        self.last_transmit = self.now;
        Some(datagram)
    }

    /// The next whole message received, if any. Keepalives are swallowed here.
    pub fn poll_message(&mut self) -> Option<Vec<u8>> {
        while self.close_reason.is_none() {
            let len = self.kcp.peeksize().ok()?;
            if len > self.message_bytes_max {
                debug!(target: "netstack::kcp", conv = self.conv, len, "peer sent an oversized message");
                self.close_with(CloseReason::OversizedMessage {
                    len,
                    max: self.message_bytes_max,
                });
                return None;
            }
            let mut message = vec![0; len];
            let read = self.kcp.recv(&mut message).ok()?;
            message.truncate(read);
            // Reading may reopen a full receive window; tell the peer within one interval.
            self.owe_flush(self.now + self.interval);
            if message.is_empty() {
                self.stats.keepalives_received += 1;
                continue;
            }
            self.stats.messages_received += 1;
            return Some(message);
        }
        None
    }

    /// Tells the session that `now` has come; call it at [`poll_timeout`](Self::poll_timeout)
    /// (earlier is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.close_reason.is_some() {
            return;
        }
        self.advance(now);
        if self.close_reason.is_some() {
            return;
        }
        if self.now.saturating_duration_since(self.last_receive) >= self.idle_timeout {
            debug!(target: "netstack::kcp", conv = self.conv, "idle timeout");
            self.close_with(CloseReason::IdleTimeout);
            return;
        }
        if self.now.saturating_duration_since(self.last_transmit) >= self.keepalive_interval
            && self.kcp.wait_snd() == 0
        {
            self.ping();
        }
        let flush_owed = self.flush_at.is_some_and(|at| at <= self.now);
        let resend_due = self.kcp.wait_snd() > 0 && self.kcp.check(self.clock_ms) == 0;
        if flush_owed || resend_due {
            self.flush_at = None;
            self.flush();
        }
        if self.kcp.is_dead_link() {
            debug!(target: "netstack::kcp", conv = self.conv, "dead link");
            self.close_with(CloseReason::DeadLink);
        }
    }

    /// When the session next needs [`handle_timeout`](Self::handle_timeout). A closed session
    /// never does (the latest representable instant).
    pub fn poll_timeout(&self) -> Instant {
        if self.close_reason.is_some() {
            return Instant::from_micros(u64::MAX);
        }
        let mut deadline = self.last_receive + self.idle_timeout;
        if let Some(at) = self.flush_at {
            deadline = deadline.min(at);
        }
        if self.kcp.wait_snd() == 0 {
            deadline = deadline.min(self.last_transmit + self.keepalive_interval);
        } else {
            // With segments in flight, kcp wants its own cadence: retransmissions and flushes
            // (and the retransmissions keep the peer hearing from us, so no keepalive).
            let wait_ms = self.kcp.check(self.clock_ms);
            let at_ms = u64::from(self.clock_ms) + u64::from(wait_ms);
            deadline = deadline.min(self.epoch + Duration::from_millis(at_ms));
        }
        deadline
    }

    /// Whether the session is closed (idle, dead link, exhausted, oversized input or local).
    pub fn is_dead(&self) -> bool {
        self.close_reason.is_some() || self.kcp.is_dead_link()
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    /// The session's counters.
    pub fn stats(&self) -> KcpStats {
        KcpStats {
            send_queue_segments: self.kcp.wait_snd() as u64,
            ..self.stats
        }
    }

    /// Moves the clock to `now` (never backwards) and lets `kcp` see it.
    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let clock_ms = self.now.saturating_duration_since(self.epoch).as_millis();
        match u32::try_from(clock_ms) {
            Ok(clock_ms) if clock_ms < KCP_CLOCK_MS_MAX => {
                self.clock_ms = clock_ms;
                self.limits.clock_ms = clock_ms;
                let result = self.kcp.update(clock_ms);
                self.check_kcp(result);
            }
            _ => self.close_with(CloseReason::Exhausted),
        }
    }

    fn enqueue(&mut self, message: &[u8]) -> Result<(), SendError> {
        let needed = fragments_of(message.len(), self.segment_bytes_max);
        let queued = self.kcp.wait_snd();
        if queued + needed > self.send_queue_segments_max {
            return Err(SendError::QueueFull {
                queued,
                needed,
                max: self.send_queue_segments_max,
            });
        }
        if self.segments_queued + needed as u64 > u64::from(KCP_SEQUENCE_MAX) {
            self.close_with(CloseReason::Exhausted);
            return Err(SendError::Closed);
        }
        if let Err(error) = self.kcp.send(message) {
            // validate() keeps messages within kcp's fragment limit, so this is not expected.
            debug!(target: "netstack::kcp", conv = self.conv, %error, "kcp refused a message");
            return Err(SendError::TooLarge {
                len: message.len(),
                max: self.message_bytes_max,
            });
        }
        self.segments_queued += needed as u64;
        self.flush_at = Some(self.now);
        Ok(())
    }

    fn owe_flush(&mut self, at: Instant) {
        self.flush_at = Some(self.flush_at.map_or(at, |owed| owed.min(at)));
    }

    fn flush(&mut self) {
        let result = self.kcp.flush();
        self.check_kcp(result);
    }

    fn check_kcp(&mut self, result: kcp::KcpResult<()>) {
        if let Err(error) = result {
            self.close_with(CloseReason::Internal(error.to_string()));
        }
    }

    fn close_with(&mut self, reason: CloseReason) {
        if self.close_reason.is_none() {
            debug!(target: "netstack::kcp", conv = self.conv, ?reason, "session closed");
            self.close_reason = Some(reason);
            self.flush_at = None;
        }
    }
}
