// The console: sign in with a token (kept in sessionStorage), then the panels.
import { ChartPanel } from "./chart.js";
import { ChatPanel } from "./chat.js";
import { CompliancePanel } from "./compliance.js";
import { CreditsPanel } from "./credits.js";
import { QueryPanel } from "./query.js";
import { RoomsPanel } from "./rooms.js";
import { $, notice } from "./ui.js";
import { Connection, describeError } from "./ws.js";

const STORE = "ledgercore.console.token";
const STATUS_TEXT = { connecting: "connecting…", online: "online", reconnecting: "reconnecting…", offline: "signed out" };
let conn = null;

function setStatus(state) {
  const status = $("status");
  status.dataset.state = state;
  status.className = `status ${state}`;
  status.textContent = STATUS_TEXT[state] || state;
}

function signIn(token) {
  sessionStorage.setItem(STORE, token);
  if (conn) {
    // The panels are wired once per page: a new token starts a fresh page.
    conn.close();
    location.reload();
    return;
  }
  conn = new Connection(token, { onStatus: setStatus, onNotice: notice });
  conn.on("connected", (d, frame) => {
    // Whether the personal room's missed events were replayed (sinceOffset).
    $("status").dataset.recovered = String(frame.recovered ?? d.recovered ?? false);
    $("who").textContent = `${d.userId} · ${d.applicationId}`;
    document.body.classList.add("signed-in");
  });
  for (const name of ["error", "rate_limit_error", "validation_error"]) {
    conn.on(name, (d) => notice(describeError(d), d.code === "RATE_LIMITED" ? "warning" : "error"));
  }
  conn.on("insufficient_credits", (d) => notice(describeError(d, "insufficient_credits"), "warning"));
  const chart = new ChartPanel(conn);
  new QueryPanel(conn);
  new ChatPanel(conn);
  new CompliancePanel(conn);
  new CreditsPanel(conn, token);
  new RoomsPanel(conn);
  conn.on("connected", () => chart.room || chart.select());
  // For the browser's devtools (and the browser tests): the chart's data is
  // ledgercoreConsole.chart.series.data().
  window.ledgercoreConsole = { conn, chart };
  conn.connect();
}

function signOut() {
  sessionStorage.removeItem(STORE);
  if (conn) conn.close();
  conn = null;
  location.reload();
}

$("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim();
  if (token) signIn(token);
  else notice("Paste a development token first.", "warning");
});
$("signout").addEventListener("click", signOut);

const saved = sessionStorage.getItem(STORE);
if (saved) {
  $("token").value = saved;
  signIn(saved);
}
