//! The demo game: a 64-cell board on which every player moves one piece.
//!
//! The contract is hand-assembled EVM bytecode (no Solidity toolchain needed). Its call data is
//! one 32-byte word, the target cell; a cell of 64 or more reverts, otherwise it stores the cell
//! in the storage slot keyed by the caller's address:
//!
//! ```text
//! 00 PUSH1 0x40      02 PUSH1 0x00   04 CALLDATALOAD   05 LT        06 PUSH1 0x0d   08 JUMPI
//! 09 PUSH1 0x00      0b DUP1         0c REVERT         0d JUMPDEST  0e PUSH1 0x00   10 CALLDATALOAD
//! 11 CALLER          12 SSTORE       13 STOP
//! ```
//!
//! A move's Space Access List names the player (sender) and the game's slot of that player,
//! declaring the cell as the slot's value afterwards.

use primitives::{AccountKey, Bytes, SessionKey, SessionScope, SignedTransaction, session};

pub use client_sdk::demo::{BOARD_CELLS, GAME_ADDRESS, MOVE_GAS_LIMIT, slot_of};

/// The game contract's runtime bytecode.
pub fn game_code() -> Bytes {
    Bytes::from_static(&[
        0x60, 0x40, 0x60, 0x00, 0x35, 0x10, 0x60, 0x0d, 0x57, 0x60, 0x00, 0x80, 0xfd, 0x5b, 0x60,
        0x00, 0x35, 0x33, 0x55, 0x00,
    ])
}

/// A move of `key`'s piece to `cell`, declaring `declared_cell` as the slot's value afterwards
/// (equal to `cell` for an honest move).
pub fn move_with_declaration(
    key: &AccountKey,
    chain_id: u64,
    nonce: u64,
    cell: u64,
    declared_cell: u64,
) -> SignedTransaction {
    client_sdk::demo::game_move_declaring(key.address(), chain_id, nonce, cell, declared_cell)
        .sign(key)
}

/// An honest move of `key`'s piece to `cell`.
pub fn move_piece(key: &AccountKey, chain_id: u64, nonce: u64, cell: u64) -> SignedTransaction {
    move_with_declaration(key, chain_id, nonce, cell, cell)
}

/// A move of the player's piece to `cell`, signed by a session key acting for `player`; the
/// list declares the session's charge and scope besides the move's own items.
pub fn move_piece_with_session(
    player: &AccountKey,
    session: &SessionKey,
    chain_id: u64,
    nonce: u64,
    cell: u64,
) -> SignedTransaction {
    // Built unsigned: signing it with the account key first would cost a secp256k1 signature
    // the session signature replaces.
    let unsigned =
        client_sdk::demo::game_move_declaring(player.address(), chain_id, nonce, cell, cell);
    session::with_session_access(unsigned, player.address(), &session.public_key())
        .expect("a game move costs nothing")
        .sign_with_session(session, player.address())
}

/// The move that lets `session` play `moves` moves of this game for `player` until
/// `expires_after_batch` (signed by the player's account key).
pub fn grant_game_session(
    player: &AccountKey,
    session: &SessionKey,
    chain_id: u64,
    nonce: u64,
    moves: u64,
    expires_after_batch: u64,
) -> SignedTransaction {
    session::grant_transaction(
        chain_id,
        nonce,
        player.address(),
        session.public_key(),
        SessionScope {
            targets: vec![GAME_ADDRESS],
            expires_after_batch,
            moves,
            value: 0,
        },
    )
    .sign(player)
}
