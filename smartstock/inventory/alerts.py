"""Alert rules as pure functions: given figures, which alerts should be open right now.

Each alert has a `key` (one open alert per key, e.g. `low_stock:PCB-100`); the store keeps them
(smartstock.store.alerts, which also defines `Alert`) and closes an alert when its rule stops returning it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from smartstock.store.alerts import Alert

__all__ = ["CAMERA_DOWN", "DEFECT_RATE", "LOW_STOCK", "STALE_SALES", "camera_down", "defect_rate", "low_stock",
           "low_stock_from_plans", "stale_sales"]

LOW_STOCK = "low_stock"
DEFECT_RATE = "defect_rate"
CAMERA_DOWN = "camera_down"
STALE_SALES = "stale_sales"


def low_stock(sku: str, on_hand: float, reorder_point: float | None) -> Alert | None:
    """Open when on-hand stock is at or below the reorder point (none without a reorder point)."""
    if reorder_point is None or on_hand > reorder_point:
        return None
    severity = "critical" if on_hand <= 0 else "warning"
    return Alert(f"{LOW_STOCK}:{sku}", LOW_STOCK,
                 f"{sku}: on hand {on_hand:g} is at or below the reorder point {reorder_point:.1f}; order now",
                 severity, sku, {"on_hand": on_hand, "reorder_point": reorder_point})


def low_stock_from_plans(plans: Iterable[Mapping[str, Any]]) -> list[Alert]:
    """Low-stock alerts for every plan dict with `sku`, `on_hand` and `reorder_point`."""
    out = []
    for p in plans:
        rop = p.get("reorder_point")
        a = low_stock(str(p["sku"]), float(p.get("on_hand") or 0.0), None if rop is None else float(rop))
        if a is not None:
            out.append(a)
    return out


def defect_rate(sku: str, defects: int, parts: int, threshold: float, min_parts: int) -> Alert | None:
    """Open when the defect share of the last `parts` parts exceeds `threshold`; needs `min_parts` parts
    so a single bad part at start-up does not page anyone."""
    if parts < max(1, min_parts):
        return None
    rate = defects / parts
    if rate <= threshold:
        return None
    severity = "critical" if rate > 2 * threshold else "warning"
    return Alert(f"{DEFECT_RATE}:{sku}", DEFECT_RATE,
                 f"{sku}: defect rate {rate:.1%} over the last {parts} parts exceeds {threshold:.1%}; check the line",
                 severity, sku, {"rate": rate, "defects": defects, "parts": parts, "threshold": threshold})


def camera_down(source: str, status: str, seconds_since_frame: float, down_after_s: float, *,
                camera: str | None = None) -> Alert | None:
    """Open when the source has not delivered a usable frame for `down_after_s` seconds. `camera`: the
    camera id on a device with several ([[sources]]), so each camera's alert opens and clears on its own."""
    if seconds_since_frame < down_after_s:
        return None
    detail: dict[str, Any] = {"status": status, "seconds_since_frame": round(seconds_since_frame, 1)}
    if camera is not None:
        detail["camera"] = camera
    fix = "check the camera's output and its ROI" if status == "error" else "check cable and power"
    return Alert(CAMERA_DOWN if camera is None else f"{CAMERA_DOWN}:{camera}", CAMERA_DOWN,
                 f"camera {source}: no usable frame for {seconds_since_frame:.0f} s (status {status}); {fix}",
                 "critical", None, detail)


def stale_sales(plans: Iterable[Mapping[str, Any]]) -> Alert | None:
    """Open while plans are built from a sales history that ends in a data gap or stopped long ago
    (`smartstock.inventory.history`): the figures are from old data, someone should check the feed."""
    stale = [p for p in plans if p.get("stale")]
    if not stale:
        return None
    first = stale[0]
    return Alert(STALE_SALES, STALE_SALES,
                 f"stale sales for {len(stale)} SKU(s): {first.get('stale_reason')}; check the sales export/feed",
                 "warning", None, {"skus": sorted(str(p["sku"]) for p in stale)[:50],
                                   "history_end": first.get("history_end"), "last_sale": first.get("last_sale_any"),
                                   "data_gap": first.get("data_gap")})
