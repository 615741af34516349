//! End-to-end tests of Tickrate, one binary.

mod accounting;
mod ingress;
mod sdk;
mod json_rpc;
mod tidy;
mod walking_skeleton;
