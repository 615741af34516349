// The game-facing client: pending state, signed moves, receipts and new heads over the
// sequencer's Web3-compatible JSON-RPC gateway.

import type { Address, Hex } from "viem";
import { hexToBigInt, numberToHex } from "viem";
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";

import { RpcConnection, RpcError, TimeoutError, type WebSocketFactory } from "./rpc.js";

/** Which state a read sees: `pending` is the sequencer's optimistic view (acked moves'
 * declared writes over executed state), `latest` the executed state. */
export type BlockTag = "pending" | "latest";

/** A block header pushed by `newHeads` (one block per executed batch). */
export interface BlockHeader {
  number: Hex;
  hash: Hex;
  parentHash: Hex;
  timestamp: Hex;
  [field: string]: unknown;
}

/** A transaction's receipt, once its batch executed. */
export interface Receipt {
  transactionHash: Hex;
  blockNumber: Hex;
  blockHash: Hex;
  from: Address;
  to: Address | null;
  /** `0x1` if the move succeeded, `0x0` if it failed (only its nonce was consumed). */
  status: Hex;
  gasUsed: Hex;
  [field: string]: unknown;
}

/** A transaction the sequencer acked, keyed as game netcode keys acks: the tick by which the
 * sequencer promised it in a block and its place in the sequencer's ack order (from the
 * sequencer's signed preconfirmation; both `null` for a transaction executed already). */
export interface AckedTransaction {
  hash: Hex;
  tick: number | null;
  seq: number | null;
}

/** An item of pending state, as the gateway's extensions name it. */
export type PendingItem =
  | { balance: Address }
  | { nonce: Address }
  | { storage: [Address, Hex] };

/** One changed item of a tick diff and its pending value at the tick's end. */
export interface ItemValue {
  item: PendingItem;
  value: bigint;
}

/** The pending values of followed items that changed in one sequencer tick. */
export interface TickDiff {
  tick: number;
  changes: ItemValue[];
}

/** A live `eth_subscribe` subscription. */
export interface Subscription {
  readonly id: string;
  unsubscribe(): Promise<boolean>;
}

/** How a client connects. */
export interface ConnectOptions {
  /** Opens the WebSocket (default: the global WebSocket, else the `ws` package). */
  webSocket?: WebSocketFactory;
  /** How long one request may wait for its answer (default 10 s). */
  requestTimeoutMs?: number;
}

/** A session with one sequencer's JSON-RPC gateway over WebSocket (`ws://host:port`). */
export class TickrateClient {
  private constructor(readonly rpc: RpcConnection) {}

  /** Opens the WebSocket to the gateway at `url`. */
  static async connect(url: string, options: ConnectOptions = {}): Promise<TickrateClient> {
    return new TickrateClient(await RpcConnection.open(url, options));
  }

  /** Any JSON-RPC method of the gateway. */
  request<T>(method: string, params: unknown[] = []): Promise<T> {
    return this.rpc.request<T>(method, params);
  }

  /** The network's chain id. */
  async chainId(): Promise<bigint> {
    return hexToBigInt(await this.request<Hex>("eth_chainId"));
  }

  /** The number of the newest executed block. */
  async blockNumber(): Promise<bigint> {
    return hexToBigInt(await this.request<Hex>("eth_blockNumber"));
  }

  /** The account's next nonce in the sequencer's pending state. */
  async pendingNonce(address: Address): Promise<bigint> {
    return hexToBigInt(await this.request<Hex>("eth_getTransactionCount", [address, "pending"]));
  }

  /** A storage slot's value (a 32-byte word) at `tag`. */
  async storageAt(address: Address, slot: Hex, tag: BlockTag): Promise<bigint> {
    return hexToBigInt(await this.request<Hex>("eth_getStorageAt", [address, slot, tag]));
  }

  /** A storage slot's value in the sequencer's pending state. */
  pendingStorage(address: Address, slot: Hex): Promise<bigint> {
    return this.storageAt(address, slot, "pending");
  }

  /** Sends a signed transaction; resolves with its hash once the sequencer acked it (it is
   * `Pending`: its writes are in pending state), or rejects with the refusal as an `RpcError`. */
  sendRawTransaction(raw: Hex): Promise<Hex> {
    return this.request<Hex>("eth_sendRawTransaction", [raw]);
  }

  /** Sends a signed transaction like `sendRawTransaction`, and resolves with its hash and the
   * tick and sequence number the sequencer's ack put it at (`tickrate_sendRawTransaction`). */
  async sendRawTransactionKeyed(raw: Hex): Promise<AckedTransaction> {
    return this.request<AckedTransaction>("tickrate_sendRawTransaction", [raw]);
  }

  /** Follows `items` tick by tick (`eth_subscribe("tickrate_tickDiff")`): `onDiff` gets their
   * values at once, then, once per sequencer tick in which any of them changed, the changed
   * ones with their values at the tick's end. A game loop applies one diff per frame. */
  async subscribeTickDiffs(
    items: PendingItem[],
    onDiff: (diff: TickDiff) => void,
  ): Promise<Subscription> {
    const id = await this.request<string>("eth_subscribe", ["tickrate_tickDiff", items]);
    this.rpc.listen(id, (result) => {
      const diff = result as { tick: number; changes: { item: PendingItem; value: Hex }[] };
      onDiff({
        tick: diff.tick,
        changes: diff.changes.map(({ item, value }) => ({ item, value: hexToBigInt(value) })),
      });
    });
    return {
      id,
      unsubscribe: async () => {
        this.rpc.unlisten(id);
        return this.request<boolean>("eth_unsubscribe", [id]);
      },
    };
  }

  /** The receipt of an executed transaction, or `null` before it executes. */
  transactionReceipt(hash: Hex): Promise<Receipt | null> {
    return this.request<Receipt | null>("eth_getTransactionReceipt", [hash]);
  }

  /** Polls until the transaction's receipt exists (its batch executed). */
  async waitForReceipt(
    hash: Hex,
    { timeoutMs = 60_000, pollIntervalMs = 25 }: { timeoutMs?: number; pollIntervalMs?: number } = {},
  ): Promise<Receipt> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const receipt = await this.transactionReceipt(hash);
      if (receipt !== null) {
        return receipt;
      }
      if (Date.now() >= deadline) {
        throw new TimeoutError(`no receipt for ${hash} within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
    }
  }

  /** Calls `onHead` with each new block's header. */
  async subscribeNewHeads(onHead: (head: BlockHeader) => void): Promise<Subscription> {
    const id = await this.request<string>("eth_subscribe", ["newHeads"]);
    this.rpc.listen(id, (result) => onHead(result as BlockHeader));
    return {
      id,
      unsubscribe: async () => {
        this.rpc.unlisten(id);
        return this.request<boolean>("eth_unsubscribe", [id]);
      },
    };
  }

  /** Closes the session. */
  close(): void {
    this.rpc.close();
  }
}

/** A call to sign and send: the gateway estimates its Space Access List. */
export interface Call {
  to: Address;
  data: Hex;
  /** Wei sent (default 0). */
  value?: bigint;
  /** Gas the call may use. */
  gas: bigint;
}

/** A move sent and acked, with the tick and sequence number its ack put it at. */
export interface SentMove {
  hash: Hex;
  nonce: bigint;
  tick: number | null;
  seq: number | null;
}

/** A player's account key, signing EIP-1559 transactions with local nonces so that a game
 * sends its next move without reading the nonce back first. Fees are zero: the network
 * sponsors moves. */
export class Player {
  private constructor(
    private readonly client: TickrateClient,
    private readonly account: PrivateKeyAccount,
    private readonly chainId: bigint,
    /** The nonce the next move takes. */
    public nextNonce: bigint,
  ) {}

  /** A player of the account whose secret key is `privateKey`, its nonce read from pending
   * state. */
  static async create(client: TickrateClient, privateKey: Hex): Promise<Player> {
    const account = privateKeyToAccount(privateKey);
    const [chainId, nonce] = await Promise.all([
      client.chainId(),
      client.pendingNonce(account.address),
    ]);
    return new Player(client, account, chainId, nonce);
  }

  /** The account's address. */
  get address(): Address {
    return this.account.address;
  }

  /** Signs `call` as an EIP-1559 transaction with `nonce`. */
  signMove(call: Call, nonce: bigint): Promise<Hex> {
    return this.account.signTransaction({
      type: "eip1559",
      chainId: Number(this.chainId),
      nonce: Number(nonce),
      to: call.to,
      data: call.data,
      value: call.value ?? 0n,
      gas: call.gas,
      maxFeePerGas: 0n,
      maxPriorityFeePerGas: 0n,
    });
  }

  /** Signs and sends `call` with the next nonce; resolves once the sequencer acked it, with
   * the ack's tick and sequence number. A refused move takes no nonce: the local nonce is read
   * again from pending state, and the refusal rethrown. */
  async send(call: Call): Promise<SentMove> {
    const nonce = this.nextNonce;
    this.nextNonce += 1n;
    try {
      const acked = await this.client.sendRawTransactionKeyed(await this.signMove(call, nonce));
      return { hash: acked.hash, nonce, tick: acked.tick, seq: acked.seq };
    } catch (error) {
      if (error instanceof RpcError) {
        this.nextNonce = await this.client.pendingNonce(this.account.address);
      }
      throw error;
    }
  }
}

/** A 32-byte word of a number, for call data and storage slots. */
export function word(value: number | bigint): Hex {
  return numberToHex(value, { size: 32 });
}
