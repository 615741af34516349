//! The whole network in one process: the devnet launcher, the demo game, the load generator and
//! the benchmark harness.
//!
//! [`devnet::Devnet`] starts an embedded upper chain, the sequencers (client API on KCP over UDP
//! loopback, PBFT among themselves, block bodies in weak DA on a local directory) and the shard
//! nodes (registered on the upper chain, grouped by XOR distance, executing finalized batches
//! with revm against Space Access Lists). [`load`] drives it with simulated players through the
//! client SDK and measures each finality level from the moment a move is sent. [`operators`]
//! is the shard nodes' accounting: signed usage per epoch and operator metrics per node.

pub mod devnet;
pub mod game;
pub mod load;
pub mod operators;
pub mod report;
pub mod world;
