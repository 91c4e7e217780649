"""Read what the report shows: sales, inspections, stock and the current model's evaluation.

Inputs come from the device's store, or from CSV files for a report made away from the device. Every
reader validates at the boundary: a bad row names the file, line and field.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from smartstock.errors import InputError
from smartstock.report.model import Inspection
from smartstock.store.db import Store

logger = logging.getLogger(__name__)

TRUE = {"1", "true", "yes", "y", "defect"}
FALSE = {"0", "false", "no", "n", "ok", "good", ""}


def sales_from_store(store: Store) -> dict[str, list[tuple[str, float]]]:
    """Per SKU, (date, quantity) summed per day from the sales cache."""
    out: dict[str, list[tuple[str, float]]] = {}
    for sku, date, qty in store.query("SELECT sku, date, SUM(quantity) FROM sales GROUP BY sku, date ORDER BY sku, date"):
        out.setdefault(sku, []).append((date, float(qty)))
    return out


def sales_from_csv(path: Path) -> tuple[dict[str, list[tuple[str, float]]], list[str]]:
    """Per SKU (date, quantity) from a sales CSV, plus the rejected rows as `FILE:LINE: reason`.

    Uses the shared streaming reader (`smartstock.ingest.iter_sales_csv`) so the report accepts exactly
    what `smartstock sales import` accepts.
    """
    from smartstock.ingest import RowError, iter_sales_csv

    out: dict[str, list[tuple[str, float]]] = {}
    errors: list[str] = []
    for item in iter_sales_csv(Path(path)):
        if isinstance(item, RowError):
            errors.append(f"{path}:{item.line}: {item.reason}")
            continue
        out.setdefault(item.sku, []).append((item.date.isoformat(), float(item.quantity)))
    return out, errors


def inspections_from_store(store: Store, limit: int = 500_000) -> list[Inspection]:
    """The most recent `limit` inspections (oldest first)."""
    rows = store.query("SELECT ts, sku, label, is_defect FROM (SELECT id, ts, sku, label, is_defect FROM inspections "
                       "ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,))
    out = []
    for ts, sku, label, is_defect in rows:
        try:
            out.append(Inspection(_parse_ts(ts), sku, label, bool(is_defect)))
        except ValueError:
            logger.warning("inspection with unreadable timestamp %r skipped", ts)
    return out


def inspections_from_csv(path: Path, good_labels: list[str]) -> tuple[list[Inspection], list[str]]:
    """Inspections from a CSV with columns `ts,label` and optional `sku`, `is_defect`.

    Without `is_defect`, a part is defective when its label is not one of `good_labels`
    (config inspection.good_labels). Returns the rows and the rejected ones as `FILE:LINE: reason`.
    """
    path = Path(path)
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"{path}: cannot read inspections CSV: {e.strerror}",
                         hint="pass an existing CSV with columns ts,label[,sku][,is_defect]") from None
    rows: list[Inspection] = []
    errors: list[str] = []
    with f:
        sample = f.readline()
        f.seek(0)
        delim = ";" if sample.count(";") > sample.count(",") else ","
        reader = csv.DictReader(f, delimiter=delim)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        missing = {"ts", "label"} - set(cols)
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))}; found {', '.join(cols) or 'none'}",
                             hint="the inspections CSV needs a header ts,label and may add sku,is_defect")
        good = {g.lower() for g in good_labels}
        for raw in reader:
            line = reader.line_num
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            if not any(row.values()):
                continue
            try:
                ts = _parse_ts(row["ts"])
            except ValueError:
                errors.append(f"{path}:{line}: ts {row['ts']!r} is not an ISO date/time (e.g. 2026-03-01T08:00:00Z)")
                continue
            label = row["label"]
            if not label:
                errors.append(f"{path}:{line}: label is empty")
                continue
            flag = row.get("is_defect")
            if flag is None or flag == "" and "is_defect" not in cols:
                is_defect = label.lower() not in good
            elif flag.lower() in TRUE:
                is_defect = True
            elif flag.lower() in FALSE:
                is_defect = False
            else:
                errors.append(f"{path}:{line}: is_defect {flag!r} is not 0/1/true/false")
                continue
            rows.append(Inspection(ts, row.get("sku") or "", label, is_defect))
    return rows, errors


def model_evaluation(model_path: Path | None, state_dir: Path | None = None, configured: Path | None = None,
                     ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """(manifest, evaluation report, where they came from) of the defect model the device serves.

    Same order as the service: `model_path` (asked for explicitly), else the release installed over
    the air (`STATE/models/defect-classifier/current`), else `configured` (vision.model), else the
    shipped default. The evaluation comes from `evaluation.json` beside the model when present, else
    the manifest's metrics.
    """
    ota_current = Path(state_dir) / "models" / "defect-classifier" / "current" if state_dir else None
    if model_path is None and ota_current is not None and (ota_current / "manifest.json").is_file():
        model_path = ota_current
    folder = _model_folder(model_path or configured)
    if folder is None:
        return None, None, "no defect model configured and no shipped model found"
    manifest = _read_json(folder / "manifest.json")
    evaluation = _read_json(folder / "evaluation.json")
    if manifest is None and evaluation is None:
        return None, None, f"no manifest.json or evaluation.json in {folder}"
    return manifest, evaluation, str(folder)


def _model_folder(model_path: Path | None) -> Path | None:
    if model_path is not None:
        p = Path(model_path)
        return p if p.is_dir() else p.parent
    try:
        from smartstock.vision.classifier import default_model_path

        return Path(default_model_path()).parent
    except Exception as e:  # noqa: BLE001 - any failure just means "no shipped model to show"
        logger.info("no shipped defect model found (%s)", e)
    repo_default = Path(__file__).resolve().parents[2] / "models" / "defect"
    return repo_default if repo_default.is_dir() else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        logger.warning("%s: unreadable (%s); the report shows it as missing", path, e)
        return None
    return data if isinstance(data, dict) else None


def _parse_ts(value: str) -> dt.datetime:
    ts = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "T", 1))
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)
