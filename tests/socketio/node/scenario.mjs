// The scenario with socket.io-client 4.8, as a front end would run
// it. Prints one JSON object (what the Python test asserts) and exits.
// Environment: SERVER_URL, TOKEN (demo_user), TEAMMATE_TOKEN, SQL.
import { io } from "socket.io-client";

const { SERVER_URL, TOKEN, TEAMMATE_TOKEN, SQL } = process.env;
const ROOM = "application:app_demo";
const out = {};

function waitFor(events, predicate, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      const found = events.find(predicate);
      if (found) {
        clearInterval(timer);
        resolve(found);
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(timer);
        reject(new Error(`timed out; got ${events.map((e) => e[0]).join(",")}`));
      }
    }, 20);
  });
}

function once(socket, name) {
  return new Promise((resolve) => socket.once(name, resolve));
}

// 1. A bad token is refused.
const bad = io(SERVER_URL, { auth: { token: "not-a-token" }, reconnection: false });
const error = await once(bad, "connect_error");
out.refusal = { message: error.message, data: error.data };
bad.close();

// A short, fixed reconnection delay: the disconnect below is brief.
const alice = io(SERVER_URL, { auth: { token: TOKEN }, reconnectionDelay: 2500, randomizationFactor: 0 });
const events = [];
alice.onAny((name, ...args) => events.push([name, args]));
await once(alice, "connect");
out.firstRecovered = alice.recovered;
const hello = await waitFor(events, (e) => e[0] === "connected");
out.hello = hello[1][0];
const balance = (await waitFor(events, (e) => e[0] === "credit_balance_updated"))[1][0];
out.balance = balance;

// 2. Subscribe; 3. ping.
out.subscribed = await alice.timeout(15000).emitWithAck("subscribe", { room: ROOM });
out.pong = await alice.timeout(15000).emitWithAck("ping", {});

// 4. A query with its ack.
const ack = await alice.timeout(30000).emitWithAck("query", { sql: SQL });
out.queryAck = ack;
const queryId = ack.data.queryId;
await waitFor(events, (e) => e[0] === "query_completed" && e[1][0].queryId === queryId, 60000);
out.queryEvents = events.filter((e) => e[0].startsWith("query_") && e[1][0].queryId === queryId).map((e) => e[0]);

// 5. The charge's credit event.
const charged = await waitFor(events, (e) => e[0] === "credit_balance_updated" && e[1][0].newBalance < balance.newBalance);
out.charged = charged[1][0];

// 6. The transport drops; while alice is away, a teammate joins the room
// and another connection of hers is charged (user:demo_user).
const teammate = io(SERVER_URL, { auth: { token: TEAMMATE_TOKEN }, forceNew: true, reconnection: false });
const other = io(SERVER_URL, { auth: { token: TOKEN }, forceNew: true, reconnection: false });
await Promise.all([once(teammate, "connect"), once(other, "connect")]);
const seenBefore = events.length;
const reconnected = once(alice, "connect");
alice.io.engine.close();
// The server hears of the drop a moment later: until it has, alice still
// counts; the teammate waits for that (leaving and joining again).
for (let attempt = 0; attempt < 100; attempt++) {
  out.teammateSubscribed = await teammate.timeout(15000).emitWithAck("subscribe", { room: ROOM });
  if (out.teammateSubscribed.data.subscriberCount === 1) break;
  await teammate.timeout(15000).emitWithAck("unsubscribe", { room: ROOM });
  await new Promise((resolve) => setTimeout(resolve, 100));
}
const otherEvents = [];
other.onAny((name, ...args) => otherEvents.push([name, args]));
await other.timeout(15000).emitWithAck("query", { sql: "SELECT 1" });
const spent = await waitFor(
  otherEvents,
  (e) => e[0] === "credit_balance_updated" && e[1][0].newBalance === out.charged.newBalance - (balance.newBalance - out.charged.newBalance),
);
out.spent = spent[1][0];
await reconnected;
out.recovered = alice.recovered;
await waitFor(events.slice(seenBefore), (e) => e[0] === "user_joined_room" && e[1][0].userId === "demo_teammate");
await waitFor(events.slice(seenBefore), (e) => e[0] === "credit_balance_updated" && e[1][0].newBalance === out.spent.newBalance);
out.afterReconnect = events.slice(seenBefore).map((e) => [e[0], e[1].length]);

for (const socket of [alice, teammate, other]) socket.close();
console.log(JSON.stringify(out));
process.exit(0);
