// The native protocol over one WebSocket: request ids, handlers per event,
// positions per room (offset/epoch) for recovery, automatic reconnection.

const CLOSE_MESSAGES = {
  1001: "The server is restarting; reconnecting.",
  1006: "The connection was lost; reconnecting.",
  1009: "A message was too large for the server; reconnecting.",
  1011: "The server could not set up the connection; reconnecting.",
  4008: "The connection fell behind (slow consumer); reconnecting.",
  4401: "The token was refused: sign in again with a valid token.",
};

export class Connection {
  constructor(token, { onStatus, onNotice } = {}) {
    this.token = token;
    this.handlers = new Map();
    this.positions = new Map(); // room -> {offset, epoch}
    this.rooms = new Set(); // rooms to (re)join, besides user:<me>
    this.userRoom = null;
    this.nextId = 1;
    this.ws = null;
    this.attempt = 0;
    this.closedByUs = false;
    this.timer = null;
    this.onStatus = onStatus || (() => {});
    this.onNotice = onNotice || (() => {});
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return () => this.handlers.get(event).delete(fn);
  }

  emit(event, frame) {
    for (const fn of this.handlers.get(event) || []) {
      try {
        fn(frame.data || {}, frame);
      } catch (err) {
        console.error(err); // in the browser's log too (the browser tests fail on it)
        this.onNotice(`The console failed handling ${event}: ${err.message}`, "error");
      }
    }
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams({ token: this.token });
    const pos = this.userRoom && this.positions.get(this.userRoom);
    if (pos) {
      params.set("sinceOffset", String(pos.offset));
      params.set("sinceEpoch", pos.epoch);
    }
    return `${scheme}://${location.host}/ws?${params}`;
  }

  connect() {
    this.closedByUs = false;
    this.onStatus(this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onmessage = (msg) => this.receive(msg.data);
    ws.onclose = (ev) => this.closed(ws, ev);
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      this.onNotice("The server sent a frame the console could not read.", "error");
      return;
    }
    if (frame.room && typeof frame.offset === "number" && frame.epoch) {
      const last = this.positions.get(frame.room);
      const isAnswer = frame.event === "subscribed" || frame.event === "connected";
      if (!isAnswer && last && last.epoch === frame.epoch && frame.offset <= last.offset) return; // seen
      this.positions.set(frame.room, { offset: frame.offset, epoch: frame.epoch });
    }
    if (frame.event === "connected") {
      this.attempt = 0;
      this.userRoom = `user:${frame.data.userId}`;
      this.onStatus("online");
      for (const room of this.rooms) this.subscribe(room);
    }
    this.emit(frame.event, frame);
    this.emit("*", frame);
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.emit("disconnected", { data: { code: ev.code, reason: ev.reason } });
    if (this.closedByUs) {
      this.onStatus("offline");
      return;
    }
    if (ev.code === 4401) {
      this.onStatus("offline");
      this.onNotice(CLOSE_MESSAGES[4401], "error");
      return;
    }
    const delay = Math.min(10000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    const why = CLOSE_MESSAGES[ev.code] || `The connection closed (${ev.code}); reconnecting.`;
    this.onNotice(`${why} Next try in ${Math.ceil(delay / 1000)} s.`, "warning");
    this.onStatus("reconnecting");
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(event, data = {}, id = undefined) {
    const frameId = id ?? `c${this.nextId++}`;
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      this.onNotice(`Not connected: ${event} was not sent.`, "warning");
      return null;
    }
    this.ws.send(JSON.stringify({ event, data, id: frameId }));
    return frameId;
  }

  subscribe(room) {
    this.rooms.add(room);
    const pos = this.positions.get(room);
    const data = { room };
    if (pos && !room.startsWith("market:")) data.since = { offset: pos.offset, epoch: pos.epoch };
    return this.send("subscribe", data);
  }

  // Refusals of a request (it did not run): fn(text) when isMine(frame.id).
  onRefusal(isMine, fn) {
    for (const name of REFUSALS) {
      this.on(name, (d, frame) => frame.id !== undefined && isMine(frame.id) && fn(describeError(d, name)));
    }
  }

  unsubscribe(room) {
    this.rooms.delete(room);
    this.positions.delete(room);
    return this.send("unsubscribe", { room });
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }
}

const REFUSALS = ["error", "rate_limit_error", "validation_error", "insufficient_credits"];

// Human text for the error events of the protocol.
export function describeError(data, event = "error") {
  if (event === "insufficient_credits") {
    return `Not enough credits for ${data.action}: ${data.required} needed, ${data.available} available.`;
  }
  const code = data.code || "ERROR";
  if (code === "RATE_LIMITED") return `Slow down: rate limited, retry in ${data.retryAfter ?? "a few"} s.`;
  if (code === "UNAVAILABLE") return `The service is unavailable; retry in ${data.retryAfter ?? "a few"} s.`;
  if (code === "VALIDATION_FAILED" && data.errors) {
    const parts = Object.entries(data.errors).map(([field, msgs]) => `${field}: ${[].concat(msgs).join(", ")}`);
    return `Invalid request: ${parts.join("; ")}`;
  }
  return `${data.message || "Request failed"} (${code})`;
}
