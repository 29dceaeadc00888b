// LedgerCore Realtime: the payload of every event of the native protocol
// (/ws) and of Socket.IO (/socket.io/), by event name.
// Generated from the event registry by `manage.py export_typescript`; do not
// edit: CI fails when this file differs from what the registry generates.
// Protocol: docs/PROTOCOL.md; the same schemas: GET /api/asyncapi.json.

/** address_analysis (you -> server). Explainable risk analysis of an address: a job with progress, then the score and its signals. */
export interface AddressAnalysisRequest {
  /** ethereum or bitcoin. */
  chain: string;
  /** Validated per chain; EIP-55 checksums are checked. */
  address: string;
  /** 1-5, default 2. */
  hops?: number;
}

/** address_transactions (you -> server). Transactions of an address, newest first, in keyset pages (opaque nextCursor). */
export interface AddressTransactionsRequest {
  /** ethereum or bitcoin. */
  chain: string;
  /** Validated per chain; EIP-55 checksums are checked. */
  address: string;
  limit?: number;
  /** nextCursor of the previous page. */
  cursor?: string | null;
}

/** chat (you -> server). Ask a question in plain language; the answer streams, built from real results, with its SQL. */
export interface ChatRequest {
  /** The question, in plain language. */
  message: string;
  /** Chosen by the client (1-64 of A-Z a-z 0-9 . _ : @ -); created on first use. Default: a new one. */
  conversationId?: string;
  /** Fills what the question leaves out. */
  context?: {
    /** e.g. BTC-USD. */
    symbol?: string | null;
    /** ethereum or bitcoin. */
    chain?: string | null;
    /** An address on chain. */
    address?: string | null;
  };
}

/** cross_border_flows (you -> server). Value moved between entities of two countries, by direction, asset and day, with USD totals. */
export interface CrossBorderFlowsRequest {
  /** Two ISO 3166-1 alpha-2 codes, "US-MX" (from US to MX). */
  corridor: string;
  /** A duration (7d, 30d) or {from, to} in epoch ms; at most 366 days. */
  window: string | {
    from: number;
    to: number;
  };
}

/** ping (you -> server). Liveness check. */
export type PingRequest = Record<string, never>;

/** query (you -> server). Run one read-only SELECT over the catalog; rows stream in chunks. */
export interface QueryRequest {
  /** One read-only SELECT. */
  sql: string;
  /** List for ? placeholders or object for :name. */
  params?: unknown | null;
  /** Application to run in and charge; default: the connection's. */
  applicationId?: string;
}

/** query_cancel (you -> server). Stop a running query of yours; it ends with query_error CANCELLED. */
export interface QueryCancelRequest {
  queryId: string;
}

/** query_catalog (you -> server). The tables and columns user SQL may read, and the allowed functions. */
export type QueryCatalogRequest = Record<string, never>;

/** request_market_data (you -> server). Candles of a symbol (all venues merged, or some), at most 10000 per request. */
export interface RequestMarketDataRequest {
  /** BASE-QUOTE, e.g. BTC-USD. */
  symbol: string;
  resolution: "100ms" | "250ms" | "500ms" | "1s" | "5s" | "15s" | "30s" | "1m" | "5m" | "15m" | "30m" | "1h" | "4h" | "1d";
  /** Venue codes; without it, all venues are merged into one series. */
  venues?: string[];
  /** A duration or {from, to}; default the last 500 buckets. At most 10000 candles. */
  window?: string | {
    from: number;
    to: number;
  };
}

/** subscribe (you -> server). Join a room; with since, also recover the events missed since that position. */
export interface SubscribeRequest {
  room: string;
  /** Recover: the room's last position you saw (from an event's envelope or a previous subscribed). Events published since are sent after subscribed, which says recovered true or false. */
  since?: {
    /** Offset of the last event of the room you received. */
    offset: number;
    /** Epoch that offset belongs to. */
    epoch: string;
  };
}

/** unsubscribe (you -> server). Leave a room. */
export interface UnsubscribeRequest {
  room: string;
}

/** address_analysis_completed (server -> you). The job finished; also pushed to user:<userId>. */
export interface AddressAnalysisCompletedEvent {
  jobId: string;
  durationMs: number;
}

/** address_analysis_error (server -> you). The request or its job failed (refunded on INTERNAL/TIMEOUT). */
export interface AddressAnalysisErrorEvent {
  code: "RATE_LIMITED" | "UNAUTHORIZED" | "NOT_FOUND" | "INTERNAL" | "VALIDATION_FAILED" | "TIMEOUT" | "CANCELLED" | "UNAVAILABLE";
  message: string;
  /** Seconds; set where retrying later helps. */
  retryAfter?: number;
  jobId?: string | null;
}

/** address_analysis_progress (server -> you). The job reached a stage; pct never decreases. */
export interface AddressAnalysisProgressEvent {
  jobId: string;
  /** resolve, labels, expand_hop_<n>, exposure, score, explain. */
  stage: string;
  /** Never decreases. */
  pct: number;
}

/** address_analysis_response (server -> you). The result; also pushed (without id) to user:<userId>. Amounts are in the asset's own units. */
export interface AddressAnalysisResponseEvent {
  jobId: string;
  chain: string;
  /** Normal form. */
  address: string;
  hops: number;
  /** False: the address was never seen (no labels, no transfers). */
  known: boolean;
  riskScore: number;
  riskLevel: "low" | "medium" | "high" | "severe";
  clusters: ({
    id: number;
    heuristic: string;
    size: number;
    entity: string | null;
    category: string | null;
  })[];
  signals: ({
    type: "ownership" | "exposure" | "behaviour";
    /** Entity category; null for behaviours. */
    category: string | null;
    /** in: source of funds. */
    direction: "in" | "out" | null;
    severity: "low" | "medium" | "high" | "severe";
    /** 0 ownership, 1 direct, more indirect (minimum hops). */
    hops: number;
    /** Exact, in the asset's units (decimal string). */
    amount: string | null;
    asset: string | null;
    /** Dollar stablecoins only (1 USD each). */
    amountUSD: number | null;
    /** Of the address's flow that way in that asset. */
    share: number | null;
    /** Points of riskScore; contributions add up to it. */
    contribution: number;
    rule: string;
    entity: {
      name: string;
      category: string;
      country: string | null;
    };
    /** The attributed address of the example path. */
    counterparty: string | null;
    sources: {
      /** Where the label comes from, e.g. ofac:ETH. */
      source: string;
      version: string;
      confidence: number;
    }[];
    /** Transaction hashes, hop by hop. */
    path: string[];
    description: string;
  })[];
  exposure: ({
    category: string;
    direction: "in" | "out";
    asset: string;
    /** Asset units (decimal string). */
    direct: string;
    /** Asset units (decimal string). */
    indirect: string;
    directUSD: number | null;
    indirectUSD: number | null;
    minHops: number;
  })[];
  /** Rules triggered. */
  rules: string[];
  /** The neighbourhood was cut at the expansion bounds. */
  truncated: boolean;
  stats: {
    addressesVisited: number;
    edgesRead: number;
  };
}

/** address_analysis_started (server -> you). The analysis job was created; its id. */
export interface AddressAnalysisStartedEvent {
  jobId: string;
}

/** address_transactions_response (server -> you). A page of an address's transactions. */
export interface AddressTransactionsResponseEvent {
  chain: string;
  address: string;
  transactions: ({
    hash: string;
    timestamp: number;
    direction: "in" | "out" | "self";
    counterparty: string | null;
    asset: string;
    /** Net for the address, in the asset's units (decimal string). */
    amount: string;
    blockNumber: number | null;
    /** In the chain's native units. */
    fee: string | null;
  })[];
  /** Opaque; null on the last page. */
  nextCursor: string | null;
}

/** address_transactions_update (server -> you). To address:<chain>:<address>: transactions of the address just ingested from the chain, newest first (entries as in address_transactions_response; at least once: dedupe by hash and asset). */
export interface AddressTransactionsUpdateEvent {
  chain: string;
  /** Normal form, as in the room's name. */
  address: string;
  transactions: ({
    hash: string;
    timestamp: number;
    direction: "in" | "out" | "self";
    counterparty: string | null;
    asset: string;
    /** Net for the address, in the asset's units (decimal string). */
    amount: string;
    blockNumber: number | null;
    /** In the chain's native units. */
    fee: string | null;
  })[];
}

/** application_broadcast (server -> room). A message from an application owner or admin to the application:<applicationId> room (sent with POST /api/applications/<applicationId>/broadcast). */
export interface ApplicationBroadcastEvent {
  applicationId: string;
  message: string;
  /** Optional structured content. */
  data?: { [key: string]: unknown | null };
  /** userId of the sender. */
  sentBy: string;
  /** Epoch milliseconds. */
  timestamp: number;
}

/** chat_error (server -> you). The question could not be answered (UNAUTHORIZED, TIMEOUT, INTERNAL, ...). */
export interface ChatErrorEvent {
  code: "RATE_LIMITED" | "UNAUTHORIZED" | "NOT_FOUND" | "INTERNAL" | "VALIDATION_FAILED" | "TIMEOUT" | "CANCELLED" | "UNAVAILABLE";
  message: string;
  /** Seconds; set where retrying later helps. */
  retryAfter?: number;
  conversationId?: string;
}

/** chat_message (server -> you). A piece of the answer (isFinal false), then the whole answer (isFinal true). */
export interface ChatMessageEvent {
  conversationId: string;
  messageId: string;
  role: "assistant";
  /** Text to append; empty on the final message. */
  delta: string;
  /** The whole answer, on the final message only. */
  content?: string;
  /** True on exactly one message per answer, the last. */
  isFinal: boolean;
}

/** chat_response (server -> you). The answer is complete: message id, tokens and the SQL that produced it. */
export interface ChatResponseEvent {
  conversationId: string;
  messageId: string;
  /** Tokens the translator reports (a model server's usage); builtin: tokens of the streamed answer. */
  tokens: number;
  /** The statement that produced the answer, if one ran. */
  sql?: string;
  /** Its parameters (bound, never interpolated). */
  params?: { [key: string]: unknown | null };
  /** queryId of its run (query_history). */
  queryId?: string;
}

/** chat_stop_typing (server -> you). The assistant stopped; always follows chat_typing. */
export interface ChatStopTypingEvent {
  conversationId: string;
}

/** chat_typing (server -> you). The assistant started working on an answer. */
export interface ChatTypingEvent {
  conversationId: string;
}

/** connected (server -> you). First event of an authenticated connection. */
export interface ConnectedEvent {
  /** The authenticated user id (token subject). */
  userId: string;
  /** This connection's id. */
  sid: string;
  /** Epoch milliseconds. */
  timestamp: number;
  /** The application this connection is bound to. */
  applicationId: string;
}

/** credit_balance_updated (server -> room). The balance after a movement; also sent once right after connected. */
export interface CreditBalanceUpdatedEvent {
  applicationId: string;
  /** The account's ledger sequence; strictly increasing, dedupe by it. */
  sequence: number;
  newBalance: number;
  lifetimeEarned: number;
  lifetimeSpent: number;
}

/** credits_deducted (server -> room). Credits were spent. */
export interface CreditsDeductedEvent {
  applicationId: string;
  /** The account's ledger sequence; strictly increasing, dedupe by it. */
  sequence: number;
  amount: number;
  newBalance: number;
  transactionId: string;
  /** Epoch milliseconds. */
  timestamp: number;
  action: string;
}

/** credits_granted (server -> room). Credits were added. */
export interface CreditsGrantedEvent {
  applicationId: string;
  /** The account's ledger sequence; strictly increasing, dedupe by it. */
  sequence: number;
  amount: number;
  newBalance: number;
  transactionId: string;
  /** Epoch milliseconds. */
  timestamp: number;
  reason: string;
}

/** cross_border_flows_response (server -> you). Flows of a corridor in a window. */
export interface CrossBorderFlowsResponseEvent {
  corridor: string;
  flows: ({
    direction: "outbound" | "inbound";
    /** UTC date, YYYY-MM-DD. */
    day: string;
    asset: string;
    txCount: number;
    /** Asset units (decimal string). */
    volume: string;
    volumeUSD: number | null;
    unpricedTransfers: number;
  })[];
  totalsUSD: {
    outbound: number;
    inbound: number;
    /** outbound - inbound. */
    net: number;
  };
  /** Transfers left out of the USD figures. */
  unpricedTransfers: number;
  /** The window the flows cover. */
  window: {
    /** Epoch ms, inclusive. */
    from: number;
    /** Epoch ms, exclusive. */
    to: number;
  };
}

/** error (server -> you). Standard error envelope. */
export interface ErrorEvent {
  code: "RATE_LIMITED" | "UNAUTHORIZED" | "NOT_FOUND" | "INTERNAL" | "VALIDATION_FAILED" | "TIMEOUT" | "CANCELLED" | "UNAVAILABLE";
  message: string;
  /** Seconds; set where retrying later helps. */
  retryAfter?: number;
}

/** insufficient_credits (server -> you). A chargeable request the balance cannot cover; it was not executed. */
export interface InsufficientCreditsEvent {
  required: number;
  available: number;
  action: string;
}

/** market_chart_initial_data (server -> you). Sent on joining market:<SYMBOL>:<resolution>: recent candles, then live updates follow without gap. */
export interface MarketChartInitialDataEvent {
  symbol: string;
  resolution: "100ms" | "250ms" | "500ms" | "1s" | "5s" | "15s" | "30s" | "1m" | "5m" | "15m" | "30m" | "1h" | "4h" | "1d";
  /** Decimals to show prices with (a chart's price format): set per instrument by staff, else the most any price sent has, at least 2. */
  pricePrecision: number;
  series: {
    /** Bucket open time, epoch ms (inclusive), aligned to the epoch. */
    timestamp: number;
    open: number;
    high: number;
    low: number;
    close: number;
    /** Base quantity traded in the bucket. */
    volume: number;
    /** Trades in the bucket (Binance: aggTrades). */
    trades: number;
  }[];
}

/** market_chart_live_update (server -> room). The forming candle of a market room, at most 10 flushes a second; a flush also carries the final state of every bucket closed since the previous one. Timestamps never go back. */
export interface MarketChartLiveUpdateEvent {
  symbol: string;
  resolution: "100ms" | "250ms" | "500ms" | "1s" | "5s" | "15s" | "30s" | "1m" | "5m" | "15m" | "30m" | "1h" | "4h" | "1d";
  /** Bucket open time: the same as the last bar replaces it. */
  timestamp: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  trades: number;
}

/** market_data_error (server -> you). A market data request failed: unknown symbol or venue (NOT_FOUND), too many candles, or INTERNAL. */
export interface MarketDataErrorEvent {
  code: "RATE_LIMITED" | "UNAUTHORIZED" | "NOT_FOUND" | "INTERNAL" | "VALIDATION_FAILED" | "TIMEOUT" | "CANCELLED" | "UNAVAILABLE";
  message: string;
  /** Seconds; set where retrying later helps. */
  retryAfter?: number;
  /** Set when the window asked for too many candles. */
  maxCandles?: number;
}

/** market_data_response (server -> you). Candles of a symbol at a resolution over a window. */
export interface MarketDataResponseEvent {
  symbol: string;
  resolution: "100ms" | "250ms" | "500ms" | "1s" | "5s" | "15s" | "30s" | "1m" | "5m" | "15m" | "30m" | "1h" | "4h" | "1d";
  /** Decimals to show prices with (a chart's price format): set per instrument by staff, else the most any price sent has, at least 2. */
  pricePrecision: number;
  candles: {
    /** Bucket open time, epoch ms (inclusive), aligned to the epoch. */
    timestamp: number;
    open: number;
    high: number;
    low: number;
    close: number;
    /** Base quantity traded in the bucket. */
    volume: number;
    /** Trades in the bucket (Binance: aggTrades). */
    trades: number;
  }[];
}

/** pong (server -> you). Answer to ping. */
export interface PongEvent {
  /** Epoch milliseconds. */
  timestamp: number;
}

/** query_catalog_response (server -> you). The catalog of tables user SQL may read. */
export interface QueryCatalogResponseEvent {
  tables: ({
    name: string;
    description: string;
    /** private: only the caller's rows. */
    scope: "public" | "private";
    columns: {
      name: string;
      type: string;
      description?: string;
    }[];
  })[];
  functions: string[];
}

/** query_completed (server -> you). The query finished; total rows and whether they were cut. */
export interface QueryCompletedEvent {
  queryId: string;
  durationMs: number;
  totalRows: number;
  /** True exactly when the query had more rows than were sent: cut at the default limit (no LIMIT given) or at the application's row cap (a LIMIT over it); never for a LIMIT within the cap. */
  truncated: boolean;
}

/** query_error (server -> you). The query failed, was refused, cancelled or timed out. */
export interface QueryErrorEvent {
  queryId?: string | null;
  code: string;
  message: string;
  retryAfter?: number;
  line?: number;
  column?: number;
}

/** query_progress (server -> you). Rows processed so far; at most 5 a second after 200 ms. */
export interface QueryProgressEvent {
  queryId: string;
  rowsProcessed: number;
  /** 0-100, never decreasing; null when unknown. */
  pct: number | null;
}

/** query_response (server -> you). A chunk of result rows, in order. */
export interface QueryResponseEvent {
  queryId: string;
  /** Rows as arrays aligned with schema. */
  rows: unknown[];
  schema: {
    name: string;
    type: string;
  }[];
}

/** query_started (server -> you). The query was accepted (or is about to be refused); its id. */
export interface QueryStartedEvent {
  queryId: string;
  estimatedMs: number;
}

/** rate_limit_error (server -> you). A per-connection or per-user throttle was hit. */
export interface RateLimitErrorEvent {
  code: "RATE_LIMITED" | "UNAUTHORIZED" | "NOT_FOUND" | "INTERNAL" | "VALIDATION_FAILED" | "TIMEOUT" | "CANCELLED" | "UNAVAILABLE";
  message: string;
  /** Seconds; set where retrying later helps. */
  retryAfter?: number;
}

/** room_resync (server -> room). Events of the room were lost and cannot be recovered: refetch the room's state. The envelope carries recovered: false and the position the stream continues from. */
export interface RoomResyncEvent {
  room: string;
  /** epoch_changed: the room's history was lost (new epoch); history_gap: events could not be delivered and are no longer in the history. */
  reason: "epoch_changed" | "history_gap";
}

/** subscribed (server -> you). The connection joined the room. */
export interface SubscribedEvent {
  room: string;
  /** Connections in the room across every server process, this one included. */
  subscriberCount: number;
}

/** unsubscribed (server -> you). The connection left the room. */
export interface UnsubscribedEvent {
  room: string;
}

/** user_joined_room (server -> room). A user's first connection joined the room (application: and chat: rooms). */
export interface UserJoinedRoomEvent {
  userId: string;
  room: string;
  /** Epoch milliseconds. */
  joinedAt: number;
}

/** user_left_room (server -> room). A user's last connection left the room (unsubscribe, close or dead server process). */
export interface UserLeftRoomEvent {
  userId: string;
  room: string;
  /** Epoch milliseconds. */
  leftAt: number;
}

/** validation_error (server -> you). A frame or payload failed validation. */
export interface ValidationErrorEvent {
  code: "RATE_LIMITED" | "UNAUTHORIZED" | "NOT_FOUND" | "INTERNAL" | "VALIDATION_FAILED" | "TIMEOUT" | "CANCELLED" | "UNAVAILABLE";
  message: string;
  /** Seconds; set where retrying later helps. */
  retryAfter?: number;
  errors: { [key: string]: string[] };
  /** The event whose payload failed, if known. */
  event: string | null;
}

/** Events you send, by name: their data. */
export interface ClientEvents {
  address_analysis: AddressAnalysisRequest;
  address_transactions: AddressTransactionsRequest;
  chat: ChatRequest;
  cross_border_flows: CrossBorderFlowsRequest;
  ping: PingRequest;
  query: QueryRequest;
  query_cancel: QueryCancelRequest;
  query_catalog: QueryCatalogRequest;
  request_market_data: RequestMarketDataRequest;
  subscribe: SubscribeRequest;
  unsubscribe: UnsubscribeRequest;
}

/** Events the server sends, by name: their data. */
export interface ServerEvents {
  address_analysis_completed: AddressAnalysisCompletedEvent;
  address_analysis_error: AddressAnalysisErrorEvent;
  address_analysis_progress: AddressAnalysisProgressEvent;
  address_analysis_response: AddressAnalysisResponseEvent;
  address_analysis_started: AddressAnalysisStartedEvent;
  address_transactions_response: AddressTransactionsResponseEvent;
  address_transactions_update: AddressTransactionsUpdateEvent;
  application_broadcast: ApplicationBroadcastEvent;
  chat_error: ChatErrorEvent;
  chat_message: ChatMessageEvent;
  chat_response: ChatResponseEvent;
  chat_stop_typing: ChatStopTypingEvent;
  chat_typing: ChatTypingEvent;
  connected: ConnectedEvent;
  credit_balance_updated: CreditBalanceUpdatedEvent;
  credits_deducted: CreditsDeductedEvent;
  credits_granted: CreditsGrantedEvent;
  cross_border_flows_response: CrossBorderFlowsResponseEvent;
  error: ErrorEvent;
  insufficient_credits: InsufficientCreditsEvent;
  market_chart_initial_data: MarketChartInitialDataEvent;
  market_chart_live_update: MarketChartLiveUpdateEvent;
  market_data_error: MarketDataErrorEvent;
  market_data_response: MarketDataResponseEvent;
  pong: PongEvent;
  query_catalog_response: QueryCatalogResponseEvent;
  query_completed: QueryCompletedEvent;
  query_error: QueryErrorEvent;
  query_progress: QueryProgressEvent;
  query_response: QueryResponseEvent;
  query_started: QueryStartedEvent;
  rate_limit_error: RateLimitErrorEvent;
  room_resync: RoomResyncEvent;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  user_joined_room: UserJoinedRoomEvent;
  user_left_room: UserLeftRoomEvent;
  validation_error: ValidationErrorEvent;
}

/** The position a room event (and the answer that joined a room) carries next to event and data. */
export interface RoomPosition {
  /** The room whose position this frame carries. */
  room?: string;
  /** Events: the event's offset in the room. Answers: the room's last offset at the answer. */
  offset?: number;
  /** Run of the room's offsets; a new one means the history was lost. */
  epoch?: string;
  /** Answers to a recovery: true when every missed event follows; false: refetch. */
  recovered?: boolean;
}

export type ClientEventName = keyof ClientEvents;
export type ServerEventName = keyof ServerEvents;

/** A frame you send: {event, data?, id?}. */
export type ClientFrame<E extends ClientEventName = ClientEventName> = {
  [K in E]: { event: K; data?: ClientEvents[K]; id?: string | number };
}[E];

/** A frame the server sends: {event, data, id?} and, for room events, the room's position. */
export type ServerFrame<E extends ServerEventName = ServerEventName> = {
  [K in E]: { event: K; data: ServerEvents[K]; id?: string | number } & RoomPosition;
}[E];
