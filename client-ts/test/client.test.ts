// The SDK against a running devnet's JSON-RPC gateway. The Rust test
// `client-ffi/tests/typescript.rs` starts the devnet, sets the variables below and runs
// `node --test` here; run by hand, point TICKRATE_RPC_WS_URL at a devnet started with
// `--rpc-listen` and give keys of your own.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import type { Address, Hex } from "viem";

import {
  GAME_ADDRESS,
  Player,
  RpcError,
  TickrateClient,
  movePiece,
  pendingCell,
  slotOf,
  word,
} from "../src/index.js";

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set: these tests run against a devnet (see the header)`);
  }
  return value;
}

const url = required("TICKRATE_RPC_WS_URL");
const chainId = BigInt(required("TICKRATE_CHAIN_ID"));
const testKey = required("TICKRATE_TEST_PRIVATE_KEY") as Hex;
const exampleKey = required("TICKRATE_EXAMPLE_PRIVATE_KEY") as Hex;

let client: TickrateClient;
let player: Player;

before(async () => {
  client = await TickrateClient.connect(url);
  player = await Player.create(client, testKey);
});

after(() => client.close());

test("reads the chain id and an untouched account's pending state", async () => {
  assert.equal(await client.chainId(), chainId);
  const nobody: Address = "0x00000000000000000000000000000000000b0d1e";
  assert.equal(await client.pendingNonce(nobody), 0n);
  assert.equal(await client.pendingStorage(GAME_ADDRESS, slotOf(nobody)), 0n);
});

test("a move is in pending state once acked, then executes, and a new head follows", async () => {
  const heads: bigint[] = [];
  const subscription = await client.subscribeNewHeads((head) => heads.push(BigInt(head.number)));
  const nonce = await client.pendingNonce(player.address);
  assert.equal(player.nextNonce, nonce);

  const sent = await movePiece(player, 21);
  assert.equal(sent.nonce, nonce);
  assert.equal(await pendingCell(client, player.address), 21);
  assert.equal(await client.pendingNonce(player.address), nonce + 1n);

  const receipt = await client.waitForReceipt(sent.hash);
  assert.equal(receipt.status, "0x1", "the move succeeded");
  assert.equal(receipt.transactionHash, sent.hash);
  assert.equal(receipt.from.toLowerCase(), player.address.toLowerCase());
  assert.equal(await client.storageAt(GAME_ADDRESS, slotOf(player.address), "latest"), 21n);

  const blockOfMove = BigInt(receipt.blockNumber);
  const deadline = Date.now() + 60_000;
  while (!heads.some((number) => number >= blockOfMove) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(
    heads.some((number) => number >= blockOfMove),
    `a head at or after block ${blockOfMove} was pushed (got ${heads.join(", ")})`,
  );
  assert.equal(await subscription.unsubscribe(), true);
});

test("moves sent frame after frame take consecutive nonces and each is pending at once", async () => {
  const first = player.nextNonce;
  for (const [index, cell] of [5, 40, 63, 0].entries()) {
    const sent = await movePiece(player, cell);
    assert.equal(sent.nonce, first + BigInt(index));
    assert.equal(await pendingCell(client, player.address), cell);
  }
  assert.equal(await client.pendingNonce(player.address), first + 4n);
});

test("a refused move is a typed error and takes no nonce", async () => {
  const next = player.nextNonce;
  const ahead = await player.signMove({ to: GAME_ADDRESS, data: word(9), gas: 100_000n }, next + 5n);
  await assert.rejects(client.sendRawTransaction(ahead), (error: unknown) => {
    assert.ok(error instanceof RpcError, `an RpcError, not ${String(error)}`);
    assert.equal(error.code, -32000, "invalid input: the nonce");
    return true;
  });

  player.nextNonce = next + 3n; // as if three sends had been lost
  await assert.rejects(movePiece(player, 9), RpcError);
  assert.equal(player.nextNonce, next, "the local nonce is read again from pending state");
  const sent = await movePiece(player, 9);
  assert.equal(sent.nonce, next);
  assert.equal(await pendingCell(client, player.address), 9);
});

test("a cell off the board is refused before anything is signed", async () => {
  const next = player.nextNonce;
  await assert.rejects(movePiece(player, 64), RangeError);
  assert.equal(player.nextNonce, next);
});

test("the example moves a piece and prints the pending board every frame", async () => {
  const frames = 30;
  const example = join(dirname(fileURLToPath(import.meta.url)), "../examples/move-piece.js");
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [example, url, String(frames), exampleKey],
    { timeout: 120_000 },
  );
  const lines = stdout.split("\n");
  const frameLines = lines.filter((line) => line.startsWith("frame"));
  assert.equal(frameLines.length, frames, stdout);
  frameLines.forEach((line, frame) => {
    // Every frame's board is read after that frame's move was acked: the piece stands where
    // the move sent it.
    const target = (frame * 7 + 3) % 64;
    const board = line.split(" | ")[1].replaceAll(" ", "");
    assert.equal(board.indexOf("P"), target, line);
    assert.ok(line.includes(`pending cell ${target} `), line);
  });
  assert.ok(lines.some((line) => line.startsWith(`last move (nonce ${frames - 1}) succeeded`)), stdout);
  const last = ((frames - 1) * 7 + 3) % 64;
  assert.ok(lines.includes(`final | ${finalBoard(last)} | pending cell ${last}`), stdout);
  assert.ok(lines.includes(`pending nonce ${frames}`), stdout);
});

function finalBoard(cell: number): string {
  const cells = Array.from({ length: 64 }, (_, index) => (index === cell ? "P" : "."));
  const rows = [];
  for (let row = 0; row < 8; row++) rows.push(cells.slice(row * 8, row * 8 + 8).join(""));
  return rows.join(" ");
}
