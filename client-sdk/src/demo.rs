//! The devnet's demo game, as a client sees it: a 64-cell board whose contract stores each
//! player's cell in the storage slot keyed by the player's address (`sim::game` holds its
//! bytecode and deploys it). The examples, the C API and the load generator build their moves
//! here.

use primitives::{
    AccountAccess, Address, B256, Bytes, DeclaredWrite, SlotAccess, SpaceAccessList, Transaction,
    U256,
};

/// Where the devnet deploys the demo game's contract.
pub const GAME_ADDRESS: Address = Address::new([
    0x7e, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01,
]);

/// Cells on the board; a move to this cell or beyond reverts.
pub const BOARD_CELLS: u64 = 64;

/// Gas a move may use (an SSTORE to a fresh slot plus the call).
pub const MOVE_GAS_LIMIT: u64 = 100_000;

/// The storage slot holding `player`'s cell.
pub fn slot_of(player: &Address) -> B256 {
    B256::left_padding_from(player.as_slice())
}

/// A move of `player`'s piece to `cell` (the nonce is the client's to set): its list names the
/// player and the player's slot with the cell it will hold.
pub fn game_move(player: Address, chain_id: u64, cell: u64) -> Transaction {
    game_move_declaring(player, chain_id, 0, cell, cell)
}

/// A move of `player`'s piece to `cell` at `nonce` that declares `declared_cell` as the slot's
/// value afterwards (equal to `cell` for an honest move; another value makes the move fail).
pub fn game_move_declaring(
    player: Address,
    chain_id: u64,
    nonce: u64,
    cell: u64,
    declared_cell: u64,
) -> Transaction {
    game_move_at(GAME_ADDRESS, player, chain_id, nonce, cell, declared_cell)
}

/// [`game_move_declaring`] for a copy of the game deployed at `game` (benchmarks spread many
/// over the address space).
pub fn game_move_at(
    game: Address,
    player: Address,
    chain_id: u64,
    nonce: u64,
    cell: u64,
    declared_cell: u64,
) -> Transaction {
    Transaction {
        chain_id,
        nonce,
        to: game,
        value: U256::ZERO,
        data: Bytes::from(U256::from(cell).to_be_bytes::<32>().to_vec()),
        gas_limit: MOVE_GAS_LIMIT,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(player),
            AccountAccess {
                storage: vec![SlotAccess {
                    slot: slot_of(&player),
                    write: Some(DeclaredWrite::Exact(U256::from(declared_cell))),
                }],
                ..AccountAccess::read(game)
            },
        ]),
    }
}
