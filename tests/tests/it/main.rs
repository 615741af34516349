//! End-to-end tests of Tickrate, one binary.

mod tidy;
mod walking_skeleton;
