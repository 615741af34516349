//! Identifiers and the XOR metric that shards the network.
//!
//! A node ID is the 160-bit Ethereum address of the node's operator key, so the upper chain can
//! check a registration by its signer. Addresses and node IDs live in one 160-bit space: the
//! address state group of an address is the [`GROUP_SIZE`](crate::constants::GROUP_SIZE) node
//! IDs nearest to it by XOR distance.

use std::fmt;

use alloy_primitives::Address;

use crate::codec::{Decode, DecodeError, Decoder, Encode};

/// The 160-bit ID of a node: the Ethereum address of its operator key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub Address);

impl NodeId {
    /// The ID as the address space point it occupies.
    pub fn as_address(&self) -> &Address {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Address> for NodeId {
    fn from(address: Address) -> Self {
        NodeId(address)
    }
}

impl Encode for NodeId {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }
}

impl Decode for NodeId {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(NodeId(decoder.address()?))
    }
}

/// The XOR distance between two points of the 160-bit space; compares as a big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Distance(pub [u8; 20]);

impl Distance {
    /// Index of the highest set bit plus one (0 for distance zero): the Kademlia bucket.
    pub fn bucket(&self) -> u32 {
        for (index, byte) in self.0.iter().enumerate() {
            if *byte != 0 {
                return 160 - (index as u32 * 8 + byte.leading_zeros());
            }
        }
        0
    }
}

/// XOR distance between `a` and `b`.
pub fn xor_distance(a: &Address, b: &Address) -> Distance {
    let mut out = [0u8; 20];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = a.0[index] ^ b.0[index];
    }
    Distance(out)
}

/// The `k` IDs nearest to `target` by XOR distance, nearest first (ties cannot happen between
/// distinct IDs; duplicates in `ids` are returned once).
pub fn k_nearest(target: &Address, ids: &[NodeId], k: usize) -> Vec<NodeId> {
    let mut by_distance: Vec<(Distance, NodeId)> = ids
        .iter()
        .map(|id| (xor_distance(target, &id.0), *id))
        .collect();
    by_distance.sort_unstable();
    by_distance.dedup();
    by_distance.into_iter().take(k).map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> NodeId {
        let mut raw = [0u8; 20];
        raw[19] = byte;
        NodeId(Address::from(raw))
    }

    #[test]
    fn distance_is_symmetric_and_zero_only_to_itself() {
        let a = id(5).0;
        let b = id(9).0;
        assert_eq!(xor_distance(&a, &b), xor_distance(&b, &a));
        assert_eq!(xor_distance(&a, &a).bucket(), 0);
        assert_eq!(xor_distance(&a, &b).bucket(), 4); // 5 ^ 9 = 12 = 0b1100
    }

    #[test]
    fn nearest_are_sorted_by_xor_not_by_value() {
        let ids: Vec<NodeId> = [1u8, 2, 3, 8, 9, 200].iter().map(|b| id(*b)).collect();
        let nearest = k_nearest(&id(8).0, &ids, 3);
        assert_eq!(nearest, vec![id(8), id(9), id(1)]); // distances 0, 1, 9
        assert_eq!(k_nearest(&id(8).0, &ids, 100).len(), ids.len());
    }
}
