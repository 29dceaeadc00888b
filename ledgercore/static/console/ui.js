// Small DOM helpers shared by the panels.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

let noticeTimer = null;

export function notice(message, level = "info") {
  const box = $("notice");
  box.textContent = message;
  box.className = level;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (box.hidden = true), 8000);
}

// "2025-01-02 03:04:05 UTC"; with milliseconds: "2025-01-02 03:04:05.250 UTC".
export function formatTime(ms, withMilliseconds = false) {
  const text = new Date(ms).toISOString().replace("T", " ");
  return withMilliseconds ? text.replace(/Z$/, " UTC") : text.replace(/\.\d+Z$/, " UTC");
}
