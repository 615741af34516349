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
//! # On the network
//! [`DhtNode`] runs the table and lookups over real datagrams, still without IO: every message
//! is a [`wire::DhtMessage`] (ping, pong, find-node, nodes; versioned, bounded, typed errors)
//! signed by the sender's node key, so a contact's node ID is proven by the key that names it.
//! Requests carry random IDs and are retried on timeouts from the instants the owner passes in;
//! answers from another node than the one asked, or to no request in flight, are dropped and
//! counted. [`crate::driver::Dht`] runs one on a tokio UDP socket.
//!
//! Why signed datagrams rather than RPCs over the secure KCP sessions: a lookup asks a dozen
//! nodes it has never talked to once each. Over sessions, each would cost a Noise handshake
//! (1.5 round trips, three Diffie-Hellman operations and a binding signature on each side)
//! and session state on both ends for one request and one answer; a signed datagram costs one
//! signature and one recovery and no state. DHT messages are public (node IDs and addresses),
//! so they need authenticity, not secrecy. Replays are bounded by naming the recipient and the
//! request ID in the signed bytes, and a requester enters a table only after answering a ping
//! sent back to its address.
//!
//! Why not `libp2p-kad`: it can run with k = 8, but its `KBucketsTable` evicts the oldest entry
//! when a pending node's probe times out and has no replacement cache of our shape, lookups
//! (`ClosestPeersIter`) sit behind a crate-private API, and the rest assumes a libp2p `Swarm`,
//! peer IDs of multihashes (not 160-bit Ethereum addresses, whose XOR distance defines
//! Tickrate's address state groups) and its own protobuf wire over libp2p streams; adopting it
//! means adopting libp2p's transport stack beside KCP and QUIC. The pieces Tickrate needs are a
//! few hundred lines, here, in the same sans-IO shape as the KCP core.

mod lookup;
pub mod network;
mod node;
pub mod proximity;
mod table;
#[cfg(test)]
mod tests;
pub mod wire;

pub use lookup::{Lookup, LookupOutcome};
pub use node::{
    DHT_ADDRESSES_MAX, DHT_JOINS_MAX, DHT_LOOKUP_ADDRESSES_MAX, DHT_LOOKUPS_MAX, DHT_OUTBOX_MAX,
    DHT_PENDING_MAX, DHT_PROBE_QUIET, DHT_RPC_ATTEMPTS_DEFAULT, DHT_RPC_TIMEOUT_DEFAULT, DhtBusy,
    DhtConfig, DhtEvent, DhtLookupResult, DhtNode, DhtStats, DhtTransmit, JoinId, LookupId,
};
pub use proximity::{
    ProximityDistance, ProximityEntry, ProximityInsert, ProximityKey, ProximityStats,
    ProximityTable, RelayCandidate, proximity_distance,
};
pub use table::{Entry, InsertOutcome, RoutingTable, RoutingTableStats};
pub use wire::{Contact, DhtBody, DhtMessage, DhtWireError};
