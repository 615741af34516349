//! shard-node
