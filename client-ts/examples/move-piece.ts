// A player of the devnet's demo game moves its piece once a frame (60 frames a second) and
// prints the pending board every frame, read back from the sequencer's pending state: each
// move is there as soon as it is acked, long before its batch executes. At the end it waits
// for the last move's receipt.
//
//   npm run build && node dist/examples/move-piece.js WS_URL [FRAMES] [PRIVATE_KEY]
//
// WS_URL is the devnet's JSON-RPC gateway (`devnet --rpc-listen 127.0.0.1:8545` serves
// ws://127.0.0.1:8545). The default key is a development key: never use it for real funds.

import type { Hex } from "viem";

import { Player, TickrateClient, movePiece, pendingCell, renderBoard } from "../src/index.js";

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
  let heads = 0;
  const subscription = await client.subscribeNewHeads(() => {
    heads += 1;
  });

  let last = null;
  const start = performance.now();
  for (let frame = 0; frame < frames; frame++) {
    const target = (frame * 7 + 3) % 64;
    last = await movePiece(player, target);
    const cell = await pendingCell(client, player.address);
    const label = `frame ${String(frame).padStart(3)} move to ${String(target).padStart(2)}`;
    console.log(`${label} | ${renderBoard([cell])} | pending cell ${cell} | heads ${heads}`);
    const next = start + (frame + 1) * FRAME_MS;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
  }

  if (last !== null) {
    const receipt = await client.waitForReceipt(last.hash);
    const outcome = receipt.status === "0x1" ? "succeeded" : "failed";
    console.log(
      `last move (nonce ${last.nonce}) ${outcome} in block ${BigInt(receipt.blockNumber)}`,
    );
  }
  const cell = await pendingCell(client, player.address);
  console.log(`final | ${renderBoard([cell])} | pending cell ${cell}`);
  console.log(`pending nonce ${await client.pendingNonce(player.address)}`);
  await subscription.unsubscribe();
  client.close();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
