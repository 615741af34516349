//! The core in one thread on a simulated clock, as quinn-proto's test `Pair`: the clock jumps to
//! the earliest deadline of either session or the link, and the link loses, delays and reorders
//! datagrams from a seeded RNG.

use std::{cmp::Reverse, collections::BinaryHeap, time::Duration};

use primitives::time::Instant;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::{
    constants::{KCP_HEADER_BYTES, MAX_MESSAGE_BYTES},
    error::{KcpError, SendError},
    kcp::wire::{COMMAND_ACK, COMMAND_PUSH, Header, encode_header},
};

const CONV: u32 = 0x0102_0304;

/// A datagram on the link: (arrival, send order, to `b`?, bytes).
type InFlight = (Instant, u64, bool, Vec<u8>);

/// A one-way-per-datagram link: each datagram is lost with probability `loss`, otherwise it
/// arrives after `latency` plus a uniform jitter, so later datagrams may overtake it.
struct Link {
    rng: ChaCha8Rng,
    loss: f64,
    latency: Duration,
    jitter_us: u64,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    sent: u64,
    lost: u64,
    /// The largest send order delivered so far, per direction, to count reorderings.
    delivered_max: [Option<u64>; 2],
    reordered: u64,
}

impl Link {
    fn new(seed: u64, loss: f64, latency: Duration, jitter_us: u64) -> Link {
        Link {
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss,
            latency,
            jitter_us,
            in_flight: BinaryHeap::new(),
            sent: 0,
            lost: 0,
            delivered_max: [None, None],
            reordered: 0,
        }
    }

    fn transmit(&mut self, now: Instant, to_b: bool, datagram: Vec<u8>) {
        self.sent += 1;
        if self.rng.random_bool(self.loss) {
            self.lost += 1;
            return;
        }
        let jitter = Duration::from_micros(self.rng.random_range(0..=self.jitter_us));
        let arrival = now + self.latency + jitter;
        self.in_flight
            .push(Reverse((arrival, self.sent, to_b, datagram)));
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, ..))| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(bool, Vec<u8>)> {
        if self.next_arrival()? > now {
            return None;
        }
        let Reverse((_, order, to_b, datagram)) = self.in_flight.pop()?;
        let max = &mut self.delivered_max[usize::from(to_b)];
        if max.is_some_and(|max| max > order) {
            self.reordered += 1;
        }
        *max = Some(max.map_or(order, |max| max.max(order)));
        Some((to_b, datagram))
    }
}

struct Pair {
    now: Instant,
    a: KcpSession,
    b: KcpSession,
    link: Link,
    /// Messages each side received, with the time they were drained.
    received_by_a: Vec<(Instant, Vec<u8>)>,
    received_by_b: Vec<(Instant, Vec<u8>)>,
    /// Whether `b` answers each message with a copy at once.
    b_echoes: bool,
    wakeups: u64,
}

impl Pair {
    fn new(config: &KcpConfig, link: Link) -> Pair {
        let now = Instant::from_micros(1_000_000);
        Pair {
            now,
            a: KcpSession::new(CONV, config, now),
            b: KcpSession::new(CONV, config, now),
            link,
            received_by_a: Vec::new(),
            received_by_b: Vec::new(),
            b_echoes: false,
            wakeups: 0,
        }
    }

    /// Drains both sessions in quinn's order: transmits, then messages.
    fn drain(&mut self) {
        loop {
            let mut moved = false;
            while let Some(datagram) = self.a.poll_transmit() {
                self.link.transmit(self.now, true, datagram);
                moved = true;
            }
            while let Some(datagram) = self.b.poll_transmit() {
                self.link.transmit(self.now, false, datagram);
                moved = true;
            }
            while let Some(message) = self.a.poll_message() {
                self.received_by_a.push((self.now, message));
                moved = true;
            }
            while let Some(message) = self.b.poll_message() {
                if self.b_echoes {
                    self.b.send(&message).expect("echo fits");
                }
                self.received_by_b.push((self.now, message));
                moved = true;
            }
            for session in [&mut self.a, &mut self.b] {
                if session.poll_timeout() <= self.now {
                    session.handle_timeout(self.now);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Jumps to the next deadline and handles everything due then.
    fn step(&mut self) {
        let mut next = self.a.poll_timeout().min(self.b.poll_timeout());
        if let Some(arrival) = self.link.next_arrival() {
            next = next.min(arrival);
        }
        assert!(next >= self.now, "time never goes backwards");
        self.now = next;
        self.wakeups += 1;
        while let Some((to_b, datagram)) = self.link.pop_due(self.now) {
            let target = if to_b { &mut self.b } else { &mut self.a };
            // Checked datagrams from a well-behaved peer are never refused.
            target
                .handle_datagram(self.now, &datagram)
                .expect("a peer's datagram is accepted");
        }
        for session in [&mut self.a, &mut self.b] {
            if session.poll_timeout() <= self.now {
                session.handle_timeout(self.now);
            }
        }
        self.drain();
    }
}

fn numbered(index: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    // Some messages span several segments, so fragmentation is exercised under loss too.
    let padding = if rng.random_bool(0.1) {
        rng.random_range(1_400..5_000)
    } else {
        rng.random_range(0..64)
    };
    let mut message = index.to_be_bytes().to_vec();
    message.resize(4 + padding, index as u8);
    message
}

fn run_both_ways(seed: u64) {
    const MESSAGES: u32 = 1_000;
    let config = KcpConfig::default();
    let link = Link::new(seed, 0.10, Duration::from_millis(5), 4_000);
    let mut pair = Pair::new(&config, link);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xABCD);
    let expected: Vec<Vec<u8>> = (0..MESSAGES).map(|i| numbered(i, &mut rng)).collect();
    let (mut next_a, mut next_b) = (0usize, 0usize);
    let deadline = pair.now + Duration::from_secs(300);
    while pair.received_by_a.len() < expected.len() || pair.received_by_b.len() < expected.len() {
        // Each side offers what its send queue takes; QueueFull means "later".
        while next_a < expected.len() {
            match pair.a.send(&expected[next_a]) {
                Ok(()) => next_a += 1,
                Err(SendError::QueueFull { .. }) => break,
                Err(error) => panic!("unexpected {error}"),
            }
        }
        while next_b < expected.len() {
            match pair.b.send(&expected[next_b]) {
                Ok(()) => next_b += 1,
                Err(SendError::QueueFull { .. }) => break,
                Err(error) => panic!("unexpected {error}"),
            }
        }
        pair.step();
        assert!(
            pair.now < deadline,
            "seed {seed}: no progress by {:?}",
            pair.now
        );
        assert!(
            !pair.a.is_dead() && !pair.b.is_dead(),
            "seed {seed}: session died"
        );
    }
    let by_b: Vec<Vec<u8>> = pair.received_by_b.into_iter().map(|(_, m)| m).collect();
    let by_a: Vec<Vec<u8>> = pair.received_by_a.into_iter().map(|(_, m)| m).collect();
    assert!(
        by_b == expected,
        "seed {seed}: b got them in order, once each"
    );
    assert!(
        by_a == expected,
        "seed {seed}: a got them in order, once each"
    );
    assert!(pair.link.lost > 0, "seed {seed}: the link lost datagrams");
    assert!(
        pair.link.reordered > 0,
        "seed {seed}: the link reordered datagrams"
    );
}

#[test]
fn pair_delivers_in_order_exactly_once_under_loss_and_reordering() {
    for seed in [1, 2, 3] {
        run_both_ways(seed);
    }
}

#[test]
fn a_reply_crosses_the_link_without_waiting_for_a_timer() {
    let config = KcpConfig::default();
    let latency = Duration::from_millis(3);
    let mut pair = Pair::new(&config, Link::new(9, 0.0, latency, 0));
    pair.b_echoes = true;
    // Let the sessions settle first, so no interval tick lines up by chance.
    for _ in 0..3 {
        pair.step();
    }
    let sent_at = pair.now;
    pair.a.send(b"move").expect("fits");
    assert_eq!(
        pair.a.poll_timeout(),
        sent_at,
        "a send asks for a flush now"
    );
    while pair.received_by_a.is_empty() {
        pair.step();
    }
    assert_eq!(pair.received_by_b[0].0, sent_at + latency);
    assert_eq!(
        pair.received_by_a[0],
        (sent_at + latency * 2, b"move".to_vec())
    );
}

#[test]
fn a_quiet_pair_stays_open_without_spinning() {
    let config = KcpConfig::default();
    let mut pair = Pair::new(&config, Link::new(4, 0.0, Duration::from_millis(2), 500));
    pair.a.send(b"hello").expect("fits");
    let end = pair.now + Duration::from_secs(60);
    while pair.now < end {
        pair.step();
    }
    assert_eq!(pair.received_by_b.len(), 1);
    assert!(
        !pair.a.is_dead() && !pair.b.is_dead(),
        "keepalives hold the pair open"
    );
    assert!(pair.b.stats().keepalives_received > 0 || pair.a.stats().keepalives_received > 0);
    // A keepalive every 2 s and a few wakeups to see it acknowledged; spinning on the 5 ms
    // interval would be 24,000 wakeups.
    assert!(
        pair.wakeups < 400,
        "{} wakeups in a quiet minute",
        pair.wakeups
    );
}

#[test]
fn a_silent_peer_closes_the_session_by_idle_timeout() {
    let config = KcpConfig::default();
    let start = Instant::from_micros(5);
    let mut session = KcpSession::new(CONV, &config, start);
    session.send(b"anyone?").expect("fits");
    let mut wakeups = 0u32;
    while !session.is_dead() {
        let now = session.poll_timeout();
        session.handle_timeout(now);
        while session.poll_transmit().is_some() {}
        wakeups += 1;
        assert!(wakeups < 10_000, "the session closes");
    }
    assert_eq!(session.close_reason(), Some(&CloseReason::IdleTimeout));
    assert_eq!(session.poll_timeout(), Instant::from_micros(u64::MAX));
    assert_eq!(session.send(b"late"), Err(SendError::Closed));
}

#[test]
fn refuses_oversized_and_empty_messages() {
    let config = KcpConfig::default();
    let mut session = KcpSession::new(CONV, &config, Instant::ZERO);
    let too_large = vec![0; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        session.send(&too_large),
        Err(SendError::TooLarge {
            len: MAX_MESSAGE_BYTES + 1,
            max: MAX_MESSAGE_BYTES
        })
    );
    assert_eq!(session.send(&[]), Err(SendError::Empty));
    assert_eq!(session.send(&vec![0; MAX_MESSAGE_BYTES]), Ok(()));
}

#[test]
fn the_send_queue_is_bounded() {
    let config = KcpConfig::default();
    let mut session = KcpSession::new(CONV, &config, Instant::ZERO);
    for _ in 0..config.send_queue_segments_max {
        session.send(&[7; 1000]).expect("within the bound");
    }
    assert_eq!(
        session.send(&[7; 1000]),
        Err(SendError::QueueFull {
            queued: config.send_queue_segments_max,
            needed: 1,
            max: config.send_queue_segments_max
        })
    );
}

#[test]
fn a_peer_message_beyond_the_bound_closes_the_session() {
    let sender_config = KcpConfig::default();
    let receiver_config = KcpConfig {
        message_bytes_max: 5_000,
        ..KcpConfig::default()
    };
    let now = Instant::ZERO;
    let mut sender = KcpSession::new(CONV, &sender_config, now);
    let mut receiver = KcpSession::new(CONV, &receiver_config, now);
    // Four segments, as many as a 5,000-byte message, but 5,400 bytes in all.
    sender.send(&[1; 5_400]).expect("fits the sender's bound");
    sender.handle_timeout(now);
    while let Some(datagram) = sender.poll_transmit() {
        receiver
            .handle_datagram(now, &datagram)
            .expect("segments are in bounds");
    }
    assert_eq!(receiver.poll_message(), None);
    assert_eq!(
        receiver.close_reason(),
        Some(&CloseReason::OversizedMessage {
            len: 5_400,
            max: 5_000
        })
    );
}

#[test]
fn opens_conversations_only_at_their_start() {
    let config = KcpConfig::default();
    let mut client = KcpSession::new(CONV, &config, Instant::ZERO);
    client.send(b"first").expect("fits");
    client.handle_timeout(Instant::ZERO);
    let first = client.poll_transmit().expect("a datagram");
    assert_eq!(KcpSession::opens_conversation(&first, &config), Some(CONV));
    assert_eq!(conv_of(&first), Some(CONV));

    let mut ack = Vec::new();
    let header = Header {
        conv: CONV,
        command: COMMAND_ACK,
        fragment: 0,
        timestamp_ms: 0,
        sequence: 0,
        unacknowledged: 0,
        len: 0,
    };
    encode_header(&header, &mut ack);
    assert_eq!(KcpSession::opens_conversation(&ack, &config), None);
    let mut middle = Vec::new();
    let header = Header {
        command: COMMAND_PUSH,
        sequence: 10_000,
        ..header
    };
    encode_header(&header, &mut middle);
    assert_eq!(KcpSession::opens_conversation(&middle, &config), None);
    assert_eq!(KcpSession::opens_conversation(b"garbage", &config), None);
}

#[test]
fn refused_datagrams_change_nothing() {
    let config = KcpConfig::default();
    let mut session = KcpSession::new(CONV, &config, Instant::ZERO);
    let before = session.poll_timeout();
    assert_eq!(
        session.handle_datagram(Instant::ZERO, &[0; 10]),
        Err(KcpError::TooShort { len: 10, min: 24 })
    );
    assert_eq!(session.poll_timeout(), before);
    assert_eq!(session.stats().datagrams_rejected, 1);
    assert_eq!(session.stats().datagrams_received, 0);
}

/// A session with data in flight and some received, so forged segments meet real state.
fn busy_session() -> KcpSession {
    let config = KcpConfig::default();
    let now = Instant::from_micros(40_000_000);
    let mut peer = KcpSession::new(CONV, &config, now);
    let mut session = KcpSession::new(CONV, &config, now);
    peer.send(&[3; 3_000]).expect("fits");
    peer.handle_timeout(now);
    while let Some(datagram) = peer.poll_transmit() {
        session.handle_datagram(now, &datagram).expect("valid");
    }
    session.send(&[4; 2_000]).expect("fits");
    session.handle_timeout(now);
    while session.poll_transmit().is_some() {}
    session
}

fn segment() -> impl Strategy<Value = (Header, Vec<u8>)> {
    let command = prop_oneof![81u8..=84, any::<u8>()];
    let conv = prop_oneof![Just(CONV), any::<u32>()];
    let sequence = sequence_strategy();
    let timestamp = prop_oneof![39_990u32..40_010, any::<u32>()];
    (
        conv,
        command,
        any::<u8>(),
        timestamp,
        sequence,
        sequence_strategy(),
        proptest::collection::vec(any::<u8>(), 0..48),
        0usize..64,
    )
        .prop_map(
            |(conv, command, fragment, timestamp_ms, sequence, unacknowledged, payload, len)| {
                let header = Header {
                    conv,
                    command,
                    fragment,
                    timestamp_ms,
                    sequence,
                    unacknowledged,
                    // Sometimes the declared length lies.
                    len: if len < 48 { payload.len() } else { len },
                };
                (header, payload)
            },
        )
}

fn sequence_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..8, any::<u32>()]
}

proptest! {
    #[test]
    fn random_datagrams_never_panic(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1_600), 1..16)
    ) {
        let mut session = busy_session();
        let mut now = Instant::from_micros(40_000_000);
        for datagram in datagrams {
            now += Duration::from_micros(700);
            let _ = session.handle_datagram(now, &datagram);
            session.handle_timeout(now);
            while session.poll_transmit().is_some() {}
            while session.poll_message().is_some() {}
        }
    }

    #[test]
    fn forged_segments_never_panic(
        datagrams in proptest::collection::vec(proptest::collection::vec(segment(), 1..6), 1..16)
    ) {
        let mut session = busy_session();
        let mut now = Instant::from_micros(40_000_000);
        for segments in datagrams {
            let mut datagram = Vec::new();
            for (header, payload) in segments {
                encode_header(&header, &mut datagram);
                datagram.extend_from_slice(&payload);
            }
            now += Duration::from_micros(700);
            let _ = session.handle_datagram(now, &datagram);
            session.handle_timeout(now);
            while session.poll_transmit().is_some() {}
            while session.poll_message().is_some() {}
            let _ = session.poll_timeout();
        }
    }
}

/// Drains every datagram a session wants to send now.
fn drain(session: &mut KcpSession) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| session.poll_transmit()).collect()
}

#[test]
fn a_retransmission_goes_out_twice_and_a_first_send_once() {
    for duplicate in [true, false] {
        let config = KcpConfig {
            duplicate_retransmissions: duplicate,
            ..KcpConfig::default()
        };
        let start = Instant::from_micros(1_000);
        let mut session = KcpSession::new(CONV, &config, start);
        session.handle_timeout(start);
        drain(&mut session);
        session.send(b"move").expect("room");
        session.handle_timeout(start);
        let first = drain(&mut session);
        assert_eq!(first.len(), 1, "a first send goes out once");
        // Nothing is acknowledged: at the RTO the segment goes out again.
        let mut now = start;
        let resent = loop {
            now = session.poll_timeout().max(now + Duration::from_millis(1));
            session.handle_timeout(now);
            let datagrams = drain(&mut session);
            if !datagrams.is_empty() {
                break datagrams;
            }
        };
        let copies = if duplicate { 2 } else { 1 };
        assert_eq!(resent.len(), copies, "duplicate = {duplicate}");
        // The same segment (sequence number and payload; only the timestamp is new), and
        // both copies alike.
        let sequence_and_payload = |datagram: &[u8]| {
            let mut bytes = datagram[12..16].to_vec();
            bytes.extend_from_slice(&datagram[KCP_HEADER_BYTES..]);
            bytes
        };
        assert!(
            resent
                .iter()
                .all(|datagram| sequence_and_payload(datagram) == sequence_and_payload(&first[0]))
        );
        assert!(resent.iter().all(|datagram| *datagram == resent[0]));
        assert_eq!(
            session.stats().retransmissions_duplicated,
            u64::from(duplicate)
        );
    }
}
