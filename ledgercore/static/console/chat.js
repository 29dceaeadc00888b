// Chat: the streamed answer (its first sentence restates what was computed)
// and the SQL that produced it.
import { describeError } from "./ws.js";
import { $, el } from "./ui.js";

export class ChatPanel {
  constructor(conn) {
    this.conn = conn;
    this.conversationId = `console-${crypto.randomUUID().slice(0, 12)}`;
    this.requestId = null;
    this.turn = null;
    const mine = (fn) => (d, frame) => frame.id !== undefined && frame.id === this.requestId && fn(d);
    conn.on("chat_typing", mine(() => this.turn?.classList.add("typing")));
    conn.on("chat_stop_typing", mine(() => this.turn?.classList.remove("typing")));
    conn.on("chat_message", mine((d) => this.message(d)));
    conn.on("chat_response", mine((d) => this.response(d)));
    conn.on("chat_error", mine((d) => this.error(describeError(d))));
    conn.onRefusal((id) => id === this.requestId, (text) => this.error(text));
    $("chat-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.ask();
    });
  }

  ask() {
    const message = $("chat-input").value.trim();
    if (!message) return;
    const id = this.conn.send("chat", { message, conversationId: this.conversationId });
    if (id === null) return;
    this.requestId = id;
    $("chat-send").disabled = true;
    $("chat-log").append(el("div", { class: "chat-question", text: message }));
    this.answer = el("div", { class: "chat-text" });
    this.turn = el("div", { class: "chat-answer" }, this.answer);
    $("chat-log").append(this.turn);
  }

  message(d) {
    if (d.isFinal) this.answer.textContent = d.content;
    else this.answer.textContent += d.delta;
    this.scroll();
  }

  response(d) {
    this.turn.classList.add("done");
    if (d.sql) {
      const params = d.params && Object.keys(d.params).length ? `\n-- params: ${JSON.stringify(d.params)}` : "";
      this.turn.append(el("pre", { class: "chat-sql", text: d.sql + params }));
    }
    this.turn.append(el("div", { class: "small", text: `${d.tokens} tokens` }));
    this.done();
  }

  error(text) {
    this.turn.classList.remove("typing");
    this.turn.append(el("div", { class: "error", text }));
    this.done();
  }

  done() {
    this.requestId = null;
    $("chat-send").disabled = false;
    this.scroll();
  }

  scroll() {
    $("chat-log").scrollTop = $("chat-log").scrollHeight;
  }
}
