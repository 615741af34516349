//! A sequencer's key file: its operator key (the sequencer's ID is that key's Ethereum address;
//! it signs block headers) and the seed of its BLS key (PBFT votes and batch certificates). The
//! format and its checks are `primitives::keyfile`'s, the one `shard-node keygen` writes too.

pub use primitives::keyfile::{KeyFileError, OperatorKeys as SequencerKeys};
