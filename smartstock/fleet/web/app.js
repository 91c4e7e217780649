// SmartStock fleet page: polls /api/fleet every 2 s; no libraries, no build step. Every value comes
// from devices' MQTT payloads, so everything is written as text (never as HTML). A failed request
// marks the page "disconnected" and keeps the last rows greyed out until the server answers again.
"use strict";
(function () {
  const POLL_MS = 2000;
  const TIMEOUT_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const state = { lastOk: 0 };

  const { isNum, num, pct, el } = window.SmartStock;  // the device page's common.js
  const getJSON = (url) => window.SmartStock.getJSON(url, TIMEOUT_MS);

  function age(s) {
    if (!isNum(s)) return "never";
    if (s < 120) return Math.round(s) + " s ago";
    return s < 7200 ? Math.round(s / 60) + " min ago" : (s / 3600).toFixed(1) + " h ago";
  }
  function setConnected(ok, detail) {
    window.SmartStock.showConnected($("conn"), ok, detail);
    $("updated").textContent = ok ? "updated " + new Date().toLocaleTimeString()
      : (state.lastOk ? "last data " + Math.round((Date.now() - state.lastOk) / 1000) + " s ago" : "no data yet");
  }

  function banner(text) {
    const b = $("banner");
    b.hidden = !text;
    b.textContent = text || "";
  }

  function camera(d) {
    const cams = d.cameras || {};
    const ids = Object.keys(cams);
    if (ids.length > 1) return ids.map((k) => k + ": " + cams[k]).join(", ");
    return d.camera || "–";
  }

  function deviceRow(d) {
    const model = d.model_release ? (d.model_id || "?") + " r" + d.model_release : "–";
    const ota = (d.ota_status || "–") + (d.ota_error ? " (" + d.ota_error + ")" : "");
    const problems = d.problems || [];
    const tr = el("tr", { class: "health-" + d.health, "data-device": d.device_id },
      el("td", { class: "l" }, d.device_id),
      el("td", { class: "l" }, d.site + " / " + d.line),
      el("td", { class: "l health" }, d.health),
      el("td", {}, age(d.state_age_s)),
      el("td", { class: "l" }, model),
      el("td", { class: "l" + (d.ota_status === "rolled_back" || d.ota_status === "refused" ? " bad" : ""),
                 title: d.ota_detail || "" }, ota),
      el("td", { class: "l" + (d.camera && d.camera !== "ok" ? " bad" : "") }, camera(d)),
      el("td", {}, num(d.fps, 1)),
      el("td", {}, pct(d.defect_rate)),
      el("td", { class: d.open_alerts ? "bad" : "" }, isNum(d.open_alerts) ? d.open_alerts : "–"),
      el("td", {}, num(d.backlog)),
      el("td", { class: "l problems", title: problems.join("\n") },
        problems.length ? (problems.length > 1 ? problems.length + " problems: " : "") + problems[0] : ""));
    return tr;
  }

  function render(f) {
    const devices = Array.isArray(f.devices) ? f.devices : [];
    const s = f.summary || {};
    $("where").textContent = (f.prefix || "") + "/" + (f.site || "+") + "/…";
    $("summary").textContent = num(s.devices) + " devices · " + num(s.online) + " online · " + num(s.stale) +
      " stale · " + num(s.offline) + " offline";
    $("stale-min").textContent = num(f.stale_minutes, 0);
    const body = $("devices");
    body.replaceChildren(...(devices.length ? devices.map(deviceRow)
      : [el("tr", {}, el("td", { colspan: "12", class: "muted" }, "no devices on the broker yet"))]));
    const alerts = [];
    for (const d of devices) {
      for (const a of (Array.isArray(d.alerts) ? d.alerts : [])) {
        alerts.push(el("li", { class: a.severity || "warning", "data-device": d.device_id },
          el("b", {}, d.device_id), " · " + (a.kind || "alert") + ": " + (a.message || "")));
      }
      if (d.open_alerts > (d.alerts || []).length) {
        alerts.push(el("li", { class: "warning" }, d.device_id + ": " + (d.open_alerts - d.alerts.length) + " more"));
      }
    }
    $("alerts").replaceChildren(...(alerts.length ? alerts : [el("li", { class: "none" }, "no open alerts")]));
    banner(f.broker_connected === false ? "The fleet server lost the MQTT broker; rows show the last messages received." : "");
  }

  async function poll() {
    try {
      const f = await getJSON("api/fleet");
      state.lastOk = Date.now();
      render(f);
      setConnected(f.broker_connected !== false, "");
    } catch (e) {
      setConnected(false, String(e));
      banner("No answer from the fleet server" + (state.lastOk ? " since " + new Date(state.lastOk).toLocaleTimeString() : "") +
        "; retrying…");
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
