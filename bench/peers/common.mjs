// What both peers share: the HTTP side (POST /broadcast, GET /healthz), the
// broadcast payload, and, with JWT_SECRET set, accepting a connection as
// LedgerCore accepts one: its HS256 token verified (signature, expiry) and
// its user known (looked up in memory).
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";

export const ROOM = "application:app_bench";
export const SECRET = process.env.JWT_SECRET;
const users = new Map();

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

// The user a token names (created on first sight); throws when refused.
export function authenticate(token) {
  const claims = verify(token);
  let user = users.get(claims.sub);
  if (!user) users.set(claims.sub, (user = { id: claims.sub, active: true }));
  if (!user.active) throw new Error("user is deactivated");
  return user;
}

// The HTTP server: POST /broadcast hands `broadcast` the payload LedgerCore
// sends for the posted `{message, data}` (about 200 bytes once framed).
export function httpServer(broadcast) {
  return http.createServer((req, res) => {
    if (req.method === "POST" && req.url === "/broadcast") {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        const { message, data } = JSON.parse(body);
        broadcast({ applicationId: "app_bench", message, data, sentBy: "bench_owner", timestamp: new Date().toISOString() });
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
}

export function listen(server) {
  server.listen(Number(process.env.PORT), "127.0.0.1");
}
