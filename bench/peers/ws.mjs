// A bare WebSocket server on `ws` speaking the part of LedgerCore's native
// protocol (docs/PROTOCOL.md) the benchmarks use, on /ws: `connected` on
// accept, `ping` answered with `pong`, `subscribe` joins a room (answered
// `subscribed` with the request's id), and POST /broadcast sends one
// `application_broadcast` frame (room, offset, epoch) to every member of
// that room. With JWT_SECRET set, the `token` query parameter is checked as
// LedgerCore checks it (common.mjs; refused with close code 4001) and the
// user's personal room joined. Rooms are sets in process memory.
import { randomBytes, randomUUID } from "node:crypto";
import { WebSocketServer } from "ws";
import { ROOM, SECRET, authenticate, httpServer, listen } from "./common.mjs";

const EPOCH = randomBytes(8).toString("hex");
const rooms = new Map();
const memberships = new Map();
let offset = 0;

function join(ws, room) {
  let members = rooms.get(room);
  if (!members) rooms.set(room, (members = new Set()));
  members.add(ws);
  memberships.get(ws).add(room);
  return members.size;
}

function leave(ws) {
  for (const room of memberships.get(ws) ?? []) {
    const members = rooms.get(room);
    members.delete(ws);
    if (members.size === 0) rooms.delete(room);
  }
  memberships.delete(ws);
}

const server = httpServer((payload) => {
  offset += 1;
  // Encoded once for every member, as Socket.IO and LedgerCore do.
  const frame = Buffer.from(JSON.stringify({ event: "application_broadcast", data: payload, room: ROOM, offset, epoch: EPOCH }));
  for (const ws of rooms.get(ROOM) ?? []) ws.send(frame, { binary: false });
});
const wss = new WebSocketServer({ server, path: "/ws", maxPayload: 1e6 });

wss.on("connection", (ws, req) => {
  let user = null;
  if (SECRET) {
    try {
      user = authenticate(new URL(req.url, "http://peer").searchParams.get("token"));
    } catch (err) {
      ws.close(4001, err.message);
      return;
    }
  }
  memberships.set(ws, new Set());
  ws.on("close", () => leave(ws));
  const subscribers = user ? join(ws, `user:${user.id}`) : undefined;
  ws.send(JSON.stringify({ event: "connected", data: { userId: user?.id, sid: randomUUID(), subscribers } }));
  ws.on("message", (raw) => {
    const frame = JSON.parse(raw);
    if (frame.event === "ping") {
      ws.send(JSON.stringify({ event: "pong", data: { timestamp: Date.now() }, id: frame.id }));
    } else if (frame.event === "subscribe") {
      const subscriberCount = join(ws, frame.data.room);
      ws.send(JSON.stringify({ event: "subscribed", data: { room: frame.data.room, subscriberCount }, id: frame.id }));
    }
  });
});
listen(server);
