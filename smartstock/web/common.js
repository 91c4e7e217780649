// Helpers shared by the device status page (app.js) and the plant page (smartstock/fleet/web/app.js,
// which the fleet server serves this file to as well). No libraries, no build step.
"use strict";
window.SmartStock = (function () {
  // A JSON GET that gives up after `timeoutMs`, so a hung server shows as "disconnected".
  async function getJSON(url, timeoutMs) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    try {
      const r = await fetch(url, { cache: "no-store", signal: ctl.signal });
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  }

  const isNum = (v) => typeof v === "number" && isFinite(v);
  const num = (v, d = 0) => isNum(v)
    ? v.toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d }) : "–";
  const pct = (v, d = 1) => isNum(v) ? (100 * v).toFixed(d) + " %" : "–";

  // An element whose children are nodes or text: what a device sends is never parsed as HTML.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  // The "live" / "disconnected" badge; a disconnected page greys its last values out (body.stale).
  function showConnected(badge, ok, detail) {
    badge.textContent = ok ? "live" : "disconnected";
    badge.className = "badge " + (ok ? "badge-ok" : "badge-bad");
    badge.title = detail || "";
    document.body.classList.toggle("stale", !ok);
  }

  return { getJSON, isNum, num, pct, el, showConnected };
})();
