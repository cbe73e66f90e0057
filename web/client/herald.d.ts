// Types of herald.js (web/client/herald.js), the JavaScript client of herald.

export type TransportName = 'ws' | 'sse' | 'poll'
export type State = 'disconnected' | 'connecting' | 'connected' | 'closed'

/** A topic's place in its history: epoch (16 hex digits) and offset. */
export interface Position { epoch: string; offset: number }

/** An event (docs/api.md, "Events on the wire"). */
export interface HeraldEvent {
  topic: string
  offset: number
  epoch: string
  /** The publisher's event type, when it gave one. */
  type?: string
  /**
   * The payload: the JSON value published; a string for text; a base64
   * string for binary. Over SSE the encoding is not sent: a payload that
   * parses as JSON is that value, any other is the text.
   */
  data: unknown
  /** json, text or binary; not over SSE. */
  encoding?: 'json' | 'text' | 'binary'
  /** When the server stored it (RFC 3339); not over SSE. */
  time?: string
  /** The publisher's headers; not over SSE. */
  headers?: Record<string, string>
  /** A cursor at this event (WebSocket: of its topic; SSE: of the stream); not over long polling. */
  cursor?: string
}

/** Events that cannot be delivered; delivery goes on after resumed. */
export interface Gap {
  topic: string
  reason: 'trimmed' | 'epoch_changed' | 'ahead'
  requested: Position
  resumed: Position
  earliest: number
}

/** A presence change: a client joined or left a topic (ws and sse). */
export interface PresenceChange {
  topic: string
  client: string
  info?: Record<string, unknown>
  since: string
}

export interface Ack {
  topic: string
  offset: number
  epoch: string
  cursor: string
  duplicate: boolean
}

export interface CursorStore {
  load(): string | null | undefined
  save(cursor: string): void
}

export interface Options {
  /** The topics to follow (1–64). */
  topics: string[]
  /** Where to resume: a cursor from any transport (a previous client's cursor, a publish ack's). */
  cursor?: string
  /** Where topics without a position start. Default 'latest'. */
  from?: 'latest' | 'earliest'
  /** A JWT or API key. */
  token?: string
  /** Called for a token before connecting, again before it expires (a JWT's exp) and after a refusal. Throw UnauthorizedError to stop. */
  getToken?: () => string | Promise<string>
  /** Transports to use, best first. Default ['ws', 'sse', 'poll']. */
  transports?: TransportName[]
  /** Presence info others see on topics with presence on (ws, sse). */
  presence?: Record<string, unknown>
  /** Where the cursor is loaded from at start and saved to (batched, and at close). */
  cursorStore?: CursorStore
  /** ms a transport has to deliver its first frame, and a WebSocket to answer a probe. Default 5000. */
  timeout?: number
  /** Reconnect backoff, full jitter, ms. Defaults 500 and 20000. */
  minReconnectDelay?: number
  maxReconnectDelay?: number
  /** The least wait, ms, before a better transport is tried again while on a fallback. Default 5000. */
  upgradeDelay?: number
  /** ms of silence after which a WebSocket is probed. Default 25000. */
  pingInterval?: number
  /** ms of silence after which an SSE stream has stalled (more than twice sse.heartbeat). Default 35000. */
  stallTimeout?: number
  /** Long poll wait, seconds. Default 25. */
  pollWait?: number
  /** Most events per long poll answer. Default 1000. */
  pollLimit?: number
  /** fetch's credentials mode, e.g. 'include' for a herald_token cookie on another origin. */
  credentials?: RequestCredentials
  /** Injections: a WebSocket class (Node), fetch, and the random source of the backoff. */
  WebSocket?: unknown
  fetch?: typeof fetch
  random?: () => number
}

export interface PublishOptions {
  type?: string
  /** An idempotency key: a retry with it stores nothing new. */
  key?: string
  headers?: Record<string, string>
  /** Send data (a string) as text rather than JSON. */
  text?: boolean
}

export interface EventMap {
  event: HeraldEvent
  gap: Gap
  join: PresenceChange
  leave: PresenceChange
  state: State
  transport: TransportName
  error: Error
}

export declare class Herald implements AsyncIterable<HeraldEvent> {
  constructor(url: string | undefined, options: Options)
  readonly options: Required<Pick<Options, 'transports' | 'from' | 'timeout'>> & Options
  readonly state: State
  /** The transport in use, or null. */
  readonly transport: TransportName | null
  /** This connection's client id on the WebSocket (as presence shows it). */
  readonly client: string | null
  /** The error that closed the client, if one did. */
  readonly error: Error | null
  /** The position of every topic followed, as one cursor. */
  readonly cursor: string
  on<K extends keyof EventMap>(name: K, fn: (value: EventMap[K]) => void): () => void
  events(): AsyncIterableIterator<HeraldEvent>
  [Symbol.asyncIterator](): AsyncIterableIterator<HeraldEvent>
  publish(topic: string, data: unknown, options?: PublishOptions): Promise<Ack>
  presence(topic: string): Promise<{ topic: string; count: number; members: PresenceChange[] }>
  close(): void
}

export declare function connect(url: string | undefined, options: Options): Herald
export declare function backoff(step: number, min: number, max: number, random?: () => number): number
export declare function decodeCursor(token: string): Map<string, { e: string; o: number }>
export declare function encodeCursor(positions: Map<string, { e: string; o: number }>): string
export declare function localStorageCursor(key: string, storage?: Storage): CursorStore

export declare class HeraldError extends Error {
  constructor(code: string, message?: string, status?: number)
  readonly code: string
  readonly status?: number
}
export declare class UnauthorizedError extends Error {}
