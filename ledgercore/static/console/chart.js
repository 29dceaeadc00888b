// Live candle chart: market_chart_initial_data, then market_chart_live_update
// joined to it (same timestamp: the last bar is replaced; newer: a new bar).
// Bar times are the buckets' open times in epoch ms (MillisecondTimeScale),
// so that 100 ms to 1 d resolutions all chart.
import { MillisecondTimeScale } from "./timescale.js";
import { $, formatTime } from "./ui.js";

const LWC = window.LightweightCharts;

export class ChartPanel {
  constructor(conn) {
    this.conn = conn;
    this.room = null;
    this.bars = new Map(); // time (ms) -> bar
    this.lastTime = null;
    this.joinedAt = null; // the last bar of the initial data: live updates follow from it
    this.chart = LWC.createChartEx($("chart"), new MillisecondTimeScale(), {
      autoSize: true,
      layout: { background: { color: "#10151c" }, textColor: "#c9d1d9" },
      grid: { vertLines: { color: "#1d2530" }, horzLines: { color: "#1d2530" } },
    });
    this.series = this.chart.addSeries(LWC.CandlestickSeries, {});
    conn.on("market_chart_initial_data", (d) => this.initial(d));
    conn.on("market_chart_live_update", (d) => this.live(d));
    $("market").addEventListener("change", () => this.select());
    $("resolution").addEventListener("change", () => this.select());
  }

  select() {
    const room = `market:${$("market").value}:${$("resolution").value}`;
    if (room === this.room) return;
    if (this.room) this.conn.unsubscribe(this.room);
    this.room = room;
    this.reset();
    $("chart-info").textContent = "loading…";
    this.conn.subscribe(room);
  }

  mine(d) {
    return this.room === `market:${d.symbol}:${d.resolution}`;
  }

  reset() {
    this.bars.clear();
    this.lastTime = null;
    this.joinedAt = null;
    this.series.setData([]);
    this.show();
  }

  static bar(c) {
    return { time: c.timestamp, open: c.open, high: c.high, low: c.low, close: c.close };
  }

  initial(d) {
    if (!this.mine(d)) return;
    const precision = d.pricePrecision ?? 2;
    this.series.applyOptions({ priceFormat: { type: "price", precision, minMove: 10 ** -precision } });
    this.precision = precision;
    this.bars.clear();
    for (const c of d.series) this.bars.set(c.timestamp, ChartPanel.bar(c));
    const data = [...this.bars.values()].sort((a, b) => a.time - b.time);
    this.series.setData(data);
    this.lastTime = data.length ? data[data.length - 1].time : null;
    this.joinedAt = this.lastTime;
    $("chart-info").textContent = `${d.symbol} ${d.resolution} · ${precision} decimals`;
    this.chart.timeScale().scrollToRealTime();
    this.show();
  }

  live(d) {
    if (!this.mine(d)) return;
    const bar = ChartPanel.bar(d);
    if (this.lastTime !== null && bar.time < this.lastTime) return; // never older
    this.bars.set(bar.time, bar);
    this.series.update(bar);
    this.lastTime = bar.time;
    this.show();
  }

  show() {
    $("bar-count").textContent = String(this.bars.size);
    const last = this.lastTime === null ? null : this.bars.get(this.lastTime);
    $("last-bar").textContent = last
      ? `${formatTime(last.time, this.room?.endsWith("ms"))} close ${last.close.toFixed(this.precision ?? 2)}`
      : "none";
  }
}
