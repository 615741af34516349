//! End-to-end tests across the whole network: the test binary is `tests/it/main.rs`, one module
//! per capability. They start the devnet in-process (real KCP sessions on loopback, weak DA on a
//! temporary directory, PBFT among the sequencers, revm in the shard groups) and assert behaviour,
//! never wall-clock time; time limits only bound how long a broken network may hang a test.
