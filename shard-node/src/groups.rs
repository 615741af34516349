//! Which nodes form the address state group of an address, and over which address prefixes a
//! group is the same for every address.
//!
//! The group of an address is the `k` registered nodes nearest to it by XOR distance. The nodes
//! are found by walking the binary trie of the node IDs from the top: where the IDs below the
//! current prefix split on a bit, the address's bit says which side is nearer; if the nearer side
//! holds at least `k` nodes the group lies inside it, otherwise it is all of the nearer side plus
//! the nearest of the other. The walk reads only the address bits at which the IDs split, so:
//!
//! - [`GroupMap::group_of`] costs a walk of about log2(n) + k steps, with no sort of all nodes;
//! - [`GroupMap::constant_over`] tells, for an address prefix, whether every address under it has
//!   the same group: the walk is run with the bits past the prefix unknown, following both sides
//!   wherever it would read one, until two different groups show up.
//!
//! The addresses of one group are therefore a union of address prefixes, and since the account
//! trie of [`execution::DurableState`] is keyed by the raw address bits, each such prefix is a
//! subtree of the trie with its own root. The union need not be a *small* set of prefixes (two
//! node IDs sharing a long prefix make the walk read a deep bit for addresses far from both), so
//! a group's root is computed by descending the stored trie, not by listing prefixes: see
//! [`crate::state`].

use std::{collections::HashMap, sync::Arc};

use primitives::{Address, B256, NodeId};
use upper_chain::group_id;

/// Address bits.
pub const ADDRESS_BITS: usize = 160;

/// Bit `index` of `key`, most significant bit of the first byte first.
pub fn bit(key: &[u8], index: usize) -> u8 {
    (key[index / 8] >> (7 - index % 8)) & 1
}

/// The first `len` bits of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    /// The prefix bits, with every bit past `len` zero: also the lowest address under it.
    bits: [u8; 20],
    len: u8,
}

impl Prefix {
    /// The empty prefix: every address.
    pub const ROOT: Prefix = Prefix {
        bits: [0; 20],
        len: 0,
    };

    /// The first `len` bits of `key` (at most 160).
    pub fn of(key: &[u8; 20], len: usize) -> Prefix {
        let len = len.min(ADDRESS_BITS);
        let mut bits = [0u8; 20];
        for index in 0..len {
            if bit(key, index) == 1 {
                bits[index / 8] |= 0x80 >> (index % 8);
            }
        }
        Prefix {
            bits,
            len: len as u8,
        }
    }

    /// How many bits the prefix fixes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether this is the empty prefix.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lowest address under the prefix (its bits, then zeros).
    pub fn start(&self) -> Address {
        Address::from(self.bits)
    }

    /// Bit `index` of the prefix (zero past its length).
    pub fn bit(&self, index: usize) -> u8 {
        bit(&self.bits, index)
    }

    /// The prefix one bit longer, towards `side` (0 or 1), or `None` past 160 bits.
    pub fn child(&self, side: u8) -> Option<Prefix> {
        if self.len() >= ADDRESS_BITS {
            return None;
        }
        let mut bits = self.bits;
        if side == 1 {
            bits[self.len() / 8] |= 0x80 >> (self.len() % 8);
        }
        Some(Prefix {
            bits,
            len: self.len + 1,
        })
    }

    /// Whether `key` (an address's bytes) starts with this prefix.
    pub fn contains(&self, key: &[u8; 20]) -> bool {
        (0..self.len()).all(|index| bit(key, index) == self.bit(index))
    }
}

/// An address state group: its members, sorted by ID, and its [`group_id`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The members, sorted by ID.
    pub members: Arc<[NodeId]>,
    /// [`group_id`] of the members.
    pub id: B256,
}

impl Group {
    fn new(mut members: Vec<NodeId>) -> Group {
        members.sort_unstable();
        Group {
            id: group_id(&members),
            members: members.into(),
        }
    }
}

/// The groups of one registry snapshot (see the module doc). Answers are cached, so the
/// methods take `&mut self`.
#[derive(Debug)]
pub struct GroupMap {
    /// The node IDs' bytes, sorted and distinct.
    ids: Vec<[u8; 20]>,
    k: usize,
    by_address: HashMap<Address, Group>,
    by_members: HashMap<Vec<[u8; 20]>, Group>,
    over_prefix: HashMap<Prefix, Option<Group>>,
}

/// Addresses whose group is remembered at most; past it the cache starts over.
const ADDRESS_CACHE_MAX: usize = 1 << 18;
/// Prefixes whose answer is remembered at most; past it the cache starts over.
const PREFIX_CACHE_MAX: usize = 1 << 16;

impl GroupMap {
    /// The groups of `k` nearest nodes among `ids` (at least `k` distinct IDs for full groups).
    pub fn new(ids: &[NodeId], k: usize) -> GroupMap {
        let mut sorted: Vec<[u8; 20]> = ids.iter().map(|id| id.0.0.0).collect();
        sorted.sort_unstable();
        sorted.dedup();
        GroupMap {
            ids: sorted,
            k: k.max(1),
            by_address: HashMap::new(),
            by_members: HashMap::new(),
            over_prefix: HashMap::new(),
        }
    }

    /// The group of `address`.
    pub fn group_of(&mut self, address: &Address) -> Group {
        if let Some(group) = self.by_address.get(address) {
            return group.clone();
        }
        let mut walk = Walk {
            prefix: Prefix::of(&address.0.0, ADDRESS_BITS),
            chosen: Vec::with_capacity(self.k),
            found: Vec::new(),
            limit: 2,
        };
        walk.nearest(&self.ids, 0, self.k);
        let group = self.intern(walk.found.swap_remove(0));
        if self.by_address.len() >= ADDRESS_CACHE_MAX {
            self.by_address.clear();
        }
        self.by_address.insert(*address, group.clone());
        group
    }

    /// The group every address under `prefix` shares, or `None` if they do not all share one.
    pub fn constant_over(&mut self, prefix: &Prefix) -> Option<Group> {
        if let Some(answer) = self.over_prefix.get(prefix) {
            return answer.clone();
        }
        let mut walk = Walk {
            prefix: *prefix,
            chosen: Vec::with_capacity(self.k),
            found: Vec::new(),
            limit: 2,
        };
        walk.nearest(&self.ids, 0, self.k);
        let answer = match walk.found.len() {
            1 => Some(self.intern(walk.found.swap_remove(0))),
            _ => None,
        };
        if self.over_prefix.len() >= PREFIX_CACHE_MAX {
            self.over_prefix.clear();
        }
        self.over_prefix.insert(*prefix, answer.clone());
        answer
    }

    /// Every group that holds some address, in no particular order.
    pub fn all_groups(&mut self) -> Vec<Group> {
        let mut walk = Walk {
            prefix: Prefix::ROOT,
            chosen: Vec::with_capacity(self.k),
            found: Vec::new(),
            limit: usize::MAX,
        };
        walk.nearest(&self.ids, 0, self.k);
        walk.found
            .into_iter()
            .map(|members| self.intern(members))
            .collect()
    }

    fn intern(&mut self, members: Vec<[u8; 20]>) -> Group {
        self.by_members
            .entry(members)
            .or_insert_with_key(|members| {
                Group::new(
                    members
                        .iter()
                        .map(|raw| NodeId(Address::from(*raw)))
                        .collect(),
                )
            })
            .clone()
    }
}

/// The walk down the trie of node IDs that picks the `k` nearest to the addresses under
/// `prefix`: where it needs a bit past the prefix it follows both sides, and it stops once it
/// has found `limit` different groups.
struct Walk {
    prefix: Prefix,
    /// The nodes chosen on the current path.
    chosen: Vec<[u8; 20]>,
    /// The distinct groups found (each sorted).
    found: Vec<Vec<[u8; 20]>>,
    /// How many distinct groups end the walk.
    limit: usize,
}

impl Walk {
    /// Adds the `k` nodes of `ids` (sorted, sharing their first `depth` bits) nearest to the
    /// address; returns whether the walk is done.
    fn nearest(&mut self, ids: &[[u8; 20]], depth: usize, k: usize) -> bool {
        if ids.len() <= k {
            let mark = self.chosen.len();
            self.chosen.extend_from_slice(ids);
            let mut group = self.chosen.clone();
            group.sort_unstable();
            self.chosen.truncate(mark);
            if !self.found.contains(&group) {
                self.found.push(group);
            }
            return self.found.len() >= self.limit;
        }
        // More than k >= 1 distinct IDs: the first and last differ, and since the IDs are sorted
        // every one shares the bits before the first bit where those two differ.
        let (first, last) = (&ids[0], &ids[ids.len() - 1]);
        let split_bit = (depth..ADDRESS_BITS)
            .find(|index| bit(first, *index) != bit(last, *index))
            .unwrap_or(ADDRESS_BITS - 1);
        let split = ids.partition_point(|id| bit(id, split_bit) == 0);
        let (low, high) = ids.split_at(split);
        let sides: &[u8] = if split_bit < self.prefix.len() {
            if self.prefix.bit(split_bit) == 0 {
                &[0]
            } else {
                &[1]
            }
        } else {
            &[0, 1]
        };
        for side in sides {
            let (near, far) = if *side == 0 { (low, high) } else { (high, low) };
            let done = if near.len() >= k {
                self.nearest(near, split_bit + 1, k)
            } else {
                let mark = self.chosen.len();
                self.chosen.extend_from_slice(near);
                let done = self.nearest(far, split_bit + 1, k - near.len());
                self.chosen.truncate(mark);
                done
            };
            if done {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountKey, k_nearest};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn ids(count: u64, seed: u64) -> Vec<NodeId> {
        (0..count)
            .map(|index| NodeId(AccountKey::from_seed(seed * 1_000 + index).address()))
            .collect()
    }

    fn random_address(rng: &mut StdRng) -> Address {
        let mut raw = [0u8; 20];
        rng.fill(&mut raw);
        Address::from(raw)
    }

    fn sorted_k_nearest(address: &Address, ids: &[NodeId], k: usize) -> Vec<NodeId> {
        let mut expected = k_nearest(address, ids, k);
        expected.sort_unstable();
        expected
    }

    /// A random address under `prefix`.
    fn under(prefix: &Prefix, rng: &mut StdRng) -> Address {
        let mut raw = random_address(rng).0.0;
        for index in 0..prefix.len() {
            let mask = 0x80 >> (index % 8);
            if prefix.bit(index) == 1 {
                raw[index / 8] |= mask;
            } else {
                raw[index / 8] &= !mask;
            }
        }
        Address::from(raw)
    }

    fn check(ids: &[NodeId], k: usize, rng: &mut StdRng) {
        let mut map = GroupMap::new(ids, k);
        let mut probes: Vec<Address> = (0..1_000).map(|_| random_address(rng)).collect();
        probes.extend(ids.iter().map(|id| id.0));
        for address in &probes {
            let group = map.group_of(address);
            assert_eq!(&group.members[..], sorted_k_nearest(address, ids, k));
            assert_eq!(group.id, group_id(&group.members));
        }
        // Over a prefix: a constant answer holds for every address under it, and a mixed one is
        // shown mixed by some pair of addresses (found by sampling, for short prefixes).
        let mut constant = 0;
        for _ in 0..300 {
            let address = random_address(rng);
            let len = rng.random_range(0..=12);
            let prefix = Prefix::of(&address.0.0, len);
            match map.constant_over(&prefix) {
                Some(group) => {
                    constant += 1;
                    for _ in 0..50 {
                        let inside = under(&prefix, rng);
                        assert_eq!(&group.members[..], sorted_k_nearest(&inside, ids, k));
                    }
                }
                None => {
                    let first = sorted_k_nearest(&under(&prefix, rng), ids, k);
                    let differs =
                        (0..2_000).any(|_| sorted_k_nearest(&under(&prefix, rng), ids, k) != first);
                    assert!(differs, "prefix {prefix:?} called mixed");
                }
            }
        }
        if ids.len() > k {
            assert_eq!(map.constant_over(&Prefix::ROOT), None);
            assert!(constant > 0, "some short prefixes have one group");
        }
        // A whole address is a prefix with one group: its own.
        let address = random_address(rng);
        assert_eq!(
            map.constant_over(&Prefix::of(&address.0.0, ADDRESS_BITS)),
            Some(map.group_of(&address))
        );
    }

    #[test]
    fn groups_are_the_k_nearest_nodes_and_prefixes_know_when_they_share_one() {
        let mut rng = StdRng::seed_from_u64(7);
        for (count, seed) in [(8, 1), (9, 2), (16, 3), (24, 4), (64, 5)] {
            check(&ids(count, seed), 8, &mut rng);
        }
        // IDs that share 152 leading bits: the walk reads deep bits for every address.
        let clustered: Vec<NodeId> = (0..12u8)
            .map(|index| {
                let mut raw = [0xabu8; 20];
                raw[19] = index;
                NodeId(Address::from(raw))
            })
            .collect();
        let mut map = GroupMap::new(&clustered, 3);
        for _ in 0..500 {
            let address = random_address(&mut rng);
            assert_eq!(
                &map.group_of(&address).members[..],
                sorted_k_nearest(&address, &clustered, 3)
            );
        }
        assert_eq!(map.constant_over(&Prefix::of(&[0u8; 20], 100)), None);
    }

    #[test]
    fn exactly_k_nodes_make_one_group_over_everything() {
        let ids = ids(8, 9);
        let mut map = GroupMap::new(&ids, 8);
        let group = map.constant_over(&Prefix::ROOT).expect("one group");
        assert_eq!(group.members.len(), 8);
    }
}
