//! The IP-proximity table, the second half of the dual DHT: peers keyed by their socket
//! address, mapped into an ID space where XOR distance reflects shared address prefixes.
//!
//! # The key
//! A [`ProximityKey`] is the 128 bits of the address's IPv6 form (an IPv4 address as
//! `::ffff:a.b.c.d`, so IPv4 peers share a 96-bit prefix with each other and are far from native
//! IPv6 ones) followed by the 16 bits of its port. XOR distance between two keys, compared as one
//! 144-bit number, is smaller the longer the two addresses' common prefix: two hosts on one /24
//! are nearer than two on one /16, and two sockets on one host nearer still. Routing prefixes
//! follow the network's physical layout closely enough that this is the cheap stand-in for
//! "physically close" Kademlia-style tables use.
//!
//! # The question it answers
//! [`ProximityTable::relays_between`]: which reachable peers are closest to both A and B. A
//! candidate's score is its *farther* distance to the two (minimax), ties broken by its nearer
//! distance and then by address, so the pick is deterministic. Minimax rather than the sum: a
//! relay next door to A but across the world from B is a poor relay, whatever the sum says.
//!
//! Sans-IO like the rest of the DHT: the owner feeds sightings and failures with the current
//! instant; nothing here reads a clock or a socket.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
};

use primitives::{id::NodeId, time::Instant};

use crate::constants::{DHT_FAILURES_MAX, PROXIMITY_TABLE_MAX};

/// A socket address's position in the proximity ID space (144 bits: IPv6 form, then port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProximityKey {
    ip: u128,
    port: u16,
}

impl ProximityKey {
    /// The key of `addr`. IPv4 and IPv4-mapped IPv6 addresses of one host have one key.
    pub fn of(addr: SocketAddr) -> ProximityKey {
        let ip = match addr.ip().to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        ProximityKey {
            ip: u128::from(ip),
            port: addr.port(),
        }
    }

    /// The XOR distance to `other`.
    pub fn distance(&self, other: &ProximityKey) -> ProximityDistance {
        ProximityDistance {
            ip: self.ip ^ other.ip,
            port: self.port ^ other.port,
        }
    }
}

/// The XOR of two [`ProximityKey`]s; ordered as one 144-bit number (the IP bits high).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProximityDistance {
    ip: u128,
    port: u16,
}

impl ProximityDistance {
    /// Leading bits the two IP addresses share, in their IPv6 form (128 for one host).
    pub fn shared_prefix_bits(&self) -> u32 {
        self.ip.leading_zeros()
    }

    /// The distance between the two addresses alone, ignoring ports.
    pub fn ip_bits(&self) -> u128 {
        self.ip
    }
}

/// The distance of a socket address to another.
pub fn proximity_distance(a: SocketAddr, b: SocketAddr) -> ProximityDistance {
    ProximityKey::of(a).distance(&ProximityKey::of(b))
}

/// One peer in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProximityEntry {
    /// Where the peer is reached (as we see it).
    pub addr: SocketAddr,
    /// The node at that address.
    pub node: NodeId,
    /// Whether the peer is directly reachable (it answers unsolicited datagrams), so it can
    /// serve as a relay.
    pub reachable: bool,
    /// When the peer was first put in the table.
    pub first_seen: Instant,
    /// When the peer last answered or asked us anything.
    pub last_seen: Instant,
    /// Contacts that failed since it last answered.
    pub failures: u8,
}

/// What [`ProximityTable::handle_seen`] did with a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProximityInsert {
    /// The peer was at that address already; `last_seen` and reachability moved.
    Refreshed,
    /// The peer took a free slot.
    Inserted,
    /// The node was known at another address, which it left: the entry moved.
    Moved {
        /// The address it had.
        from: SocketAddr,
    },
    /// The address is taken by another node; the newcomer is refused (the entry there stays
    /// until it fails, so a stranger cannot take over an address by announcing it).
    AddressTaken {
        /// The node holding it.
        holder: NodeId,
    },
    /// The table is full of live entries; the newcomer is refused, as a full Kademlia bucket
    /// refuses newcomers in favour of long-lived entries.
    Full,
}

/// A relay candidate for a pair, with the distances that ranked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayCandidate {
    /// The peer.
    pub entry: ProximityEntry,
    /// Its distance to A.
    pub to_a: ProximityDistance,
    /// Its distance to B.
    pub to_b: ProximityDistance,
}

impl RelayCandidate {
    /// The farther of its two distances: what [`ProximityTable::relays_between`] minimises.
    pub fn farther(&self) -> ProximityDistance {
        self.to_a.max(self.to_b)
    }

    /// The nearer of its two distances: the tie-break.
    pub fn nearer(&self) -> ProximityDistance {
        self.to_a.min(self.to_b)
    }

    fn rank(&self, other: &RelayCandidate) -> Ordering {
        (
            self.farther(),
            self.nearer(),
            ProximityKey::of(self.entry.addr),
        )
            .cmp(&(
                other.farther(),
                other.nearer(),
                ProximityKey::of(other.entry.addr),
            ))
    }
}

/// Counters of a proximity table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProximityStats {
    /// Peers that took a free slot.
    pub inserted: u64,
    /// Peers refused because the table was full.
    pub refused_full: u64,
    /// Peers refused because another node held their address.
    pub refused_address_taken: u64,
    /// Entries that left after failing [`DHT_FAILURES_MAX`] times in a row.
    pub evicted: u64,
}

/// Peers by socket address, at most [`PROXIMITY_TABLE_MAX`], one address per node.
///
/// Inputs: [`handle_seen`](Self::handle_seen) when a peer answers or asks us (with whether it is
/// directly reachable, from its own probe report or ours), [`handle_failure`](Self::handle_failure)
/// when a contact fails. Queries: [`closest`](Self::closest) to one address and
/// [`relays_between`](Self::relays_between) two.
#[derive(Clone, Debug, Default)]
pub struct ProximityTable {
    entries: BTreeMap<ProximityKey, ProximityEntry>,
    by_node: HashMap<NodeId, ProximityKey>,
    stats: ProximityStats,
}

impl ProximityTable {
    /// An empty table.
    pub fn new() -> ProximityTable {
        ProximityTable::default()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters so far.
    pub fn stats(&self) -> ProximityStats {
        self.stats
    }

    /// The entry at `addr`.
    pub fn get(&self, addr: SocketAddr) -> Option<&ProximityEntry> {
        self.entries.get(&ProximityKey::of(addr))
    }

    /// The entry of `node`.
    pub fn entry_of(&self, node: &NodeId) -> Option<&ProximityEntry> {
        self.by_node.get(node).and_then(|key| self.entries.get(key))
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = &ProximityEntry> {
        self.entries.values()
    }

    /// `node` answered or asked us from `addr`; `reachable` says whether it takes unsolicited
    /// datagrams (it can relay).
    pub fn handle_seen(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        node: NodeId,
        reachable: bool,
    ) -> ProximityInsert {
        let key = ProximityKey::of(addr);
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.node != node {
                self.stats.refused_address_taken += 1;
                return ProximityInsert::AddressTaken { holder: entry.node };
            }
            entry.last_seen = now;
            entry.reachable = reachable;
            entry.failures = 0;
            return ProximityInsert::Refreshed;
        }
        let entry = ProximityEntry {
            addr,
            node,
            reachable,
            first_seen: now,
            last_seen: now,
            failures: 0,
        };
        if let Some(old) = self.by_node.get(&node).copied() {
            // The node changed address (a new NAT mapping, a restart): it keeps its age.
            let from = self.entries.remove(&old).map(|old| {
                self.entries.insert(
                    key,
                    ProximityEntry {
                        first_seen: old.first_seen,
                        ..entry
                    },
                );
                old.addr
            });
            self.by_node.insert(node, key);
            return match from {
                Some(from) => ProximityInsert::Moved { from },
                None => {
                    // The index pointed nowhere; repair it as a fresh insertion.
                    self.entries.insert(key, entry);
                    self.stats.inserted += 1;
                    ProximityInsert::Inserted
                }
            };
        }
        if self.entries.len() >= PROXIMITY_TABLE_MAX {
            self.stats.refused_full += 1;
            return ProximityInsert::Full;
        }
        self.entries.insert(key, entry);
        self.by_node.insert(node, key);
        self.stats.inserted += 1;
        ProximityInsert::Inserted
    }

    /// A contact with `addr` failed; after [`DHT_FAILURES_MAX`] in a row the entry leaves.
    /// Returns whether it left.
    pub fn handle_failure(&mut self, addr: SocketAddr) -> bool {
        let key = ProximityKey::of(addr);
        let Some(entry) = self.entries.get_mut(&key) else {
            return false;
        };
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures < DHT_FAILURES_MAX {
            return false;
        }
        if let Some(entry) = self.entries.remove(&key) {
            self.by_node.remove(&entry.node);
        }
        self.stats.evicted += 1;
        true
    }

    /// Up to `count` entries nearest `addr`, nearest first (an entry at `addr` itself is left
    /// out).
    pub fn closest(&self, addr: SocketAddr, count: usize) -> Vec<ProximityEntry> {
        let target = ProximityKey::of(addr);
        let mut found: Vec<(ProximityDistance, ProximityEntry)> = self
            .entries
            .iter()
            .filter(|(key, _)| **key != target)
            .map(|(key, entry)| (key.distance(&target), *entry))
            .collect();
        found.sort_unstable_by_key(|(distance, _)| *distance);
        found.truncate(count);
        found.into_iter().map(|(_, entry)| entry).collect()
    }

    /// Up to `count` reachable peers closest to both `a` and `b`, best first: ranked by the
    /// farther of their two distances, then the nearer, then address. Entries at `a` or `b`
    /// themselves, and unreachable ones, are never candidates.
    pub fn relays_between(
        &self,
        a: SocketAddr,
        b: SocketAddr,
        count: usize,
    ) -> Vec<RelayCandidate> {
        let (key_a, key_b) = (ProximityKey::of(a), ProximityKey::of(b));
        let mut found: Vec<RelayCandidate> = self
            .entries
            .iter()
            .filter(|(key, entry)| entry.reachable && **key != key_a && **key != key_b)
            .map(|(key, entry)| RelayCandidate {
                entry: *entry,
                to_a: key.distance(&key_a),
                to_b: key.distance(&key_b),
            })
            .collect();
        found.sort_unstable_by(RelayCandidate::rank);
        found.truncate(count);
        found
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use alloy_primitives::Address;
    use proptest::prelude::*;

    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId(Address::repeat_byte(n))
    }

    fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(a, b, c, d), port))
    }

    fn v6(text: &str, port: u16) -> SocketAddr {
        SocketAddr::from((text.parse::<Ipv6Addr>().expect("an IPv6 address"), port))
    }

    const T0: Instant = Instant::from_micros(0);

    #[test]
    fn a_longer_shared_prefix_is_a_shorter_distance() {
        let origin = v4(10, 1, 2, 3, 7000);
        let same_host = v4(10, 1, 2, 3, 7001);
        let same_24 = v4(10, 1, 2, 200, 7000);
        let same_16 = v4(10, 1, 99, 3, 7000);
        let same_8 = v4(10, 200, 2, 3, 7000);
        let elsewhere = v4(192, 168, 2, 3, 7000);
        let distances: Vec<ProximityDistance> = [same_host, same_24, same_16, same_8, elsewhere]
            .iter()
            .map(|addr| proximity_distance(origin, *addr))
            .collect();
        assert!(
            distances.windows(2).all(|pair| pair[0] < pair[1]),
            "{distances:?}"
        );
        assert_eq!(distances[0].shared_prefix_bits(), 128);
        assert_eq!(distances[1].shared_prefix_bits(), 96 + 24);
        assert_eq!(distances[2].shared_prefix_bits(), 96 + 17);
        assert_eq!(
            proximity_distance(origin, origin),
            ProximityDistance { ip: 0, port: 0 }
        );
    }

    #[test]
    fn ipv6_prefixes_count_and_ipv4_stays_among_itself() {
        let origin = v6("2001:db8:aa:1::10", 443);
        let same_64 = v6("2001:db8:aa:1::ffff", 443);
        let same_48 = v6("2001:db8:aa:2::10", 443);
        let same_32 = v6("2001:db8:bb:1::10", 443);
        let ipv4 = v4(10, 0, 0, 1, 443);
        let d = |addr| proximity_distance(origin, addr);
        assert!(d(same_64) < d(same_48) && d(same_48) < d(same_32) && d(same_32) < d(ipv4));
        assert!(d(same_64).shared_prefix_bits() >= 64);
        // IPv4 and its mapped IPv6 form are one host.
        let mapped = v6("::ffff:10.0.0.1", 443);
        assert_eq!(ProximityKey::of(ipv4), ProximityKey::of(mapped));
        // Any two IPv4 hosts are nearer each other than either is to native IPv6.
        let far_v4 = v4(203, 0, 113, 9, 1);
        assert!(proximity_distance(ipv4, far_v4) < proximity_distance(ipv4, origin));
    }

    #[test]
    fn the_relay_is_the_one_close_to_both() {
        let mut table = ProximityTable::new();
        let a = v4(10, 7, 1, 20, 9000);
        let b = v4(10, 7, 2, 30, 9000);
        // Next door to A, far from B; next door to B, far from A; between both; far from all.
        table.handle_seen(T0, v4(10, 7, 1, 21, 9000), node(1), true);
        table.handle_seen(T0, v4(10, 7, 2, 31, 9000), node(2), true);
        table.handle_seen(T0, v4(10, 7, 0, 1, 9000), node(3), true);
        table.handle_seen(T0, v4(172, 16, 0, 1, 9000), node(4), true);
        // The very best spot, but not reachable: never a relay.
        table.handle_seen(T0, v4(10, 7, 3, 1, 9000), node(5), false);
        // A and B themselves are in the table too.
        table.handle_seen(T0, a, node(6), true);
        table.handle_seen(T0, b, node(7), true);
        let picks: Vec<NodeId> = table
            .relays_between(a, b, 8)
            .iter()
            .map(|candidate| candidate.entry.node)
            .collect();
        // 10.7.0.1 is the only reachable one whose farther distance stays inside 10.7.0.0/22's
        // low half (0.0.2.31 from B); next door to A and next door to B tie on both distances
        // (0.0.3.11 and 0.0.0.1), so the lower address goes first; 172.16/12 comes last.
        assert_eq!(picks, vec![node(3), node(1), node(2), node(4)]);
        let ranked = table.relays_between(a, b, 2);
        assert!(ranked[0].farther() < ranked[1].farther());
        assert_eq!(
            ranked[1].nearer(),
            proximity_distance(a, v4(10, 7, 1, 21, 9000))
        );
    }

    #[test]
    fn a_full_table_keeps_its_long_lived_entries_and_failures_make_room() {
        let mut table = ProximityTable::new();
        for index in 0..PROXIMITY_TABLE_MAX {
            let index = u32::try_from(index).expect("small");
            let addr = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + index), 1));
            let id = NodeId(Address::left_padding_from(&index.to_be_bytes()));
            assert_eq!(
                table.handle_seen(T0, addr, id, true),
                ProximityInsert::Inserted
            );
        }
        let newcomer = v4(192, 0, 2, 1, 1);
        assert_eq!(
            table.handle_seen(T0, newcomer, node(0xee), true),
            ProximityInsert::Full
        );
        assert_eq!(table.stats().refused_full, 1);
        let first = SocketAddr::from((Ipv4Addr::from(0x0a00_0000u32), 1));
        assert!(!table.handle_failure(first));
        // Seen again: its failures reset.
        let first_node = table.get(first).expect("held").node;
        assert_eq!(
            table.handle_seen(T0, first, first_node, true),
            ProximityInsert::Refreshed
        );
        assert!(!table.handle_failure(first));
        assert!(table.handle_failure(first));
        assert!(table.get(first).is_none() && table.entry_of(&first_node).is_none());
        assert_eq!(
            table.handle_seen(T0, newcomer, node(0xee), true),
            ProximityInsert::Inserted
        );
        assert_eq!(table.len(), PROXIMITY_TABLE_MAX);
    }

    #[test]
    fn one_address_per_node_and_no_takeover_of_an_address() {
        let mut table = ProximityTable::new();
        let home = v4(10, 0, 0, 1, 5);
        let later = Instant::from_micros(1_000);
        assert_eq!(
            table.handle_seen(T0, home, node(1), true),
            ProximityInsert::Inserted
        );
        assert_eq!(
            table.handle_seen(later, home, node(2), true),
            ProximityInsert::AddressTaken { holder: node(1) }
        );
        let moved = v4(10, 0, 0, 9, 5);
        assert_eq!(
            table.handle_seen(later, moved, node(1), false),
            ProximityInsert::Moved { from: home }
        );
        let entry = table.entry_of(&node(1)).expect("held");
        assert_eq!(
            (entry.addr, entry.first_seen, entry.last_seen),
            (moved, T0, later)
        );
        assert!(!entry.reachable && table.get(home).is_none() && table.len() == 1);
    }

    #[test]
    fn closest_orders_by_distance_and_skips_the_address_itself() {
        let mut table = ProximityTable::new();
        let target = v4(10, 0, 5, 5, 80);
        table.handle_seen(T0, target, node(9), true);
        table.handle_seen(T0, v4(10, 0, 9, 1, 80), node(1), true);
        table.handle_seen(T0, v4(10, 0, 5, 6, 80), node(2), false);
        table.handle_seen(T0, v4(11, 0, 5, 5, 80), node(3), true);
        let nodes: Vec<NodeId> = table
            .closest(target, 2)
            .iter()
            .map(|entry| entry.node)
            .collect();
        assert_eq!(nodes, vec![node(2), node(1)]);
    }

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            // Dense: many in one /16, so prefixes are shared.
            (any::<u16>(), any::<u16>()).prop_map(|(low, port)| {
                let [c, d] = low.to_be_bytes();
                v4(10, 9, c, d, port)
            }),
        ]
    }

    proptest! {
        #[test]
        fn the_first_relay_minimises_the_farther_distance(
            peers in proptest::collection::vec((any_addr(), any::<bool>()), 0..64),
            a in any_addr(),
            b in any_addr(),
        ) {
            let mut table = ProximityTable::new();
            for (index, (addr, reachable)) in peers.iter().enumerate() {
                let id = NodeId(Address::left_padding_from(&(index as u64).to_be_bytes()));
                table.handle_seen(T0, *addr, id, *reachable);
            }
            let picks = table.relays_between(a, b, usize::MAX);
            let eligible: Vec<&ProximityEntry> = table
                .entries()
                .filter(|entry| {
                    entry.reachable
                        && ProximityKey::of(entry.addr) != ProximityKey::of(a)
                        && ProximityKey::of(entry.addr) != ProximityKey::of(b)
                })
                .collect();
            prop_assert_eq!(picks.len(), eligible.len());
            if let Some(best) = picks.first() {
                for entry in eligible {
                    let farther = proximity_distance(entry.addr, a).max(proximity_distance(entry.addr, b));
                    prop_assert!(best.farther() <= farther);
                }
            }
            prop_assert!(picks.windows(2).all(|pair| pair[0].rank(&pair[1]) != Ordering::Greater));
        }

        #[test]
        fn distance_is_a_metric_of_shared_prefixes(x in any_addr(), y in any_addr(), z in any_addr()) {
            let (dxy, dxz) = (proximity_distance(x, y), proximity_distance(x, z));
            prop_assert_eq!(dxy, proximity_distance(y, x));
            if dxy.shared_prefix_bits() > dxz.shared_prefix_bits() {
                prop_assert!(dxy < dxz);
            }
        }
    }
}
