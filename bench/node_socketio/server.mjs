// A Node.js Socket.IO 4.8 server doing what the fan-out benchmark asks of
// LedgerCore: `subscribe` joins a room (acknowledged), and POST /broadcast
// emits `application_broadcast` with the posted body to that room.
import http from "node:http";
import { Server } from "socket.io";

const ROOM = "application:app_bench";
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
io.on("connection", (socket) => {
  socket.on("subscribe", (data, ack) => {
    socket.join(data.room);
    if (ack) ack({ event: "subscribed", data: { room: data.room, subscriberCount: io.sockets.adapter.rooms.get(data.room)?.size } });
  });
});
server.listen(Number(process.env.PORT), "127.0.0.1");
