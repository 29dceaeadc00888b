// A Node.js Socket.IO server doing what the benchmarks ask of LedgerCore:
// `subscribe` joins a room (acknowledged), and POST /broadcast emits
// `application_broadcast` to that room. With JWT_SECRET set, a connection
// is accepted as LedgerCore accepts one (common.mjs), its personal room
// joined and counted, and `connected` sent.
import { Server } from "socket.io";
import { ROOM, SECRET, authenticate, httpServer, listen } from "./common.mjs";

const server = httpServer((payload) => io.to(ROOM).emit("application_broadcast", payload));
const io = new Server(server, { maxHttpBufferSize: 1e6 });

if (SECRET) {
  io.use((socket, next) => {
    try {
      socket.data.user = authenticate(socket.handshake.auth?.token);
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
listen(server);
