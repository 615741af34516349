//! The sequencer: where a player feels the network.
//!
//! A sequencer takes moves from its own clients over KCP, checks their signatures (never
//! executing contracts), admits each sender's next nonce into its local mempool, applies the
//! move's declared writes to [pending state](pending::PendingState) and acks within a frame.
//! Every tick the [packer](packer::Packer) turns the mempool into a block: the body goes to weak
//! DA, only the signed header goes to the other sequencers. The [batcher](batcher::Batcher)
//! decides what the PBFT primary proposes and what replicas accept; a replica prepares a batch
//! only once it holds every body the batch names. Finalized batches go to execution, whose
//! results flow back to correct pending state and to tell players `Executed` or `Failed`.
//!
//! The cores (mempool, pending state, packer, batcher) are sans-IO; [`node`] is the tokio
//! driver that runs them with the client API, weak DA, PBFT and the peer links. [`rpc`] is the
//! Web3-compatible JSON-RPC gateway, which reaches the core the way a client session does.

pub mod batcher;
pub mod bodies;
pub mod config;
pub mod constants;
pub mod epochs;
pub mod identity;
pub mod ingress;
pub mod mempool;
pub mod mesh;
pub mod metrics;
pub mod node;
pub mod packer;
pub mod pending;
pub mod replica_store;
pub mod rpc;
pub mod subscriptions;
pub mod upstream;
pub mod wal;
