//! End-to-end tests of Tickrate, one binary.

mod ingress;
mod sdk;
mod tidy;
mod walking_skeleton;
