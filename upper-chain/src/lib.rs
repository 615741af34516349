//! upper-chain
