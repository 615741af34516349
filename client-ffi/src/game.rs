//! The devnet's demo game for C callers: its constants ([`client_sdk::demo`] builds the moves).

/// Cells on the demo game's board; a move to this cell or beyond reverts.
pub const TICKRATE_BOARD_CELLS: u64 = 64;

/// Gas a demo game move may use (an SSTORE to a fresh slot plus the call).
pub const TICKRATE_GAME_MOVE_GAS_LIMIT: u64 = 100_000;

pub(crate) use client_sdk::demo::{GAME_ADDRESS, game_move, slot_of};

// cbindgen reads literals only: the C constants repeat the SDK's, and these checks keep them
// equal.
const _: () = assert!(TICKRATE_BOARD_CELLS == client_sdk::demo::BOARD_CELLS);
const _: () = assert!(TICKRATE_GAME_MOVE_GAS_LIMIT == client_sdk::demo::MOVE_GAS_LIMIT);
