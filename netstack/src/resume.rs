//! Sessions that survive a link drop: [`ResumableSession`], sans-IO.
//!
//! A KCP session dies with its link (dead-peer detection, idle timeout, a new address after a
//! NAT rebinding) and takes its unacknowledged messages with it. A resumable session rides on
//! one connection at a time and outlives them: every message carries a sequence number, the
//! receiver acknowledges what it has delivered, and the sender keeps every message until it is
//! acknowledged. When a new connection replaces a dropped one, each side first tells the other
//! the next sequence number it expects ([`ResumeFrame::Resume`]); the sender then drops what
//! that acknowledges and resends the rest, in order, and the receiver drops any copy it has
//! delivered already. So across any number of link drops every message is delivered exactly
//! once and in order, and nothing acknowledged is ever lost or reordered.
//!
//! # Wire (each frame is one message on the underlying connection; integers big-endian)
//! | tag | frame | body |
//! | --- | --- | --- |
//! | `0xC1` | [`ResumeFrame::Data`] | sequence (8), payload (1..) |
//! | `0xC2` | [`ResumeFrame::Ack`] | next expected sequence (8) |
//! | `0xC3` | [`ResumeFrame::Resume`] | session ID (8), next expected sequence (8) |
//!
//! Inputs: [`send`](ResumableSession::send), [`handle_frame`](ResumableSession::handle_frame),
//! [`link_up`](ResumableSession::link_up), [`link_lost`](ResumableSession::link_lost),
//! [`handle_timeout`](ResumableSession::handle_timeout). Outputs:
//! [`poll_frame`](ResumableSession::poll_frame), [`poll_message`](ResumableSession::poll_message),
//! [`poll_timeout`](ResumableSession::poll_timeout).

use std::collections::VecDeque;

use primitives::time::Instant;

use crate::{
    constants::{RESUME_ACK_DELAY, RESUME_ACK_EVERY, RESUME_UNACKED_MAX},
    error::ResumeError,
};

/// Tag of [`ResumeFrame::Data`].
pub const DATA_TAG: u8 = 0xC1;
/// Tag of [`ResumeFrame::Ack`].
pub const ACK_TAG: u8 = 0xC2;
/// Tag of [`ResumeFrame::Resume`].
pub const RESUME_TAG: u8 = 0xC3;
/// Bytes a data frame adds to its payload.
pub const RESUME_DATA_OVERHEAD_BYTES: usize = 1 + 8;

/// One frame of the resume layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeFrame<'a> {
    /// A message and its sequence number.
    Data {
        /// Its sequence number, from 0.
        seq: u64,
        /// The message.
        payload: &'a [u8],
    },
    /// Every message before `next` was delivered.
    Ack {
        /// The next sequence number the sender of the ack expects.
        next: u64,
    },
    /// The first frame on every connection, from both sides: which session, and what its
    /// sender expects next.
    Resume {
        /// The session, chosen by the side that opened it.
        session: u64,
        /// The next sequence number the sender of the frame expects.
        next: u64,
    },
}

impl<'a> ResumeFrame<'a> {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ResumeFrame::Data { seq, payload } => {
                out.reserve(RESUME_DATA_OVERHEAD_BYTES + payload.len());
                out.push(DATA_TAG);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(payload);
            }
            ResumeFrame::Ack { next } => {
                out.push(ACK_TAG);
                out.extend_from_slice(&next.to_be_bytes());
            }
            ResumeFrame::Resume { session, next } => {
                out.push(RESUME_TAG);
                out.extend_from_slice(&session.to_be_bytes());
                out.extend_from_slice(&next.to_be_bytes());
            }
        }
        out
    }

    /// Decodes one frame; malformed input is a typed error.
    pub fn decode(bytes: &'a [u8]) -> Result<ResumeFrame<'a>, ResumeError> {
        let (&tag, body) = bytes.split_first().ok_or(ResumeError::Malformed {
            reason: "empty frame",
        })?;
        let word = |at: usize| -> Result<u64, ResumeError> {
            body.get(at..at + 8)
                .and_then(|slice| <[u8; 8]>::try_from(slice).ok())
                .map(u64::from_be_bytes)
                .ok_or(ResumeError::Malformed {
                    reason: "truncated frame",
                })
        };
        let exact = |len: usize| {
            if body.len() > len {
                Err(ResumeError::Malformed {
                    reason: "trailing bytes",
                })
            } else {
                Ok(())
            }
        };
        match tag {
            DATA_TAG => {
                let seq = word(0)?;
                let payload = body.get(8..).unwrap_or_default();
                if payload.is_empty() {
                    return Err(ResumeError::Malformed {
                        reason: "data frame without payload",
                    });
                }
                Ok(ResumeFrame::Data { seq, payload })
            }
            ACK_TAG => {
                let next = word(0)?;
                exact(8)?;
                Ok(ResumeFrame::Ack { next })
            }
            RESUME_TAG => {
                let (session, next) = (word(0)?, word(8)?);
                exact(16)?;
                Ok(ResumeFrame::Resume { session, next })
            }
            tag => Err(ResumeError::UnknownTag { tag }),
        }
    }
}

/// Where a session stands with its current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// No connection: sends are buffered.
    Down,
    /// A connection is up and our `Resume` is sent; the peer's has not come yet, so data waits.
    AwaitingResume,
    /// Both sides have resumed: data flows.
    Up,
}

/// Counters of a resumable session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResumeStats {
    /// Messages delivered to the application.
    pub delivered: u64,
    /// Data frames dropped as copies of messages delivered already.
    pub duplicates: u64,
    /// Data frames sent again after a resume.
    pub resent: u64,
    /// Connections the session resumed on (the first included).
    pub resumes: u64,
}

/// A message stream that outlives its connections; see the [module](self) documentation.
#[derive(Debug)]
pub struct ResumableSession {
    session: u64,
    link: Link,
    /// The next sequence number to give a message.
    next_seq: u64,
    /// Sent (or waiting to be), not acknowledged; in sequence order, at most
    /// [`RESUME_UNACKED_MAX`].
    unacked: VecDeque<(u64, Vec<u8>)>,
    /// The next sequence number to deliver.
    next_expected: u64,
    /// Delivered messages not yet acknowledged to the peer, and since when.
    unacked_deliveries: u32,
    ack_due: Option<Instant>,
    outbox: VecDeque<Vec<u8>>,
    inbox: VecDeque<Vec<u8>>,
    stats: ResumeStats,
}

impl ResumableSession {
    /// A session with ID `session` (random, chosen by the side that opens it) and no connection.
    pub fn new(session: u64) -> ResumableSession {
        ResumableSession {
            session,
            link: Link::Down,
            next_seq: 0,
            unacked: VecDeque::new(),
            next_expected: 0,
            unacked_deliveries: 0,
            ack_due: None,
            outbox: VecDeque::new(),
            inbox: VecDeque::new(),
            stats: ResumeStats::default(),
        }
    }

    /// The session's ID.
    pub fn id(&self) -> u64 {
        self.session
    }

    /// The counters so far.
    pub fn stats(&self) -> ResumeStats {
        self.stats
    }

    /// Messages sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Whether both sides resumed on the current connection.
    pub fn is_up(&self) -> bool {
        self.link == Link::Up
    }

    /// Queues a message. It is sent now if the link is up, else after the next resume, and
    /// kept until the peer acknowledges it. Refused when [`RESUME_UNACKED_MAX`] are
    /// unacknowledged (back-pressure) or the message is empty.
    pub fn send(&mut self, message: &[u8]) -> Result<(), ResumeError> {
        if message.is_empty() {
            return Err(ResumeError::Empty);
        }
        if self.unacked.len() >= RESUME_UNACKED_MAX {
            return Err(ResumeError::QueueFull {
                max: RESUME_UNACKED_MAX,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = ResumeFrame::Data {
            seq,
            payload: message,
        }
        .encode();
        if self.link == Link::Up {
            self.outbox.push_back(frame.clone());
        }
        self.unacked.push_back((seq, frame));
        Ok(())
    }

    /// A new connection is up: whatever was queued for the old one is gone, and the session
    /// announces itself with a `Resume` frame; data waits for the peer's.
    pub fn link_up(&mut self) {
        self.outbox.clear();
        self.outbox.push_back(
            ResumeFrame::Resume {
                session: self.session,
                next: self.next_expected,
            }
            .encode(),
        );
        self.link = Link::AwaitingResume;
    }

    /// The connection dropped: frames not yet handed to it are dropped (unacknowledged
    /// messages stay, for the next connection).
    pub fn link_lost(&mut self) {
        self.outbox.clear();
        self.link = Link::Down;
    }

    /// Handles one frame from the current connection. A refused frame changes nothing.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ResumeError> {
        match ResumeFrame::decode(bytes)? {
            ResumeFrame::Resume { session, next } => {
                if session != self.session {
                    return Err(ResumeError::SessionMismatch {
                        expected: self.session,
                        found: session,
                    });
                }
                if self.link != Link::AwaitingResume {
                    return Err(ResumeError::Unexpected { frame: "resume" });
                }
                self.acknowledge(next)?;
                self.link = Link::Up;
                self.stats.resumes += 1;
                let resent = self.unacked.len() as u64;
                if self.stats.resumes > 1 {
                    self.stats.resent += resent;
                }
                self.outbox
                    .extend(self.unacked.iter().map(|(_, frame)| frame.clone()));
                Ok(())
            }
            _ if self.link != Link::Up => Err(ResumeError::Unexpected {
                frame: "data or ack before resume",
            }),
            ResumeFrame::Ack { next } => self.acknowledge(next),
            ResumeFrame::Data { seq, payload } => {
                if seq < self.next_expected {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                if seq > self.next_expected {
                    // The connection is ordered and the peer resends from what we expect, so
                    // a gap means a broken peer.
                    return Err(ResumeError::Gap {
                        expected: self.next_expected,
                        found: seq,
                    });
                }
                self.next_expected += 1;
                self.inbox.push_back(payload.to_vec());
                self.stats.delivered += 1;
                self.unacked_deliveries += 1;
                if self.unacked_deliveries >= RESUME_ACK_EVERY {
                    self.queue_ack();
                } else if self.ack_due.is_none() {
                    self.ack_due = Some(now + RESUME_ACK_DELAY);
                }
                Ok(())
            }
        }
    }

    /// Drops every unacknowledged message before `next`.
    fn acknowledge(&mut self, next: u64) -> Result<(), ResumeError> {
        if next > self.next_seq {
            return Err(ResumeError::AckBeyondSent {
                acked: next,
                sent: self.next_seq,
            });
        }
        while self.unacked.front().is_some_and(|(seq, _)| *seq < next) {
            self.unacked.pop_front();
        }
        Ok(())
    }

    fn queue_ack(&mut self) {
        self.unacked_deliveries = 0;
        self.ack_due = None;
        if self.link == Link::Up {
            self.outbox.push_back(
                ResumeFrame::Ack {
                    next: self.next_expected,
                }
                .encode(),
            );
        }
    }

    /// Sends a delayed acknowledgement if it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ack_due.is_some_and(|due| due <= now) {
            self.queue_ack();
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work: a delayed acknowledgement.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ack_due
    }

    /// The next frame to send on the current connection.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// The next message for the application, in order.
    pub fn poll_message(&mut self) -> Option<Vec<u8>> {
        self.inbox.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: Instant = Instant::from_micros(0);

    /// Carries frames from one side to the other in order, as a connection does, unless the
    /// link is cut: then what is in flight is lost.
    fn pump(from: &mut ResumableSession, to: &mut ResumableSession, in_flight: &mut Vec<Vec<u8>>) {
        while let Some(frame) = from.poll_frame() {
            in_flight.push(frame);
        }
        for frame in in_flight.drain(..) {
            to.handle_frame(T0, &frame).expect("a well-behaved peer");
        }
    }

    fn connect(a: &mut ResumableSession, b: &mut ResumableSession) {
        a.link_up();
        b.link_up();
        let mut wire = Vec::new();
        pump(a, b, &mut wire);
        pump(b, a, &mut wire);
        assert!(a.is_up() && b.is_up());
    }

    fn message(index: u32) -> Vec<u8> {
        format!("move {index}").into_bytes()
    }

    #[test]
    fn a_dropped_link_loses_and_reorders_nothing() {
        let (mut a, mut b) = (ResumableSession::new(7), ResumableSession::new(7));
        connect(&mut a, &mut b);
        for index in 0..40 {
            a.send(&message(index)).expect("room");
        }
        // Half the frames cross, then the link drops with the rest in flight; B's acks for
        // what it got (every RESUME_ACK_EVERY) crossed back only in part.
        for _ in 0..25 {
            let frame = a.poll_frame().expect("queued");
            b.handle_frame(T0, &frame).expect("in order");
        }
        let ack = b.poll_frame().expect("an ack after 16");
        a.handle_frame(T0, &ack).expect("ack");
        assert_eq!(a.unacked(), 40 - RESUME_ACK_EVERY as usize);
        a.link_lost();
        b.link_lost();
        // Sends while the link is down wait.
        for index in 40..50 {
            a.send(&message(index)).expect("room");
        }
        assert!(a.poll_frame().is_none());
        connect(&mut a, &mut b);
        let mut wire = Vec::new();
        pump(&mut a, &mut b, &mut wire);
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_message()).collect();
        assert_eq!(got, (0..50).map(message).collect::<Vec<_>>());
        // B told A on resume it had 25: A sent 25.. (15 lost in flight, 10 queued while
        // down), none twice.
        assert_eq!(b.stats().duplicates, 0);
        assert_eq!(a.stats().resent, 25);
        b.handle_timeout(T0 + RESUME_ACK_DELAY);
        pump(&mut b, &mut a, &mut wire);
        assert_eq!(a.unacked(), 0);
    }

    #[test]
    fn copies_are_delivered_once_and_bad_frames_change_nothing() {
        let (mut a, mut b) = (ResumableSession::new(1), ResumableSession::new(1));
        assert_eq!(
            b.handle_frame(
                T0,
                &ResumeFrame::Data {
                    seq: 0,
                    payload: b"x"
                }
                .encode()
            ),
            Err(ResumeError::Unexpected {
                frame: "data or ack before resume"
            })
        );
        connect(&mut a, &mut b);
        let data = ResumeFrame::Data {
            seq: 0,
            payload: b"x",
        }
        .encode();
        b.handle_frame(T0, &data).expect("first");
        b.handle_frame(T0, &data).expect("a copy is no error");
        assert_eq!(b.stats().duplicates, 1);
        assert_eq!(b.poll_message(), Some(b"x".to_vec()));
        assert_eq!(b.poll_message(), None);
        assert_eq!(
            b.handle_frame(
                T0,
                &ResumeFrame::Data {
                    seq: 5,
                    payload: b"y"
                }
                .encode()
            ),
            Err(ResumeError::Gap {
                expected: 1,
                found: 5
            })
        );
        assert_eq!(
            b.handle_frame(T0, &ResumeFrame::Ack { next: 3 }.encode()),
            Err(ResumeError::AckBeyondSent { acked: 3, sent: 0 })
        );
        // Another session's resume is refused, not mixed in.
        b.link_up();
        assert_eq!(
            b.handle_frame(
                T0,
                &ResumeFrame::Resume {
                    session: 2,
                    next: 0
                }
                .encode()
            ),
            Err(ResumeError::SessionMismatch {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            ResumeFrame::decode(&[]),
            Err(ResumeError::Malformed {
                reason: "empty frame"
            })
        );
        assert_eq!(
            ResumeFrame::decode(&[0x99]),
            Err(ResumeError::UnknownTag { tag: 0x99 })
        );
        assert_eq!(
            ResumeFrame::decode(&[ACK_TAG, 0, 0]),
            Err(ResumeError::Malformed {
                reason: "truncated frame"
            })
        );
        assert_eq!(
            ResumeFrame::decode(&[DATA_TAG, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ResumeError::Malformed {
                reason: "data frame without payload"
            })
        );
        assert_eq!(a.send(&[]), Err(ResumeError::Empty));
    }

    #[test]
    fn unacknowledged_messages_are_bounded() {
        let mut a = ResumableSession::new(3);
        for _ in 0..RESUME_UNACKED_MAX {
            a.send(b"m").expect("room");
        }
        assert_eq!(
            a.send(b"m"),
            Err(ResumeError::QueueFull {
                max: RESUME_UNACKED_MAX
            })
        );
    }

    proptest! {
        /// Any schedule of sends, partial deliveries and link drops: B gets 0..n exactly once
        /// and in order.
        #[test]
        fn any_schedule_of_drops_delivers_everything_once_in_order(
            steps in proptest::collection::vec((1usize..20, 0usize..25, any::<bool>()), 1..12),
        ) {
            let (mut a, mut b) = (ResumableSession::new(9), ResumableSession::new(9));
            connect(&mut a, &mut b);
            let mut sent = 0u32;
            let mut now = T0;
            for (sends, crossing, drop_link) in steps {
                for _ in 0..sends {
                    if a.send(&message(sent)).is_ok() {
                        sent += 1;
                    }
                }
                // Some frames cross each way, in order; the rest are in flight.
                for _ in 0..crossing {
                    match a.poll_frame() {
                        Some(frame) => b.handle_frame(now, &frame).expect("in order"),
                        None => break,
                    }
                }
                now += RESUME_ACK_DELAY;
                b.handle_timeout(now);
                while let Some(frame) = b.poll_frame() {
                    a.handle_frame(now, &frame).expect("acks");
                }
                if drop_link {
                    a.link_lost();
                    b.link_lost();
                    connect(&mut a, &mut b);
                }
            }
            let mut wire = Vec::new();
            pump(&mut a, &mut b, &mut wire);
            let got: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_message()).collect();
            prop_assert_eq!(got, (0..sent).map(message).collect::<Vec<_>>());
        }
    }
}
