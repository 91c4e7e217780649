"""Periodic work beside the loop: inventory plans, alerts and the retained state on MQTT.

Every `forecast.refresh_interval_s`: plans per SKU (forecast + policy via
`smartstock.planning.refresh_plans`, with the demand model the OTA agent last handed over through
`set_demand_model`; each plan made by `smartstock.inventory.plan.plan_sku`, the function
`smartstock policy` and the report use too), computed in a child process (planner_proc.py:
forecasting must not starve the capture thread) and published retained on `{base}/inventory/<sku>`
(`payload_fields`: every key, null when unknown; the time-phased plan bounded). Every few seconds:
the alert rules (low stock, defect rate over the window, camera down per camera, stale sales) are evaluated,
the alerts table synced and, on change, the open alerts published retained on `{base}/alerts`.
Everything goes through the outbox, so it reaches the broker even after an outage. Every
`PRUNE_INTERVAL_S` (every round while catching up): the retention policy (`[retention]`,
smartstock/store/retention.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smartstock.config import Config
from smartstock.inventory import alerts as rules
from smartstock.inventory.plan import payload_fields, plan_sku, window_from_store
from smartstock.store import Store
from smartstock.store.alerts import open_alerts, sync_alerts
from smartstock.store.retention import Pruned, prune
from smartstock.store.stock import levels
from smartstock.sync.discovery import INVENTORY_KEYS
from smartstock.sync.outbox import PRIORITY_STATE, PRIORITY_TELEMETRY, enqueue
from smartstock.sync.payloads import message
from smartstock.sync.topics import Topics

logger = logging.getLogger(__name__)

RULE_KINDS = (rules.LOW_STOCK, rules.DEFECT_RATE, rules.CAMERA_DOWN, rules.STALE_SALES)
PRUNE_INTERVAL_S = 600.0  # between retention passes once caught up (history expires by days, not seconds)


class Refresher:
    """Runs in its own thread; sleeps only in stop_event.wait()."""

    def __init__(self, store: Store, config: Config, topics: Topics, *, status: Callable[[], dict[str, Any]],
                 camera: Callable[[], list[tuple[str, str, str, float]]], stop_event: threading.Event,
                 alert_interval_s: float = 5.0, isolate: bool = True, demand_model: Path | None = None) -> None:
        self.store = store
        self.config = config
        self.topics = topics
        self.status = status          # the service status dict for {base}/state
        self.camera = camera          # each live camera: (alert id, name, status, seconds without a usable frame)
        self.stop_event = stop_event
        self.alert_interval_s = alert_interval_s
        self.plans: list[dict[str, Any]] = []
        self.demand_model = demand_model  # an OTA-installed demand LSTM; None: forecast.lstm_model
        self.isolate = isolate  # plan in a child process (see planner_proc.py)
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.plan_error: str | None = None
        self.pruned = {"inspections": 0, "movements": 0}  # rows deleted by retention since start

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="refresh", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        import time
        next_plan = next_state = next_prune = 0.0
        planning: threading.Thread | None = None
        while not self.stop_event.is_set():
            now = time.monotonic()
            try:
                if now >= next_plan and (planning is None or not planning.is_alive()):
                    # its own thread: a forecast taking minutes must not delay the alert checks
                    planning = threading.Thread(target=self._plan_logged, name="planning", daemon=True)
                    planning.start()
                    next_plan = now + self.config.forecast.refresh_interval_s
                self.check_alerts()
                if now >= next_state:
                    self.publish_state()
                    next_state = now + self.config.mqtt.stats_interval_s
                if now >= next_prune:
                    next_prune = now + (0.0 if self.prune_history().more else PRUNE_INTERVAL_S)
                self.error = None
            except Exception as e:  # noqa: BLE001 - a failing refresh must not stop inspection; retried next round
                if self.error is None:
                    logger.exception("refresh failed (will retry): %s", e)
                self.error = f"{type(e).__name__}: {e}"
            self.stop_event.wait(self.alert_interval_s)
        if planning is not None:
            planning.join(5.0)

    def _plan_logged(self) -> None:
        try:
            self.refresh_plans()
            self.plan_error = None
        except Exception as e:  # noqa: BLE001 - keep the last good plans; retried at the next interval
            self.plan_error = f"{type(e).__name__}: {e}"
            logger.error("inventory planning failed (keeping the previous plans): %s", self.plan_error)

    def set_demand_model(self, path: Path | None) -> None:
        """Plan with this demand LSTM from the next refresh on (the OTA agent installed, committed or
        rolled one back); None: forecast.lstm_model as configured."""
        if path != self.demand_model:
            logger.info("planner: demand model %s from the next refresh", path or "as configured")
        self.demand_model = path

    def planning_config(self) -> Config:
        """The config the planner runs with: the shared one, with the served demand model if any."""
        path = self.demand_model
        if path is None:
            return self.config
        return self.config.model_copy(update={"forecast": self.config.forecast.model_copy(update={"lstm_model": path})})

    # -- the three jobs, callable directly (tests, start-up) ---------------------------------
    def refresh_plans(self) -> list[dict[str, Any]]:
        config = self.planning_config()
        if self.isolate:
            from edge.planner_proc import plan_in_subprocess

            got = plan_in_subprocess(self.store.path.parent, config, self.stop_event)
            if got is None:  # stopping
                return self.plans
            plans = got
        else:
            from smartstock.planning import refresh_plans  # forecasting stack: loaded only where plans are made

            plans = refresh_plans(self.store, config)
        with self.store.transaction() as conn:
            stock = levels(conn)
            window = None
            for i, p in enumerate(plans):
                lv = stock.get(p["sku"], {})
                if (lv.get("on_hand", 0.0), lv.get("defect_rate", 0.0)) != (p.get("on_hand"), p.get("defect_rate")):
                    # stock moved while the child planned: the same function again, on today's figures
                    window = window or window_from_store(conn, config.forecast)
                    plans[i] = p = plan_sku(conn, config, p["sku"], window=window)
                enqueue(conn, self.topics.inventory(p["sku"]), message(self.topics.device_id, **_inventory_fields(p)),
                        retain=True, priority=PRIORITY_STATE)
        self.plans = plans
        logger.info("inventory plans refreshed for %d SKU(s)", len(plans))
        return plans

    def evaluate(self) -> list[rules.Alert]:
        """The alerts that should be open now (pure rules over current figures)."""
        cfg = self.config.alerts
        active: list[rules.Alert] = []
        with self.store.read() as conn:
            stock = levels(conn)
            if cfg.low_stock:
                rops = {p["sku"]: p.get("reorder_point") for p in self.plans}
                for sku, rop in rops.items():
                    a = rules.low_stock(sku, stock.get(sku, {}).get("on_hand", 0.0), rop)
                    if a:
                        active.append(a)
            inspected = {sku: conn.execute("SELECT COUNT(*), COALESCE(SUM(is_defect), 0) FROM (SELECT is_defect "
                                           "FROM inspections WHERE sku = ? ORDER BY id DESC LIMIT ?)",
                                           (sku, cfg.defect_window)).fetchone()
                         for sku in self.config.camera_skus()}  # every camera's SKU ([[sources]])
        a = rules.stale_sales(self.plans)
        if a:
            active.append(a)
        for sku, (n, d) in inspected.items():
            a = rules.defect_rate(sku, int(d), int(n), cfg.defect_rate_threshold, min(cfg.defect_window, 50))
            if a:
                active.append(a)
        for cam_id, name, status, since in self.camera():  # one alert per camera: each opens and clears alone
            a = rules.camera_down(name, status, since, cfg.camera_down_after_s, camera=cam_id or None)
            if a:
                active.append(a)
        return active

    def check_alerts(self, force_publish: bool = False) -> list[dict[str, Any]]:
        active = self.evaluate()
        with self.store.transaction() as conn:
            opened, closed = sync_alerts(conn, active, RULE_KINDS)
            current = open_alerts(conn)
            if opened or closed or force_publish:
                enqueue(conn, self.topics.alerts, message(self.topics.device_id, alerts=current),
                        retain=True, priority=PRIORITY_STATE)
        for key in opened:
            logger.warning("alert opened: %s", next(a.message for a in active if a.key == key))
        for key in closed:
            logger.info("alert cleared: %s", key)
        return current

    def prune_history(self, now: float | None = None) -> Pruned:
        """One batch of the retention policy; `more` is set while expired rows remain."""
        cfg = self.config.retention
        got = prune(self.store, inspections_days=cfg.inspections_days, movements_days=cfg.movements_days,
                    batch_rows=cfg.batch_rows, now=now)
        if got.inspections or got.movements:
            first = not (self.pruned["inspections"] or self.pruned["movements"])
            self.pruned["inspections"] += got.inspections
            self.pruned["movements"] += got.movements
            if first or not got.more:
                logger.info("retention: %d inspection(s), %d movement(s) deleted so far (%s)",
                            self.pruned["inspections"], self.pruned["movements"],
                            "catching up" if got.more else "caught up")
        return got

    def publish_state(self) -> None:
        """`{base}/state`, and each camera of its `cameras` list on `{base}/camera/<id>/state` (retained:
        a dashboard or Home Assistant reads one camera without picking it out of the list)."""
        state = self.status()
        with self.store.transaction() as conn:
            enqueue(conn, self.topics.state, message(self.topics.device_id, **state),
                    retain=True, priority=PRIORITY_TELEMETRY)
            for cam in state.get("cameras") or []:
                enqueue(conn, self.topics.camera_state(cam["id"]), message(self.topics.device_id, **cam),
                        retain=True, priority=PRIORITY_TELEMETRY)


def _inventory_fields(plan: dict[str, Any]) -> dict[str, Any]:
    """The retained inventory message: the plan's payload fields, with every key HA's sensors read."""
    out = payload_fields(plan)
    out.update({k: out.get(k) for k in INVENTORY_KEYS})  # present, null while unknown
    return out
