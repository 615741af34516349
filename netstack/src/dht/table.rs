//! The k-bucket routing table.

use alloy_primitives::Address;
use primitives::{
    id::{Distance, NodeId, xor_distance},
    time::Instant,
};

use crate::constants::{DHT_BUCKET_SIZE, DHT_BUCKETS, DHT_FAILURES_MAX, DHT_REPLACEMENTS_MAX};

/// One node in a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The node.
    pub id: NodeId,
    /// When the node was first put in the bucket.
    pub first_seen: Instant,
    /// When the node last answered or asked us anything.
    pub last_seen: Instant,
    /// Contacts that failed since it last answered.
    pub failures: u8,
}

/// What [`RoutingTable::handle_seen`] did with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The node was in its bucket already; its `last_seen` moved.
    Refreshed,
    /// The node took a free slot.
    Inserted,
    /// The bucket is full of live entries: the node waits in the replacement cache. `probe` is
    /// the entry least recently seen, which the owner may ping; if that fails,
    /// [`RoutingTable::handle_failure`] gives its slot to the newest waiting node.
    Cached {
        /// The least recently seen entry of the full bucket.
        probe: NodeId,
    },
    /// The node is this table's own ID and is never stored.
    Local,
}

/// Counters of a routing table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoutingTableStats {
    /// Nodes that took a free slot.
    pub inserted: u64,
    /// Nodes put in a replacement cache because their bucket was full.
    pub cached: u64,
    /// Entries that left their bucket after failing.
    pub evicted: u64,
    /// Waiting nodes promoted into a freed slot.
    pub promoted: u64,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    /// At most [`DHT_BUCKET_SIZE`], in the order they entered: the oldest first.
    entries: Vec<Entry>,
    /// At most [`DHT_REPLACEMENTS_MAX`], the newest last.
    replacements: Vec<(NodeId, Instant)>,
}

/// A Kademlia routing table of 160 buckets of k = [`DHT_BUCKET_SIZE`] entries.
///
/// Bucket `i` holds nodes whose XOR distance from the local ID has its highest set bit at `i`
/// (so bucket 159 is the far half of the space). A full bucket keeps its entries, however new
/// the candidate: long-lived nodes are the likeliest to stay (Maymounkov and Mazières, §2.2), and
/// an attacker cannot flush a bucket by announcing fresh IDs. A candidate waits in the bucket's
/// replacement cache until an entry fails.
///
/// Inputs: [`RoutingTable::handle_seen`] when a node answers or asks us,
/// [`RoutingTable::handle_failure`] when a contact fails. Queries:
/// [`RoutingTable::closest`], [`RoutingTable::refresh_target`].
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local: NodeId,
    buckets: Vec<Bucket>,
    stats: RoutingTableStats,
}

impl RoutingTable {
    /// An empty table for the node `local`.
    pub fn new(local: NodeId) -> Self {
        RoutingTable {
            local,
            buckets: vec![Bucket::default(); DHT_BUCKETS],
            stats: RoutingTableStats::default(),
        }
    }

    /// The local node's ID.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The counters.
    pub fn stats(&self) -> RoutingTableStats {
        self.stats
    }

    /// Nodes in buckets (not counting replacement caches).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|bucket| bucket.entries.len()).sum()
    }

    /// Whether no bucket holds a node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is in a bucket.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.bucket_index(id)
            .is_some_and(|index| self.buckets[index].entries.iter().any(|e| e.id == *id))
    }

    /// The entries of bucket `index` (0..160), oldest first.
    pub fn bucket(&self, index: usize) -> &[Entry] {
        &self.buckets[index].entries
    }

    /// The bucket index of `id`, or `None` for the local ID.
    pub fn bucket_index(&self, id: &NodeId) -> Option<usize> {
        let bucket = xor_distance(&self.local.0, &id.0).bucket();
        (bucket > 0).then(|| bucket as usize - 1)
    }

    /// Records that `id` answered us or asked us something at `now`.
    pub fn handle_seen(&mut self, now: Instant, id: NodeId) -> InsertOutcome {
        let Some(index) = self.bucket_index(&id) else {
            return InsertOutcome::Local;
        };
        let bucket = &mut self.buckets[index];
        if let Some(entry) = bucket.entries.iter_mut().find(|e| e.id == id) {
            entry.last_seen = now;
            entry.failures = 0;
            return InsertOutcome::Refreshed;
        }
        if bucket.entries.len() < DHT_BUCKET_SIZE {
            bucket.replacements.retain(|(waiting, _)| *waiting != id);
            bucket.entries.push(Entry {
                id,
                first_seen: now,
                last_seen: now,
                failures: 0,
            });
            self.stats.inserted += 1;
            return InsertOutcome::Inserted;
        }
        bucket.replacements.retain(|(waiting, _)| *waiting != id);
        if bucket.replacements.len() == DHT_REPLACEMENTS_MAX {
            bucket.replacements.remove(0);
        }
        bucket.replacements.push((id, now));
        assert!(bucket.replacements.len() <= DHT_REPLACEMENTS_MAX);
        self.stats.cached += 1;
        let probe = bucket
            .entries
            .iter()
            .min_by_key(|e| e.last_seen)
            .expect("a full bucket has entries")
            .id;
        InsertOutcome::Cached { probe }
    }

    /// Records that a contact with `id` failed (no answer in time). The entry leaves its bucket
    /// when a replacement is waiting, or after [`DHT_FAILURES_MAX`] failures in a row; the
    /// newest waiting node takes its slot. Returns whether the entry left.
    pub fn handle_failure(&mut self, id: &NodeId) -> bool {
        let Some(index) = self.bucket_index(id) else {
            return false;
        };
        let bucket = &mut self.buckets[index];
        let replacement_waiting = !bucket.replacements.is_empty();
        let Some(position) = bucket.entries.iter().position(|e| e.id == *id) else {
            bucket.replacements.retain(|(waiting, _)| waiting != id);
            return false;
        };
        let entry = &mut bucket.entries[position];
        entry.failures = entry.failures.saturating_add(1);
        if !replacement_waiting && entry.failures < DHT_FAILURES_MAX {
            return false;
        }
        bucket.entries.remove(position);
        self.stats.evicted += 1;
        if let Some((waiting, seen)) = bucket.replacements.pop() {
            bucket.entries.push(Entry {
                id: waiting,
                first_seen: seen,
                last_seen: seen,
                failures: 0,
            });
            self.stats.promoted += 1;
        }
        assert!(bucket.entries.len() <= DHT_BUCKET_SIZE);
        true
    }

    /// Up to `count` nodes of the table nearest to `target`, nearest first. Entries that
    /// failed their last contact come after every live one.
    pub fn closest(&self, target: &Address, count: usize) -> Vec<NodeId> {
        let mut found: Vec<(bool, Distance, NodeId)> = self
            .buckets
            .iter()
            .flat_map(|bucket| bucket.entries.iter())
            .map(|e| (e.failures > 0, xor_distance(target, &e.id.0), e.id))
            .collect();
        found.sort_unstable();
        found.truncate(count);
        found.into_iter().map(|(_, _, id)| id).collect()
    }

    /// The bucket index of the nearest node in the table, if any.
    pub fn nearest_bucket(&self) -> Option<usize> {
        self.buckets
            .iter()
            .position(|bucket| !bucket.entries.is_empty())
    }

    /// A point of bucket `index` made from `random` bytes: its lookup refreshes that bucket.
    pub fn refresh_target(&self, index: usize, random: [u8; 20]) -> Address {
        assert!(index < DHT_BUCKETS);
        // The distance has its highest set bit at `index`: clear the bits above, set it.
        let mut distance = random;
        let bit_from_top = DHT_BUCKETS - 1 - index;
        let byte = bit_from_top / 8;
        let bit = 7 - (bit_from_top % 8);
        distance[..byte].fill(0);
        distance[byte] &= (1u16 << (bit + 1)).wrapping_sub(1) as u8;
        distance[byte] |= 1 << bit;
        let mut out = [0u8; 20];
        for (index, value) in out.iter_mut().enumerate() {
            *value = self.local.0.0[index] ^ distance[index];
        }
        let target = Address::from(out);
        debug_assert_eq!(
            xor_distance(&self.local.0, &target).bucket() as usize,
            index + 1
        );
        target
    }
}
