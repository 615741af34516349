//! [`LinkModel`]: what the emulated link does to each IP packet, as a sans-IO state machine.
//!
//! The forwarder feeds it every packet read from a TUN device with the current time and drains
//! the packets due for the other device. Each packet's fate is drawn by [`Fate::draw`] from
//! the RNG stream of its (direction, protocol) class, so the n-th UDP packet from A to B meets
//! the same fate in every run with the same seed, whatever the TCP packets beside it do.

use std::{cmp::Reverse, collections::BinaryHeap, time::Duration};

use primitives::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{constants::EMULATED_IN_FLIGHT_MAX, error::LinkError};

/// How the link treats packets, in both directions alike.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkModelConfig {
    /// Probability that a packet is dropped.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability that a copy is held back an extra `reorder_hold`, so later ones overtake it.
    pub reorder: f64,
    /// The longest extra hold of a reordered copy (drawn uniformly from 1 µs to it).
    pub reorder_hold: Duration,
    /// One-way delay of every copy: half the round-trip time.
    pub delay: Duration,
    /// Extra one-way delay drawn uniformly from zero to this, per copy.
    pub jitter: Duration,
    /// Seed of every RNG stream.
    pub seed: u64,
}

impl Default for LinkModelConfig {
    fn default() -> Self {
        LinkModelConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_hold: Duration::from_millis(5),
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            seed: 0,
        }
    }
}

impl LinkModelConfig {
    /// Checks that the probabilities are probabilities.
    pub fn validate(&self) -> Result<(), LinkError> {
        for probability in [self.loss, self.duplicate, self.reorder] {
            if !(0.0..=1.0).contains(&probability) {
                return Err(LinkError::Config("a probability is outside 0..=1"));
            }
        }
        Ok(())
    }
}

/// Which way a packet crosses the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From namespace A to namespace B.
    AToB,
    /// From namespace B to namespace A.
    BToA,
}

impl Direction {
    /// Both directions, in index order.
    pub const ALL: [Direction; 2] = [Direction::AToB, Direction::BToA];

    fn index(self) -> usize {
        self as usize
    }
}

/// The transport protocol of a packet, read from its IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// IP protocol 6.
    Tcp,
    /// IP protocol 17.
    Udp,
    /// Anything else, IPv6 neighbour discovery and malformed packets included.
    Other,
}

impl Protocol {
    /// Every protocol class, in index order.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Other];

    /// The class of an IP packet: IPv4's protocol field or IPv6's first next-header field.
    pub fn of(packet: &[u8]) -> Protocol {
        let number = match packet.first().map(|byte| byte >> 4) {
            Some(4) => packet.get(9),
            Some(6) => packet.get(6),
            _ => None,
        };
        match number {
            Some(6) => Protocol::Tcp,
            Some(17) => Protocol::Udp,
            _ => Protocol::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What happens to one packet: dropped, or delivered once or twice after the given delays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fate {
    /// Whether the packet is lost.
    pub dropped: bool,
    /// The delay of each delivered copy (empty when dropped); a second copy is a duplicate.
    pub delays: Vec<Duration>,
    /// Whether a copy was held back to be reordered.
    pub reordered: bool,
}

impl Fate {
    /// Draws a packet's fate from `rng`. The link and any replay of it call this alone, so a
    /// seed's decisions can be recomputed exactly.
    pub fn draw(rng: &mut ChaCha8Rng, config: &LinkModelConfig) -> Fate {
        let lost = rng.random::<f64>() < config.loss;
        let duplicated = rng.random::<f64>() < config.duplicate;
        let copies = if lost {
            0
        } else if duplicated {
            2
        } else {
            1
        };
        let mut delays = Vec::with_capacity(copies);
        let mut reordered = false;
        for _ in 0..copies {
            let mut delay = config.delay + uniform(rng, config.jitter);
            if rng.random::<f64>() < config.reorder {
                reordered = true;
                delay += uniform(rng, config.reorder_hold).max(Duration::from_micros(1));
            }
            delays.push(delay);
        }
        Fate {
            dropped: lost,
            delays,
            reordered,
        }
    }

    /// The RNG stream of one (direction, protocol) class under `seed`.
    pub fn stream(seed: u64, direction: Direction, protocol: Protocol) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream((direction.index() * Protocol::ALL.len() + protocol.index()) as u64);
        rng
    }
}

fn uniform(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    let max_us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    if max_us == 0 {
        Duration::ZERO
    } else {
        Duration::from_micros(rng.random_range(0..=max_us))
    }
}

/// Counters of one (direction, protocol) class. Bytes are whole IP packets, headers included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Packets the endpoints sent into the link.
    pub packets_offered: u64,
    /// Their bytes: what the endpoints put on the wire.
    pub bytes_offered: u64,
    /// Packets the loss draw dropped.
    pub packets_dropped: u64,
    /// Copies dropped because the link was full (never expected at these rates).
    pub packets_overflowed: u64,
    /// Packets delivered twice.
    pub packets_duplicated: u64,
    /// Packets with a copy held back to be reordered.
    pub packets_reordered: u64,
    /// Copies written to the far device.
    pub packets_delivered: u64,
    /// Their bytes.
    pub bytes_delivered: u64,
}

impl ClassStats {
    fn add(&mut self, other: &ClassStats) {
        self.packets_offered += other.packets_offered;
        self.bytes_offered += other.bytes_offered;
        self.packets_dropped += other.packets_dropped;
        self.packets_overflowed += other.packets_overflowed;
        self.packets_duplicated += other.packets_duplicated;
        self.packets_reordered += other.packets_reordered;
        self.packets_delivered += other.packets_delivered;
        self.bytes_delivered += other.bytes_delivered;
    }

    /// The counters gained since `earlier`.
    pub fn since(&self, earlier: &ClassStats) -> ClassStats {
        ClassStats {
            packets_offered: self.packets_offered - earlier.packets_offered,
            bytes_offered: self.bytes_offered - earlier.bytes_offered,
            packets_dropped: self.packets_dropped - earlier.packets_dropped,
            packets_overflowed: self.packets_overflowed - earlier.packets_overflowed,
            packets_duplicated: self.packets_duplicated - earlier.packets_duplicated,
            packets_reordered: self.packets_reordered - earlier.packets_reordered,
            packets_delivered: self.packets_delivered - earlier.packets_delivered,
            bytes_delivered: self.bytes_delivered - earlier.bytes_delivered,
        }
    }
}

/// Counters of the whole link, per direction and protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    classes: [[ClassStats; 3]; 2],
    /// Copies waiting for their release now.
    pub packets_in_flight: u64,
}

impl LinkStats {
    /// The counters of one class.
    pub fn class(&self, direction: Direction, protocol: Protocol) -> ClassStats {
        self.classes[direction.index()][protocol.index()]
    }

    /// The counters of one protocol, both directions together.
    pub fn protocol(&self, protocol: Protocol) -> ClassStats {
        let mut total = ClassStats::default();
        for direction in Direction::ALL {
            total.add(&self.class(direction, protocol));
        }
        total
    }

    fn class_mut(&mut self, direction: Direction, protocol: Protocol) -> &mut ClassStats {
        &mut self.classes[direction.index()][protocol.index()]
    }
}

/// A copy waiting for its release: (release time, arrival order, direction, packet).
type Held = (Instant, u64, Direction, Vec<u8>);

/// The emulated link's behaviour without IO: delay, loss, duplication and reordering of IP
/// packets, counted per direction and protocol.
///
/// Inputs: [`handle_packet`](Self::handle_packet). Drains, after every input and whenever
/// [`poll_timeout`](Self::poll_timeout) comes: [`poll_release`](Self::poll_release) until
/// `None`. Getters: [`stats`](Self::stats).
pub struct LinkModel {
    config: LinkModelConfig,
    /// One stream per (direction, protocol), see [`Fate::stream`].
    streams: Vec<ChaCha8Rng>,
    in_flight: BinaryHeap<Reverse<Held>>,
    order: u64,
    stats: LinkStats,
}

impl std::fmt::Debug for LinkModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkModel")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl LinkModel {
    /// A link with `config`'s faults and seed.
    pub fn new(config: LinkModelConfig) -> Result<LinkModel, LinkError> {
        config.validate()?;
        let mut streams = Vec::new();
        for direction in Direction::ALL {
            for protocol in Protocol::ALL {
                streams.push(Fate::stream(config.seed, direction, protocol));
            }
        }
        Ok(LinkModel {
            config,
            streams,
            in_flight: BinaryHeap::new(),
            order: 0,
            stats: LinkStats::default(),
        })
    }

    /// Takes one IP packet sent into the link at `now` in `direction`.
    pub fn handle_packet(&mut self, now: Instant, direction: Direction, packet: &[u8]) {
        let protocol = Protocol::of(packet);
        let stream = direction.index() * Protocol::ALL.len() + protocol.index();
        let fate = Fate::draw(&mut self.streams[stream], &self.config);
        let stats = self.stats.class_mut(direction, protocol);
        stats.packets_offered += 1;
        stats.bytes_offered += packet.len() as u64;
        stats.packets_dropped += u64::from(fate.dropped);
        stats.packets_duplicated += u64::from(fate.delays.len() > 1);
        stats.packets_reordered += u64::from(fate.reordered);
        for delay in fate.delays {
            if self.in_flight.len() >= EMULATED_IN_FLIGHT_MAX {
                stats.packets_overflowed += 1;
                continue;
            }
            self.order += 1;
            self.in_flight.push(Reverse((
                now + delay,
                self.order,
                direction,
                packet.to_vec(),
            )));
        }
        self.stats.packets_in_flight = self.in_flight.len() as u64;
    }

    /// The next copy due at `now`, with the direction it travels.
    pub fn poll_release(&mut self, now: Instant) -> Option<(Direction, Vec<u8>)> {
        let Reverse((at, ..)) = self.in_flight.peek()?;
        if *at > now {
            return None;
        }
        let Reverse((_, _, direction, packet)) = self.in_flight.pop()?;
        let stats = self.stats.class_mut(direction, Protocol::of(&packet));
        stats.packets_delivered += 1;
        stats.bytes_delivered += packet.len() as u64;
        self.stats.packets_in_flight = self.in_flight.len() as u64;
        Some((direction, packet))
    }

    /// When the next copy is due, if one is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, ..))| *at)
    }

    /// The counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_packet(len: usize) -> Vec<u8> {
        let mut packet = vec![0u8; len];
        packet[0] = 0x45;
        packet[9] = 17;
        packet
    }

    #[test]
    fn classifies_by_the_ip_header() {
        let mut tcp = udp_packet(40);
        tcp[9] = 6;
        assert_eq!(Protocol::of(&tcp), Protocol::Tcp);
        assert_eq!(Protocol::of(&udp_packet(28)), Protocol::Udp);
        let mut ipv6 = vec![0u8; 40];
        ipv6[0] = 0x60;
        ipv6[6] = 58;
        assert_eq!(Protocol::of(&ipv6), Protocol::Other);
        assert_eq!(Protocol::of(&[0x45, 0]), Protocol::Other);
        assert_eq!(Protocol::of(&[]), Protocol::Other);
    }

    #[test]
    fn delays_drops_and_counts_as_the_seed_decides() {
        let config = LinkModelConfig {
            loss: 0.2,
            duplicate: 0.05,
            reorder: 0.1,
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(1),
            seed: 9,
            ..LinkModelConfig::default()
        };
        let mut link = LinkModel::new(config.clone()).expect("valid");
        let start = Instant::from_micros(1_000_000);
        for index in 0..1_000u64 {
            link.handle_packet(
                start + Duration::from_micros(index),
                Direction::AToB,
                &udp_packet(100),
            );
        }
        assert_eq!(
            link.poll_release(start),
            None,
            "nothing arrives before the delay"
        );
        let mut delivered = 0;
        while let Some(at) = link.poll_timeout() {
            assert!(at >= start + config.delay);
            while let Some((direction, packet)) = link.poll_release(at) {
                assert_eq!(direction, Direction::AToB);
                assert_eq!(packet.len(), 100);
                delivered += 1;
            }
        }
        let mut replay = Fate::stream(config.seed, Direction::AToB, Protocol::Udp);
        let fates: Vec<Fate> = (0..1_000)
            .map(|_| Fate::draw(&mut replay, &config))
            .collect();
        let stats = link.stats().class(Direction::AToB, Protocol::Udp);
        assert_eq!(stats.packets_offered, 1_000);
        assert_eq!(stats.bytes_offered, 100_000);
        assert_eq!(
            stats.packets_dropped,
            fates.iter().filter(|fate| fate.dropped).count() as u64
        );
        let copies: usize = fates.iter().map(|fate| fate.delays.len()).sum();
        assert_eq!(delivered, copies);
        assert_eq!(stats.packets_delivered, copies as u64);
        assert!((150..250).contains(&stats.packets_dropped), "{stats:?}");
        assert!(stats.packets_duplicated > 0 && stats.packets_reordered > 0);
        assert_eq!(
            link.stats().class(Direction::BToA, Protocol::Udp),
            ClassStats::default()
        );
    }

    #[test]
    fn refuses_a_probability_above_one() {
        let config = LinkModelConfig {
            loss: 1.5,
            ..LinkModelConfig::default()
        };
        assert!(matches!(LinkModel::new(config), Err(LinkError::Config(_))));
    }
}
