// A player of the devnet's demo game moves its piece once a frame (60 frames a second). It
// follows its piece's cell tick by tick (`tickrate_tickDiff`) and applies one tick diff per
// frame, printing the pending board every frame with the tick and sequence number the
// sequencer's ack gave that frame's move. At the end it waits for the last move's receipt and
// reads the board back from pending state.
//
//   npm run build && node dist/examples/move-piece.js WS_URL [FRAMES] [PRIVATE_KEY]
//
// WS_URL is the devnet's JSON-RPC gateway (`devnet --rpc-listen 127.0.0.1:8545` serves
// ws://127.0.0.1:8545). The default key is a development key: never use it for real funds.

import type { Hex } from "viem";

import {
  GAME_ADDRESS,
  Player,
  type SentMove,
  type TickDiff,
  TickrateClient,
  movePiece,
  pendingCell,
  renderBoard,
  slotOf,
} from "../src/index.js";

const FRAME_MS = 1000 / 60;
const DEVELOPMENT_KEY: Hex = "0x7e57000000000000000000000000000000000000000000000000000000000001";

async function main(): Promise<void> {
  const [url, framesText, key] = process.argv.slice(2);
  if (url === undefined) {
    console.error("usage: move-piece WS_URL [FRAMES] [PRIVATE_KEY]");
    process.exit(2);
  }
  const frames = Math.max(1, Number(framesText ?? "60"));
  const client = await TickrateClient.connect(url);
  const player = await Player.create(client, (key ?? DEVELOPMENT_KEY) as Hex);
  // Diffs queue up as the sequencer ends ticks; the game loop takes one a frame.
  const diffs: TickDiff[] = [];
  const following = await client.subscribeTickDiffs(
    [{ storage: [GAME_ADDRESS, slotOf(player.address)] }],
    (diff) => diffs.push(diff),
  );

  let cell: number | null = null;
  let last: SentMove | null = null;
  const start = performance.now();
  for (let frame = 0; frame < frames; frame++) {
    const target = (frame * 7 + 3) % 64;
    last = await movePiece(player, target);
    const diff = diffs.shift();
    for (const change of diff?.changes ?? []) {
      cell = Number(change.value);
    }
    const label = `frame ${String(frame).padStart(3)} move to ${String(target).padStart(2)}`;
    const board = renderBoard(cell === null ? [] : [cell]);
    const ack = `ack tick ${last.tick} seq ${last.seq}`;
    const source = diff === undefined ? "no diff this frame" : `diff of tick ${diff.tick}`;
    console.log(`${label} | ${board} | pending cell ${cell ?? "none"} | ${ack} | ${source}`);
    const next = start + (frame + 1) * FRAME_MS;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
  }
  await following.unsubscribe();

  if (last !== null) {
    const receipt = await client.waitForReceipt(last.hash);
    const outcome = receipt.status === "0x1" ? "succeeded" : "failed";
    console.log(
      `last move (nonce ${last.nonce}) ${outcome} in block ${BigInt(receipt.blockNumber)}`,
    );
  }
  const final = await pendingCell(client, player.address);
  console.log(`final | ${renderBoard([final])} | pending cell ${final}`);
  console.log(`pending nonce ${await client.pendingNonce(player.address)}`);
  client.close();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
