//! End-to-end tests of Tickrate, one binary.

mod accounting;
mod ingress;
mod json_rpc;
mod operators;
mod preconfirmations;
mod prometheus;
mod retractions;
mod sdk;
mod sequencer_epochs;
mod sequencer_restart;
mod shard_groups_netstack;
mod strong_da;
mod tidy;
mod typescript_sdk;
mod walking_skeleton;
