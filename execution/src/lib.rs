//! Execution of moves: revm over exact Space Access List views.
//!
//! A move names every account and slot it may touch, and the value it expects after each write
//! (its Space Access List, SAL). The group of the move's `to` address runs it against a
//! [`StateSlice`]: the values of exactly the listed items, some held by the group itself
//! ([`InMemoryState::slice`]), others shipped by the groups that hold them. The pieces:
//!
//! - [`slice`](mod@slice): [`StateSlice`] and [`AccountSlice`], the input of one move.
//! - [`database`]: [`SliceDatabase`], the revm `Database` over a slice. A read outside the list
//!   is a typed [`AccessError`], which fails the move with `OutOfAccessList`; the block
//!   beneficiary and the precompiles are readable as empty accounts without being listed.
//! - [`engine`]: [`execute`] runs one move (`transact`, never commit) and then holds what it
//!   changed to the list: undeclared writes and declared values that did not come true fail
//!   the move. A failed move consumes only its nonce. The module doc gives the exact order of
//!   checks, which every group follows so that all reach the same verdict.
//! - [`diff`]: [`StateDiff`], only the values a move changed, sorted.
//! - [`state`]: [`InMemoryState`], the world state of a set of addresses, which applies diffs
//!   and commits to any subset of its addresses ([`InMemoryState::root_where`]), so that a group
//!   commits to exactly its own.
//! - [`schedule`]: [`Schedule`], the conflict-free waves of a batch (deltas on one item never
//!   conflict), and [`execute_parallel`], which runs them on rayon and always equals
//!   [`execute_sequential`], outcome by outcome and in the final state.
//! - [`plain`]: [`execute_plain`], plain revm over the whole state with no list: the reference
//!   the engine is measured and differentially tested against.
//! - [`estimate`](mod@estimate): [`estimate()`], the list a move needs (every loaded item, every
//!   write declared, named items as deltas), found by running it on current state.
//!
//! Declared writes are exact post-values or deltas (signed, wrapping; see
//! [`primitives::DeclaredWrite`]); the engine holds both.
//!
//! - [`trie`]: the compact sparse Merkle trie by key bits (blake3): incremental updates along
//!   the changed paths, the root of any key prefix, inclusion and exclusion proofs.
//! - [`proof`]: what the state commits to ([`AccountRecord`], two levels of trie) and
//!   [`SliceProof`], which shows a shipped [`StateSlice`] is exactly what a root commits to.
//! - [`durable`]: [`DurableState`], the authenticated state on RocksDB, updated per batch in one
//!   atomic write, reopened at its height without re-executing anything.

pub mod batch;
pub mod constants;
pub mod database;
pub mod diff;
pub mod durable;
pub mod engine;
pub mod error;
pub mod estimate;
pub mod plain;
pub mod proof;
pub mod schedule;
pub mod slice;
pub mod state;
pub mod trie;
pub mod wire;

pub use batch::ExecutedBatch;
pub use database::SliceDatabase;
pub use diff::{AccountDiff, StateDiff};
pub use durable::{DurableState, StagedBatch, StateError};
pub use engine::{ExecutionEnv, MoveOutcome, execute};
pub use error::{AccessError, ExecutionError};
pub use estimate::{Estimate, estimate, estimate_move};
pub use plain::{PlainOutcome, StateDatabase, execute_plain};
pub use proof::{AccountProof, AccountRecord, SliceProof, SliceProofError};
pub use schedule::{Schedule, execute_parallel, execute_sequential};
pub use slice::{AccountSlice, StateSlice};
pub use state::{AccountState, InMemoryState};
