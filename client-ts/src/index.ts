// Tickrate's client SDK for browser and Node games, over a sequencer's Web3-compatible JSON-RPC
// gateway on WebSocket: read pending state (the sequencer's optimistic view, a move's writes
// visible as soon as it is acked), send moves signed as EIP-1559 transactions with local
// nonces (each ack keyed by tick and sequence number), follow chosen items tick by tick, wait
// for receipts, follow new heads.

export {
  type AckedTransaction,
  type BlockHeader,
  type BlockTag,
  type Call,
  type ConnectOptions,
  type ItemValue,
  type PendingItem,
  Player,
  type Receipt,
  type SentMove,
  type Subscription,
  type TickDiff,
  TickrateClient,
  word,
} from "./client.js";
export {
  BOARD_CELLS,
  GAME_ADDRESS,
  MOVE_GAS_LIMIT,
  movePiece,
  pendingCell,
  renderBoard,
  slotOf,
} from "./game.js";
export {
  ConnectionClosedError,
  RpcConnection,
  RpcError,
  TimeoutError,
  type WebSocketFactory,
  type WebSocketLike,
} from "./rpc.js";
