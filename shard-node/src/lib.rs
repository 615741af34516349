//! Execution nodes and their address state groups.
//!
//! Each shard node has an operator key (its node ID is that key's Ethereum address) and a BLS
//! key, and registers both on the upper chain. From the registry snapshot of an epoch every
//! node computes the same groups with no round trip: the group of an address is the 8
//! registered nodes nearest to it by XOR distance, and only those 8 hold its state.
//!
//! A finalized batch is executed move by move in batch order. The group of the move's `to`
//! address executes it: each member builds the move's exact state slice from the items it holds
//! and the slices the other groups ship, and runs [`execution::execute`]; the members' outcomes
//! must agree. Items held by another group are shipped with a proof against that group's root.
//! The move's writes are then applied by every member of every group that holds a written
//! address. After the batch every node stores it on RocksDB ([`state`]); at the commit interval
//! each touched group's members compute the root over exactly the group's own addresses (the
//! account trie of those addresses alone, derived from the prefix subtrees of the node's trie:
//! [`groups`], [`state`]) and agree on it by a BFT round ([`bft`]: `consensus` PBFT among the 8,
//! each vouching only for the root it computed itself); the round's commit certificate goes to
//! the upper chain. A member its group hears nothing from for
//! [`bft::EVICTION_SILENT_ROUNDS`] rounds is voted out by a quorum of the others, and the
//! eviction, with the quorum's certificate and the evidence, is recorded on the upper chain, so
//! the next epoch's groups exclude it ([`bft::eviction`]).
//!
//! [`network::ShardNetwork`] runs the nodes of one devnet in one process, each with its own
//! store; [`driver`] feeds it finalized batches. The group rounds' messages travel over a
//! [`transport::GroupTransport`]: in memory (deterministic, for the sim and unit tests), or over
//! netstack's authenticated KCP sessions, each member on its own socket with its own node key
//! ([`transport::netstack`]). An operator's node starts from a key file
//! ([`identity`]) and a configuration file ([`config`]); the `shard-node` binary generates the
//! keys, registers the node on the upper chain and reports its status there. Finalized
//! batches, each batch's execution record and the genesis go to strong DA with their
//! commitments on the upper chain ([`strong_da`]), from where `shard-node verify` re-executes
//! them ([`verify`]). Clients ask a
//! node for the Space Access List of a move they are about to sign ([`estimator`]); the node
//! runs it over state read from the groups holding it. Nodes join and leave at registry epoch
//! boundaries: the network switches to the new snapshot between batches, handing every account
//! whose group gains members to them, proven by the old group (`network::epoch`). Running
//! each node in its own process, with that handover over QUIC, is the rest of the [shard-node]
//! work.

pub mod bft;
pub mod config;
pub mod driver;
pub mod estimator;
pub mod groups;
pub mod identity;
pub mod metrics;
pub mod network;
pub mod node;
pub mod record;
pub mod state;
pub mod strong_da;
pub mod transport;
pub mod verify;

pub use network::{ShardError, ShardNetwork};
pub use node::ShardNode;
