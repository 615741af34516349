// The devnet's demo game, as a client sees it: a 64-cell board whose contract stores each
// player's cell in the storage slot keyed by the player's address (`sim::game` in the Rust
// workspace deploys it; the Rust test of this package checks the address and slots agree).

import type { Address, Hex } from "viem";
import { pad } from "viem";

import { type Player, type SentMove, type TickrateClient, word } from "./client.js";

/** Where the devnet deploys the game contract. */
export const GAME_ADDRESS: Address = "0x7ec0000000000000000000000000000000000001";

/** Cells on the board; a move to this cell or beyond reverts. */
export const BOARD_CELLS = 64;

/** Gas a move may use (an SSTORE to a fresh slot plus the call). */
export const MOVE_GAS_LIMIT = 100_000n;

/** The storage slot holding `player`'s cell. */
export function slotOf(player: Address): Hex {
  return pad(player.toLowerCase() as Address, { size: 32 });
}

/** Moves `player`'s piece to `cell`; resolves once the sequencer acked the move. */
export function movePiece(player: Player, cell: number): Promise<SentMove> {
  if (!Number.isInteger(cell) || cell < 0 || cell >= BOARD_CELLS) {
    return Promise.reject(new RangeError(`cell ${cell} is off the ${BOARD_CELLS}-cell board`));
  }
  return player.send({ to: GAME_ADDRESS, data: word(cell), gas: MOVE_GAS_LIMIT });
}

/** The cell of `player`'s piece in the sequencer's pending state (0 before any move). */
export async function pendingCell(client: TickrateClient, player: Address): Promise<number> {
  return Number(await client.pendingStorage(GAME_ADDRESS, slotOf(player)));
}

/** The board as eight rows of eight cells, `P` where a piece stands. */
export function renderBoard(cells: Iterable<number>): string {
  const occupied = new Set(cells);
  const rows: string[] = [];
  for (let row = 0; row < BOARD_CELLS / 8; row++) {
    let text = "";
    for (let column = 0; column < 8; column++) {
      text += occupied.has(row * 8 + column) ? "P" : ".";
    }
    rows.push(text);
  }
  return rows.join(" ");
}
