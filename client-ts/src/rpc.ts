// JSON-RPC 2.0 over one WebSocket: requests matched to answers by id, and `eth_subscription`
// notifications routed to their subscription's listener. Works with the browser's WebSocket and
// with the `ws` package in Node (Node 20 has no stable global WebSocket).

/** The part of the WHATWG WebSocket interface this client uses (`ws` implements it too). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: unknown) => void) | null;
}

/** Opens a WebSocket to a URL: the browser's, `ws` in Node, or the caller's own. */
export type WebSocketFactory = (url: string) => WebSocketLike;

/** An error object the gateway answered with (EIP-1474 codes: -32000 invalid input such as a
 * bad nonce, -32003 rejected, -32005 limit exceeded, -32602 invalid params...). */
export class RpcError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(`${method}: ${message} (code ${code})`);
    this.name = "RpcError";
  }
}

/** The connection closed before the answer came. */
export class ConnectionClosedError extends Error {
  constructor(message = "the connection to the gateway is closed") {
    super(message);
    this.name = "ConnectionClosedError";
  }
}

/** No answer within the time allowed. */
export class TimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TimeoutError";
  }
}

interface Waiting {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Message {
  id?: number;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
  method?: string;
  params?: { subscription?: string; result?: unknown };
}

const OPEN = 1;

/** Notifications kept for subscriptions whose listener is not set yet, at most. */
const EARLY_NOTIFICATIONS_MAX = 1024;

async function defaultFactory(): Promise<WebSocketFactory> {
  const native = (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  if (native !== undefined) {
    return (url) => new native(url);
  }
  const { WebSocket } = await import("ws");
  return (url) => new WebSocket(url) as unknown as WebSocketLike;
}

/** One JSON-RPC session over a WebSocket. */
export class RpcConnection {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private readonly listeners = new Map<string, (result: unknown) => void>();
  /** Notifications that arrived before their subscription's listener was set: a server may
   * push the first one right after the answer to `eth_subscribe`, in the same read, before
   * the caller has the id to listen with. */
  private readonly early = new Map<string, unknown[]>();
  private earlyCount = 0;
  private closedError: Error | null = null;

  private constructor(
    private readonly socket: WebSocketLike,
    private readonly requestTimeoutMs: number,
  ) {
    socket.onmessage = (event) => this.handle(event.data);
    socket.onclose = () => this.fail(new ConnectionClosedError());
    socket.onerror = () => this.fail(new ConnectionClosedError("the WebSocket failed"));
  }

  /** Opens the WebSocket and resolves once it is open. */
  static async open(
    url: string,
    options: { webSocket?: WebSocketFactory; requestTimeoutMs?: number } = {},
  ): Promise<RpcConnection> {
    const factory = options.webSocket ?? (await defaultFactory());
    const socket = factory(url);
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new ConnectionClosedError(`cannot open ${url}`));
      socket.onclose = () => reject(new ConnectionClosedError(`${url} closed while opening`));
    });
    return new RpcConnection(socket, options.requestTimeoutMs ?? 10_000);
  }

  /** Sends a request and resolves with its result, or rejects with an `RpcError`, a
   * `ConnectionClosedError` or a `TimeoutError`. */
  request<T>(method: string, params: unknown[] = []): Promise<T> {
    if (this.closedError !== null || this.socket.readyState !== OPEN) {
      return Promise.reject(this.closedError ?? new ConnectionClosedError());
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new TimeoutError(`${method}: no answer within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.waiting.set(id, {
        method,
        resolve: resolve as (value: unknown) => void,
        reject,
        timer,
      });
      this.socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  /** Routes the notifications of subscription `id` to `listener`, first those that came
   * before it was set. */
  listen(id: string, listener: (result: unknown) => void): void {
    this.listeners.set(id, listener);
    const early = this.early.get(id) ?? [];
    this.early.delete(id);
    this.earlyCount -= early.length;
    for (const result of early) {
      listener(result);
    }
  }

  /** Stops routing a subscription's notifications. */
  unlisten(id: string): void {
    this.listeners.delete(id);
    this.earlyCount -= this.early.get(id)?.length ?? 0;
    this.early.delete(id);
  }

  /** Closes the WebSocket; requests still waiting reject. */
  close(): void {
    this.fail(new ConnectionClosedError("closed by the client"));
    this.socket.close();
  }

  private handle(data: unknown): void {
    let message: Message;
    try {
      message = JSON.parse(typeof data === "string" ? data : String(data)) as Message;
    } catch {
      return; // Not JSON: nothing this client asked for.
    }
    if (message.method === "eth_subscription" && message.params?.subscription !== undefined) {
      const id = message.params.subscription;
      const listener = this.listeners.get(id);
      if (listener !== undefined) {
        listener(message.params.result);
      } else if (this.earlyCount < EARLY_NOTIFICATIONS_MAX) {
        const early = this.early.get(id) ?? [];
        early.push(message.params.result);
        this.early.set(id, early);
        this.earlyCount += 1;
      }
      return;
    }
    if (typeof message.id !== "number") {
      return;
    }
    const waiting = this.waiting.get(message.id);
    if (waiting === undefined) {
      return;
    }
    this.waiting.delete(message.id);
    clearTimeout(waiting.timer);
    if (message.error !== undefined) {
      const { code, message: text, data: detail } = message.error;
      waiting.reject(new RpcError(waiting.method, code, text, detail));
    } else {
      waiting.resolve(message.result);
    }
  }

  private fail(error: Error): void {
    if (this.closedError === null) {
      this.closedError = error;
    }
    for (const [id, waiting] of this.waiting) {
      clearTimeout(waiting.timer);
      waiting.reject(error);
      this.waiting.delete(id);
    }
    this.listeners.clear();
    this.early.clear();
    this.earlyCount = 0;
  }
}
