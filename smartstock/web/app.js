// SmartStock status page: polls the device's own JSON endpoints; no libraries, no build step.
// /api/status every 1.5 s (counters, stock, plans, alerts, last inspections), /api/recent every 3 s
// (defects with snapshots). A failed request marks the page "disconnected" and keeps the last values
// greyed out; polling goes on with a growing pause (up to 5 s) until the device answers again.
"use strict";
(function () {
  const STATUS_MS = 1500;
  const RECENT_MS = 3000;
  const TIMEOUT_MS = 2500;
  const MAX_THUMBS = 12;
  const $ = (id) => document.getElementById(id);
  const state = { statusFailures: 0, lastOk: 0, thumbsKey: "" };

  const { num, pct, el } = window.SmartStock;  // common.js
  const getJSON = (url) => window.SmartStock.getJSON(url, TIMEOUT_MS);

  // -- formatting ------------------------------------------------------------------------------
  const ms = (v) => (typeof v === "number" && isFinite(v)) ? (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " ms" : "–";
  function time(ts) {
    const d = new Date(ts);
    return isNaN(d) ? String(ts || "–") : d.toLocaleTimeString();
  }
  function setText(id, text, alarm) {
    const e = $(id);
    if (e.textContent !== text) e.textContent = text;
    if (alarm !== undefined) e.parentElement.classList.toggle("alarm", !!alarm);
  }

  // -- connection badge ------------------------------------------------------------------------
  function setConnected(ok, detail) {
    window.SmartStock.showConnected($("conn"), ok, detail);
    const banner = $("banner");
    banner.hidden = ok;
    if (!ok) {
      setText("health", "health: unknown");
      banner.textContent = state.lastOk
        ? "No answer from the device since " + new Date(state.lastOk).toLocaleTimeString() +
          ". The figures below are the last ones received; retrying…"
        : "Cannot reach the device's /api/status yet; retrying…";
    }
    const ago = state.lastOk ? Math.round((Date.now() - state.lastOk) / 1000) : null;
    $("updated").textContent = ok ? "updated " + new Date().toLocaleTimeString()
      : (ago === null ? "no data yet" : "last data " + ago + " s ago");
  }

  // -- rendering -------------------------------------------------------------------------------
  function renderStatus(s) {
    const c = s.counters || {};
    const parts = c.parts_inspected, defects = c.defects;
    const alerts = Array.isArray(s.alerts) ? s.alerts : [];
    const hasAlert = (kind) => alerts.some((a) => a.kind === kind);
    const skus = Array.isArray(s.skus) && s.skus.length ? s.skus.join(", ") : s.sku;
    setText("device", s.device_id ? s.device_id + (skus ? " · " + skus : "") : "–");
    setText("health", s.health ? "health: " + s.health : "");
    setText("c-parts", num(parts));
    setText("c-good", typeof parts === "number" && typeof defects === "number" ? num(parts - defects) : "–");
    setText("c-defects", num(defects));
    setText("c-rate", pct(s.defect_rate, 2), hasAlert("defect_rate"));
    setText("c-fps", num(s.fps, 1));
    setText("c-dropped", num(s.dropped), s.dropped > 0);
    setText("c-p50", ms((s.latency_ms || {}).p50));
    setText("c-p99", ms((s.latency_ms || {}).p99));
    setText("c-queue", num(s.queue_depth));
    const ob = s.outbox || {};
    setText("c-outbox", typeof ob.rows === "number" ? num(ob.rows) : "–");
    const cam = s.camera || {};
    const camStatus = cam.ended ? "replay done" : (cam.status || "–");
    setText("c-camera", camStatus, !cam.ended && cam.status && cam.status !== "ok");
    setText("c-camera-src", "camera" + (cam.kind ? " (" + cam.kind + ")" : ""));
    $("c-camera-src").title = cam.last_error || cam.source || "";
    const m = s.model || {};
    setText("c-model", m.id ? m.id + (m.release != null ? " r" + m.release : "") : "–");
    $("c-model").title = m.path || "";
    renderCameras(Array.isArray(s.cameras) ? s.cameras : []);
    renderAlerts(alerts);
    renderStock(s.stock || {}, Array.isArray(s.plans) ? s.plans : [], alerts);
    renderRecent(Array.isArray(s.recent) ? s.recent : []);
    renderUncertain(Array.isArray(s.uncertain) ? s.uncertain : []);
  }

  function renderUncertain(list) {
    const rows = list.map((u) => el("tr", {}, el("td", {}, time(u.ts)),
      el("td", { class: "l" }, el("a", { href: "snapshots/" + encodeURIComponent(u.snapshot || "") }, u.id || "")),
      el("td", { class: "l" }, u.label || ""),
      el("td", { class: "l small" }, Object.entries(u.scores || {}).map(([k, v]) => k + " " + num(v, 2)).join(" · ")),
      el("td", { class: "l" }, u.operator_label || "–")));
    $("uncertain").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "5", class: "muted" }, "no uncertain parts"))]));
  }

  // One row per camera ([[sources]]): a camera that is down is red while the others keep counting.
  function renderCameras(cameras) {
    const rows = cameras.map((c) => {
      const k = c.counters || {};
      const status = c.ended ? "replay done" : (c.status || "–");
      const bad = !c.ended && c.status && c.status !== "ok";
      return el("tr", {}, el("td", { class: "l" }, c.id || ""), el("td", { class: "l" }, c.sku || ""),
        el("td", { class: "l" + (bad ? " defect" : ""), title: c.last_error || "" }, status),
        el("td", { class: "l small" }, c.source || ""), el("td", {}, num(k.parts_inspected)),
        el("td", {}, num(k.defects)), el("td", {}, pct(c.defect_rate, 2)), el("td", {}, num(c.fps, 1)),
        el("td", {}, num(k.frames_dropped)), el("td", { class: k.capture_errors > 0 ? "defect" : "" }, num(k.capture_errors)),
        el("td", {}, c.seconds_since_frame == null ? "–" : num(c.seconds_since_frame, 1) + " s"));
    });
    $("cameras").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "11", class: "muted" }, "no camera"))]));
  }

  function renderAlerts(alerts) {
    const ul = $("alerts");
    const items = alerts.length ? alerts.map((a) => el("li", { class: a.severity || "warning" },
      el("b", {}, (a.kind || "alert").replace(/_/g, " ")), (a.sku ? " · " + a.sku : "") + " — " + (a.message || ""),
      el("span", { class: "muted small" }, "  since " + time(a.opened_at))))
      : [el("li", { class: "none" }, "no open alerts")];
    ul.replaceChildren(...items);
  }

  // The plan columns show the device's plan as computed (smartstock.inventory.plan.plan_sku), the
  // same figures as `smartstock policy` and {base}/inventory/<sku>, including its own on-hand figure.
  function renderStock(stock, plans, alerts) {
    const byPlan = Object.fromEntries(plans.map((p) => [p.sku, p]));
    const skus = [...new Set([...Object.keys(stock), ...plans.map((p) => p.sku)])].sort();
    const low = new Set(alerts.filter((a) => a.kind === "low_stock").map((a) => a.sku));
    const rows = skus.map((sku) => {
      const st = stock[sku] || {}, p = byPlan[sku] || {};
      const known = typeof p.reorder_point === "number";
      const onHand = known && typeof p.on_hand === "number" ? p.on_hand : st.on_hand;
      const rop = p.reorder_point;
      const reorder = low.has(sku) || p.reorder_now === true ||
        (typeof rop === "number" && typeof onHand === "number" && onHand <= rop);
      const title = [p.error, p.stale ? "stale sales: " + p.stale_reason : "", p.as_of ? "plan as of " + p.as_of : ""]
        .filter(Boolean).join(" · ");
      return el("tr", p.stale ? { class: "stale-plan" } : {}, el("td", {}, sku), el("td", {}, num(onHand)),
        el("td", {}, num(rop)), el("td", {}, num(p.safety_stock)), el("td", {}, num(p.eoq)),
        el("td", {}, num(p.order_quantity)), el("td", {}, num(p.demand_per_day, 2)),
        el("td", { class: "l small" }, (p.demand_basis || "–") + (p.stale ? " (stale)" : "")),
        el("td", {}, p.days_of_cover == null ? "–" : num(p.days_of_cover, 1)),
        el("td", {}, num(st.produced)), el("td", {}, num(st.scrapped)),
        el("td", {}, pct(typeof st.defect_rate === "number" ? st.defect_rate : p.defect_rate)),
        el("td", { class: reorder ? "status-reorder" : (known ? "status-ok" : "muted"), title: title },
          reorder ? "reorder" : (known ? "ok" : "no plan")));
    });
    $("stock").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "13", class: "muted" }, "no stock booked yet"))]));
    const problems = plans.filter((p) => p.error).map((p) => p.sku + ": " + p.error);
    const stale = plans.find((p) => p.stale);
    const notes = [];
    if (stale) notes.push("Stale sales (" + plans.filter((p) => p.stale).length + " SKU): " + stale.stale_reason);
    if (problems.length) notes.push("No plan for " + problems.join(" · "));
    setText("plan-notes", notes.join(" — "));
  }

  function renderRecent(recent) {
    const rows = recent.map((r) => el("tr", {}, el("td", {}, time(r.ts)), el("td", { class: "l" }, r.sku || ""),
      el("td", { class: "l " + (r.is_defect ? "defect" : "good") }, r.label || ""), el("td", {}, num(r.score, 3)),
      el("td", {}, ms(r.latency_ms)), el("td", { class: "l" }, (r.model_id || "") + (r.model_release != null ? " r" + r.model_release : ""))));
    $("recent").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "6", class: "muted" }, "no parts inspected yet"))]));
  }

  function renderDefects(list) {
    const defects = list.filter((r) => r.is_defect).slice(0, MAX_THUMBS);
    const key = defects.map((r) => r.event_id).join(",");
    if (key === state.thumbsKey) return; // unchanged: keep the images, no flicker
    state.thumbsKey = key;
    const box = $("defects");
    if (!defects.length) {
      box.replaceChildren(el("p", { class: "muted" }, "no defects among the last inspections"));
      return;
    }
    box.replaceChildren(...defects.map((r) => {
      let pic;
      if (r.snapshot) {
        pic = el("img", { src: "snapshots/" + encodeURIComponent(r.snapshot), alt: (r.label || "defect") + " snapshot",
          loading: "lazy" });
        pic.addEventListener("error", () => pic.replaceWith(el("div", { class: "noimg" }, "snapshot removed")));
      } else {
        pic = el("div", { class: "noimg" }, "no snapshot");
      }
      return el("figure", {}, pic, el("figcaption", {}, el("b", {}, r.label || "defect"), " " + num(r.score, 2),
        el("br"), el("span", { class: "muted" }, time(r.ts) + (r.sku ? " · " + r.sku : ""))));
    }));
  }

  // -- polling ---------------------------------------------------------------------------------
  async function pollStatus() {
    try {
      const s = await getJSON("api/status");
      state.statusFailures = 0;
      state.lastOk = Date.now();
      renderStatus(s);
      setConnected(true, s.health || "");
    } catch (e) {
      state.statusFailures += 1;
      setConnected(false, String(e && e.message ? e.message : e));
    }
    const pause = state.statusFailures ? Math.min(5000, STATUS_MS * (1 + state.statusFailures)) : STATUS_MS;
    setTimeout(pollStatus, pause);
  }

  async function pollRecent() {
    try {
      const r = await getJSON("api/recent?limit=200");
      renderDefects(Array.isArray(r.inspections) ? r.inspections : []);
    } catch (e) {
      // the status poll reports the connection; keep the thumbnails we have
    }
    setTimeout(pollRecent, state.statusFailures ? 5000 : RECENT_MS);
  }

  pollStatus();
  pollRecent();
})();
