//! End-to-end tests of Tickrate, one binary.

mod walking_skeleton;
