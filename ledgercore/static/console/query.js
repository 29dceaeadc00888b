// Query console: rows streamed into a table, progress, cancel, CSV download.
import { describeError } from "./ws.js";
import { $, el } from "./ui.js";

const SHOWN_ROWS = 2000;

export class QueryPanel {
  constructor(conn) {
    this.conn = conn;
    this.requestId = null;
    this.queryId = null;
    this.schema = [];
    this.rows = [];
    for (const name of ["query_started", "query_progress", "query_response", "query_completed", "query_error"]) {
      conn.on(name, (d, frame) => this.mine(d, frame) && this[name](d));
    }
    conn.onRefusal((id) => id === this.requestId, (text) => this.finish(`refused: ${text}`));
    conn.on("disconnected", () => this.running() && this.finish("The connection closed: the query was cancelled."));
    $("run-query").addEventListener("click", () => this.run());
    $("cancel-query").addEventListener("click", () => this.cancel());
    $("csv-query").addEventListener("click", () => this.download());
  }

  mine(d, frame) {
    return (frame.id !== undefined && frame.id === this.requestId) || (this.queryId && d.queryId === this.queryId);
  }

  running() {
    return this.requestId !== null;
  }

  run() {
    const sql = $("sql").value.trim();
    if (!sql) return;
    this.schema = [];
    this.rows = [];
    this.queryId = null;
    $("query-table").tHead.replaceChildren();
    $("query-table").tBodies[0].replaceChildren();
    $("query-progress").value = 0;
    $("query-progress").removeAttribute("value");
    $("csv-query").disabled = true;
    this.requestId = this.conn.send("query", { sql });
    if (this.requestId === null) return;
    $("run-query").disabled = true;
    $("cancel-query").disabled = false;
    this.status("sent…");
  }

  cancel() {
    if (this.queryId) this.conn.send("query_cancel", { queryId: this.queryId });
    this.status("cancelling…");
  }

  status(text) {
    $("query-status").textContent = text;
  }

  query_started(d) {
    this.queryId = d.queryId;
    this.status(`running (estimated ${d.estimatedMs ?? "?"} ms)`);
  }

  query_progress(d) {
    if (d.pct !== null && d.pct !== undefined) $("query-progress").value = d.pct;
    this.status(`running: ${d.rowsProcessed} rows processed`);
  }

  query_response(d) {
    if (!this.schema.length) {
      this.schema = d.schema;
      $("query-table").tHead.replaceChildren(el("tr", {}, ...d.schema.map((c) => el("th", { text: c.name }))));
    }
    const body = $("query-table").tBodies[0];
    for (const row of d.rows) {
      this.rows.push(row);
      if (this.rows.length <= SHOWN_ROWS) body.append(el("tr", {}, ...row.map((v) => el("td", { text: cell(v) }))));
    }
    this.status(`${this.rows.length} rows…`);
  }

  query_completed(d) {
    $("query-progress").value = 100;
    const more = d.truncated ? " (truncated: more rows matched)" : "";
    this.finish(`completed: ${d.totalRows} rows in ${d.durationMs} ms${more}`);
  }

  query_error(d) {
    $("query-progress").value = 0;
    const where = d.line ? ` at line ${d.line}, column ${d.column}` : "";
    this.finish(d.code === "CANCELLED" ? "cancelled" : `error: ${describeError(d)}${where}`);
  }

  finish(text) {
    this.requestId = null;
    $("run-query").disabled = false;
    $("cancel-query").disabled = true;
    $("csv-query").disabled = this.schema.length === 0;
    this.status(text);
  }

  download() {
    const lines = [this.schema.map((c) => csv(c.name)).join(",")];
    for (const row of this.rows) lines.push(row.map(csv).join(","));
    const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
    const link = el("a", { href: URL.createObjectURL(blob), download: "query.csv" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }
}

function cell(value) {
  if (value === null || value === undefined) return "NULL";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function csv(value) {
  const text = value === null || value === undefined ? "" : cell(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
