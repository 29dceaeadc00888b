// The chart's horizontal scale in epoch milliseconds (UTC), for Lightweight
// Charts' createChartEx. Its built-in time scale counts whole seconds, so
// 100 ms, 250 ms and 500 ms buckets would share one time and overwrite each
// other; here a bar's time is its bucket's open time in ms, as the server
// sends it, from 100 ms to 1 d.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
// Weights of the boundaries a point crosses, as the library's own time scale
// gives them (1 s = 10 ... 12 h = 33, day 50, month 60, year 70), with
// sub-second boundaries below 10: the higher the weight, the likelier its
// label is kept when labels would overlap.
const STEPS = [
  [12 * HOUR, 33],
  [6 * HOUR, 32],
  [3 * HOUR, 31],
  [HOUR, 30],
  [30 * MINUTE, 22],
  [5 * MINUTE, 21],
  [MINUTE, 20],
  [15 * SECOND, 12],
  [5 * SECOND, 11],
  [SECOND, 10],
  [500, 3],
  [250, 2],
  [100, 1],
];

function weight(time, previous) {
  const a = new Date(time);
  const b = new Date(previous);
  if (a.getUTCFullYear() !== b.getUTCFullYear()) return 70;
  if (a.getUTCMonth() !== b.getUTCMonth()) return 60;
  if (a.getUTCDate() !== b.getUTCDate()) return 50;
  for (const [size, w] of STEPS) {
    if (Math.floor(time / size) !== Math.floor(previous / size)) return w;
  }
  return 0;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function clock(d, withMs) {
  const text = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return withMs ? `${text}.${pad(d.getUTCMilliseconds(), 3)}` : text;
}

export class MillisecondTimeScale {
  options() {
    return this.chartOptions;
  }

  setOptions(options) {
    this.chartOptions = options;
  }

  preprocessData() {}

  updateFormatter(localization) {
    if (this.chartOptions) this.chartOptions.localization = localization;
  }

  createConverterToInternalObj() {
    return (time) => time;
  }

  key(item) {
    return item;
  }

  cacheKey(item) {
    return item;
  }

  convertHorzItemToInternal(item) {
    return item;
  }

  // The crosshair's label: the bar's full time, ms when it has some.
  formatHorzItem(time) {
    const d = new Date(time);
    const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    return `${day} ${clock(d, time % SECOND !== 0)} UTC`;
  }

  formatTickmark(mark) {
    const d = new Date(mark.time);
    if (mark.weight >= 70) return String(d.getUTCFullYear());
    if (mark.weight >= 60) return MONTHS[d.getUTCMonth()];
    if (mark.weight >= 50) return String(d.getUTCDate());
    if (mark.weight >= 20) return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return clock(d, mark.weight < 10);
  }

  maxTickMarkWeight(marks) {
    const highest = marks.reduce((a, b) => (a.weight > b.weight ? a : b), marks[0]).weight;
    return highest > 30 && highest < 50 ? 30 : highest; // as the library's own time scale
  }

  // Each point's weight from the boundaries crossed since the point before
  // it (the first point: since one average step before it).
  fillWeightsForPoints(points, startIndex = 0) {
    if (points.length === 0) return;
    for (let i = Math.max(startIndex, 1); i < points.length; ++i) {
      points[i].timeWeight = weight(points[i].time, points[i - 1].time);
    }
    if (startIndex === 0) {
      const step = points.length > 1 ? Math.ceil((points[points.length - 1].time - points[0].time) / (points.length - 1)) : SECOND;
      points[0].timeWeight = weight(points[0].time, points[0].time - step);
    }
  }
}
