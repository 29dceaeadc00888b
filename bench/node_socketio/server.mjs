// A Node.js Socket.IO 4.8 server doing what the benchmarks ask of
// LedgerCore: `subscribe` joins a room (acknowledged), and POST /broadcast
// emits `application_broadcast` with the posted body to that room.
// With JWT_SECRET set, a connection is accepted as LedgerCore accepts one
// (bench/connect_rate.py): its HS256 token verified (signature, expiry), its
// user known (looked up in memory), its presence recorded (its personal room
// joined and counted) and `connected` sent.
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { Server } from "socket.io";

const ROOM = "application:app_bench";
const SECRET = process.env.JWT_SECRET;
const users = new Map();
const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/broadcast") {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      io.to(ROOM).emit("application_broadcast", JSON.parse(body));
      res.writeHead(202);
      res.end();
    });
    return;
  }
  if (req.url === "/healthz") {
    res.writeHead(200);
    res.end("ok");
    return;
  }
  res.writeHead(404);
  res.end();
});
const io = new Server(server, { maxHttpBufferSize: 1e6 });

function verify(token) {
  const [header, payload, signature] = String(token).split(".");
  if (!signature) throw new Error("token is not a well-formed JWT");
  if (JSON.parse(Buffer.from(header, "base64url")).alg !== "HS256") throw new Error("algorithm not accepted");
  const expected = createHmac("sha256", SECRET).update(`${header}.${payload}`).digest();
  const given = Buffer.from(signature, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new Error("signature is invalid");
  const claims = JSON.parse(Buffer.from(payload, "base64url"));
  if (typeof claims.exp !== "number" || claims.exp * 1000 < Date.now()) throw new Error("token has expired");
  if (typeof claims.sub !== "string" || !claims.sub) throw new Error("token has no subject");
  return claims;
}

if (SECRET) {
  io.use((socket, next) => {
    try {
      const claims = verify(socket.handshake.auth?.token);
      let user = users.get(claims.sub);
      if (!user) users.set(claims.sub, (user = { id: claims.sub, active: true }));
      if (!user.active) throw new Error("user is deactivated");
      socket.data.user = user;
      next();
    } catch (err) {
      next(Object.assign(new Error(err.message), { data: { code: "UNAUTHORIZED" } }));
    }
  });
}

io.on("connection", (socket) => {
  if (SECRET) {
    const personal = `user:${socket.data.user.id}`;
    socket.join(personal);
    socket.emit("connected", { userId: socket.data.user.id, sid: socket.id, subscribers: io.sockets.adapter.rooms.get(personal)?.size });
  }
  socket.on("subscribe", (data, ack) => {
    socket.join(data.room);
    if (ack) ack({ event: "subscribed", data: { room: data.room, subscriberCount: io.sockets.adapter.rooms.get(data.room)?.size } });
  });
});
server.listen(Number(process.env.PORT), "127.0.0.1");
