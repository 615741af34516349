//! Node-ID Kademlia, sans-IO: a [`RoutingTable`] of k-buckets that prefers long-lived entries
//! ("stable Kademlia") and an iterative [`Lookup`] with alpha parallel queries.
//!
//! Neither touches a socket, clock or thread: the owner feeds instants and peer answers, and
//! drains the queries to send. [`network::SimulatedNetwork`] plugs many of them together in one
//! deterministic, seeded process for tests and the `dht` benchmark.
//!
//! A node joins by putting a known node in its table and looking up its own ID (the join-time
//! self-lookup), then refreshing every bucket farther than its nearest neighbour with a lookup of
//! a random ID in that bucket ([`RoutingTable::refresh_target`]).
//!
//! Why not `libp2p-kad`: its bucket table is usable alone, but lookups (`ClosestPeersIter`) sit
//! behind a crate-private API and the rest assumes a libp2p `Swarm`, peer IDs of multihashes and
//! its own wire format; the pieces Tickrate needs are a few hundred lines, here, in the same
//! sans-IO shape as the KCP core.

mod lookup;
pub mod network;
pub mod proximity;
mod table;
#[cfg(test)]
mod tests;

pub use lookup::{Lookup, LookupOutcome};
pub use proximity::{
    ProximityDistance, ProximityEntry, ProximityInsert, ProximityKey, ProximityStats,
    ProximityTable, RelayCandidate, proximity_distance,
};
pub use table::{Entry, InsertOutcome, RoutingTable, RoutingTableStats};
