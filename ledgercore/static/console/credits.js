// Credits: the live balance (credit events, deduplicated by sequence), the
// latest ledger entries from GET /api/credits/entries/, a low-balance warning.
import { $, el, formatTime } from "./ui.js";

const LOW_ABSOLUTE = 50;
const LOW_SHARE = 0.1;

export class CreditsPanel {
  constructor(conn, token) {
    this.conn = conn;
    this.token = token;
    this.applicationId = null;
    this.sequence = -1;
    this.timer = null;
    conn.on("connected", (d) => {
      this.applicationId = d.applicationId;
      this.sequence = -1; // the balance follows at once
      this.refresh();
    });
    for (const name of ["credit_balance_updated", "credits_deducted", "credits_granted"]) {
      conn.on(name, (d) => this.movement(d));
    }
    conn.on("insufficient_credits", (d) => {
      $("low-balance").hidden = false;
      $("low-balance").textContent = `Not enough credits for ${d.action}: ${d.required} needed, ${d.available} available.`;
    });
  }

  movement(d) {
    if (d.applicationId !== this.applicationId) return;
    if (d.sequence <= this.sequence) return;
    this.sequence = d.sequence;
    $("balance").textContent = String(d.newBalance);
    if (d.lifetimeEarned !== undefined) {
      this.earned = d.lifetimeEarned;
      $("lifetime").textContent = `earned ${d.lifetimeEarned} · spent ${d.lifetimeSpent}`;
    }
    const low = d.newBalance < Math.max(LOW_ABSOLUTE, (this.earned || 0) * LOW_SHARE);
    $("low-balance").hidden = !low;
    if (low) $("low-balance").textContent = `Your balance is low: ${d.newBalance} credits left.`;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 300);
  }

  async refresh() {
    if (!this.applicationId) return;
    const params = new URLSearchParams({ application: this.applicationId, page_size: "10" });
    let body;
    try {
      const response = await fetch(`/api/credits/entries/?${params}`, {
        headers: { Authorization: `Bearer ${this.token}`, Accept: "application/json" },
      });
      if (!response.ok) return;
      body = await response.json();
    } catch {
      return; // offline: the balance events still arrive after reconnecting
    }
    const rows = (body.results || []).map((e) =>
      el(
        "tr",
        {},
        el("td", { text: formatTime(Date.parse(e.createdAt)).slice(11) }),
        el("td", { text: e.type }),
        el("td", { text: e.action || e.reason || "" }),
        el("td", { text: String(e.amount) }),
        el("td", { text: String(e.balanceAfter) }),
      ),
    );
    $("credit-entries").tBodies[0].replaceChildren(...rows);
  }
}
