// Rooms: join and leave rooms, their subscriber counts, who joins and leaves.
import { $, el, formatTime } from "./ui.js";

const MAX_EVENTS = 50;

export class RoomsPanel {
  constructor(conn) {
    this.conn = conn;
    this.counts = new Map();
    conn.on("connected", (d) => {
      if (!this.counts.size) this.conn.subscribe(`application:${d.applicationId}`);
    });
    conn.on("subscribed", (d) => {
      if (d.room.startsWith("market:")) return;
      this.counts.set(d.room, d.subscriberCount);
      this.render();
    });
    conn.on("unsubscribed", (d) => {
      this.counts.delete(d.room);
      this.render();
    });
    conn.on("user_joined_room", (d) => this.presence(d, 1, `${d.userId} joined ${d.room}`, d.joinedAt));
    conn.on("user_left_room", (d) => this.presence(d, -1, `${d.userId} left ${d.room}`, d.leftAt));
    conn.on("application_broadcast", (d, f) => this.log(`${f.room}: ${d.message} (from ${d.sentBy})`, d.timestamp));
    conn.on("room_resync", (d) => this.log(`${d.room}: events were lost (${d.reason})`, Date.now()));
    $("room-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const room = $("room-name").value.trim();
      if (room) this.conn.subscribe(room);
    });
  }

  presence(d, delta, text, at) {
    if (this.counts.has(d.room)) this.counts.set(d.room, Math.max(0, this.counts.get(d.room) + delta));
    this.render();
    this.log(text, at);
  }

  log(text, at) {
    const list = $("room-events");
    list.prepend(el("li", { text: `${formatTime(at)} ${text}` }));
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  render() {
    const items = [...this.counts].map(([room, count]) => {
      const leave = el("button", { type: "button", text: "Leave" });
      leave.addEventListener("click", () => this.conn.unsubscribe(room));
      const item = el("li", { "data-room": room }, `${room} · `, el("span", { class: "count", text: String(count) }), " subscribers ");
      if (!room.startsWith("user:")) item.append(leave);
      return item;
    });
    $("room-list").replaceChildren(...items);
  }
}
