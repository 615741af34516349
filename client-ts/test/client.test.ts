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
  type PendingItem,
  Player,
  RpcError,
  type TickDiff,
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

test("each ack is keyed by the tick and a sequence number rising in send order", async () => {
  const first = await movePiece(player, 11);
  const second = await movePiece(player, 12);
  assert.ok(first.tick !== null && first.seq !== null, `keyed: ${first.tick} ${first.seq}`);
  assert.ok(second.tick !== null && second.seq !== null, `keyed: ${second.tick} ${second.seq}`);
  assert.ok(second.seq > first.seq, "the later move's seq is higher");
  assert.ok(second.tick >= first.tick, "and its tick no earlier");
});

test("a followed item's tick diffs bring its value at each tick's end, tick by tick", async () => {
  const item: PendingItem = { storage: [GAME_ADDRESS, slotOf(player.address)] };
  const diffs: TickDiff[] = [];
  const subscription = await client.subscribeTickDiffs([item], (diff) => diffs.push(diff));
  const until = async (done: () => boolean) => {
    const deadline = Date.now() + 30_000;
    while (!done() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.ok(done(), `in time: ${JSON.stringify(diffs, (_, value) => String(value))}`);
  };
  await until(() => diffs.length > 0);
  assert.deepEqual(diffs[0].changes[0].item, item);
  assert.equal(diffs[0].changes[0].value, BigInt(await pendingCell(client, player.address)));
  await movePiece(player, 44);
  await movePiece(player, 45);
  const hasValue = (value: bigint) => diffs.some((diff) => diff.changes.some((change) => change.value === value));
  await until(() => hasValue(45n));
  assert.ok(
    diffs.every((diff, index) => index === 0 || diff.tick > diffs[index - 1].tick),
    "one diff per tick, in tick order",
  );
  assert.equal(await subscription.unsubscribe(), true);
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
  const diffTicks: number[] = [];
  const seqs: number[] = [];
  let shown = 0;
  frameLines.forEach((line, frame) => {
    const [, boardText, , ack, source] = line.split(" | ");
    // One diff a frame: the board shows the piece where this run's moves up to this frame
    // sent it, or where it stood before the run (the first diff holds the cell then).
    const board = boardText.replaceAll(" ", "");
    const targets = Array.from({ length: frame + 1 }, (_, sent) => (sent * 7 + 3) % 64);
    const at = board.indexOf("P");
    if (targets.includes(at)) shown += 1;
    const acked = /^ack tick (\d+) seq (\d+)$/.exec(ack);
    assert.ok(acked !== null, `the frame's move is acked with a tick and a seq: ${line}`);
    seqs.push(Number(acked[2]));
    const applied = /^diff of tick (\d+)$/.exec(source);
    if (applied !== null) diffTicks.push(Number(applied[1]));
  });
  assert.ok(shown > 0, `the moves reach the board through the diffs:\n${stdout}`);
  assert.ok(diffTicks.length > 0, stdout);
  assert.ok(
    diffTicks.every((tick, index) => index === 0 || tick > diffTicks[index - 1]),
    `one diff per tick, in tick order: ${diffTicks.join(", ")}`,
  );
  assert.ok(
    seqs.every((seq, index) => index === 0 || seq > seqs[index - 1]),
    `ack seqs rise in send order: ${seqs.join(", ")}`,
  );
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
