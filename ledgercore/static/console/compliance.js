// Compliance: start an address analysis, follow its stages, show the score,
// each signal's contribution and the sanctions hits.
import { describeError } from "./ws.js";
import { $, el } from "./ui.js";

export class CompliancePanel {
  constructor(conn) {
    this.conn = conn;
    this.requestId = null;
    this.jobId = null;
    const mine = (fn) => (d, frame) =>
      ((frame.id !== undefined && frame.id === this.requestId) || (this.jobId && d.jobId === this.jobId)) && fn(d);
    conn.on("address_analysis_started", mine((d) => (this.jobId = d.jobId)));
    conn.on("address_analysis_progress", mine((d) => this.progress(d)));
    conn.on("address_analysis_response", mine((d) => this.result(d)));
    conn.on("address_analysis_completed", mine((d) => this.completed(d)));
    conn.on("address_analysis_error", mine((d) => this.failed(describeError(d))));
    conn.onRefusal((id) => id === this.requestId, (text) => this.failed(text));
    $("analysis-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.start();
    });
  }

  start() {
    const address = $("analysis-address").value.trim();
    if (!address) return;
    const data = { chain: $("analysis-chain").value, address, hops: Number($("analysis-hops").value) || 2 };
    this.jobId = null;
    this.requestId = this.conn.send("address_analysis", data);
    if (this.requestId === null) return;
    $("analysis-start").disabled = true;
    $("analysis-progress").value = 0;
    $("analysis-stage").textContent = "queued";
    $("analysis-result").replaceChildren();
  }

  progress(d) {
    if (d.pct > $("analysis-progress").value) $("analysis-progress").value = d.pct;
    $("analysis-stage").textContent = d.stage;
  }

  result(d) {
    const box = $("analysis-result");
    const sanctions = d.signals.filter((s) => s.category === "sanctions");
    const head = el(
      "div",
      { class: `risk risk-${d.riskLevel}` },
      el("strong", { id: "risk-score", text: String(d.riskScore) }),
      ` / 100 · ${d.riskLevel}${d.known ? "" : " · address never seen"}${d.truncated ? " · truncated" : ""}`,
    );
    const rows = d.signals.map((s) =>
      el(
        "tr",
        {},
        el("td", { text: String(s.contribution) }),
        el("td", { text: s.rule }),
        el("td", { text: s.category || "" }),
        el("td", { text: s.severity || "" }),
        el("td", { text: s.description || "" }),
      ),
    );
    const table = el(
      "table",
      { class: "signals" },
      el("thead", {}, el("tr", {}, ...["Points", "Rule", "Category", "Severity", "Why"].map((t) => el("th", { text: t })))),
      el("tbody", {}, ...rows),
    );
    const hits = el(
      "div",
      { id: "sanctions-hits", class: sanctions.length ? "error" : "small" },
      sanctions.length ? `Sanctions hits: ${sanctions.length}` : "No sanctions hits.",
    );
    for (const s of sanctions) hits.append(el("div", { text: `${s.rule}: ${s.description || s.counterparty || ""}` }));
    box.replaceChildren(head, hits, el("div", { class: "table-wrap" }, table));
  }

  completed(d) {
    $("analysis-progress").value = 100;
    $("analysis-stage").textContent = `completed in ${d.durationMs} ms`;
    this.done();
  }

  failed(message) {
    $("analysis-stage").textContent = `failed: ${message}`;
    this.done();
  }

  done() {
    this.requestId = null;
    $("analysis-start").disabled = false;
  }
}
