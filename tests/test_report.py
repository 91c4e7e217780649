"""`smartstock report` on a store filled like a device's (sales, movements, inspections) and on CSVs:
every chart is a real PNG referenced by index.html, charts without data say so, bad rows are named."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smartstock.report.charts_base import is_placeholder
from smartstock.store import open_store
from smartstock.store.stock import book

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SKUS = {"GEAR-A": 30.0, "HOUSING-B": 8.0, "SPARE-C": 0.2}  # mean units per day; SPARE-C is intermittent
CONFIG = """
[forecast]
model = "theta"          # fast; the selection (`auto`) has its own tests
freq = "W"
horizon = 6
[inventory.defaults]
order_cost = 50.0
holding_cost = 2.0
lead_time_days = 7.0
[inventory.skus.HOUSING-B]
service_level = 0.98
service_type = "fill_rate"
lead_time_days = 14.0
"""


def fill_store(state: Path, days: int = 420, parts: int = 1500) -> None:
    """Seeded sales with trend and weekly season, stock bookings and inspections with a defect burst."""
    rng = np.random.default_rng(7)
    end = dt.date(2026, 10, 31)
    with open_store(state) as store, store.transaction() as conn:
        for sku, mean in SKUS.items():
            for i in range(days):
                day = end - dt.timedelta(days=days - 1 - i)
                lam = mean * (1 + 0.2 * i / 365) * (0.5 if day.weekday() >= 5 else 1.2)
                qty = float(rng.poisson(lam))
                if qty:
                    conn.execute("INSERT INTO sales(sku, date, quantity, natural_key, imported_at) VALUES (?,?,?,?,?)",
                                 (sku, day.isoformat(), qty, f"{sku}:{day}", "2026-10-31T00:00:00.000Z"))
            book(conn, sku, "received", 40 * mean + 5, ref=f"rcv:{sku}")
        t0 = dt.datetime(2026, 10, 30, 6, tzinfo=dt.timezone.utc)
        produced = scrapped = 0
        for i in range(parts):
            rate = 0.15 if 900 <= i < 1000 else 0.02
            label = "ok" if rng.random() > rate else str(rng.choice(["scratch", "hole"]))
            conn.execute("INSERT INTO inspections(event_id, ts, sku, label, score, is_defect) VALUES (?,?,?,?,?,?)",
                         (f"ev{i}", (t0 + dt.timedelta(seconds=40 * i)).isoformat(), "GEAR-A", label, 0.9,
                          int(label != "ok")))
            produced += label == "ok"
            scrapped += label != "ok"
        book(conn, "GEAR-A", "produced", produced, ref="made")
        book(conn, "GEAR-A", "scrapped", scrapped, ref="scrap")


def write_model_evaluation(folder: Path) -> Path:
    """evaluation.json in the shape the vision evaluation writes (its own code makes it)."""
    from smartstock.vision.metrics import evaluate_scores

    rng = np.random.default_rng(0)
    labels = ["ok", "scratch", "hole"]
    y = rng.integers(0, 3, 300)
    scores = np.full((300, 3), 0.05)
    scores[np.arange(300), np.where(rng.random(300) < 0.9, y, (y + 1) % 3)] = 0.9
    report = evaluate_scores(y, scores, labels, ["scratch", "hole"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(report), encoding="utf-8")
    return folder


def check_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name}: not a PNG"
    assert 5_000 < len(data) < 1_500_000, f"{path.name}: {len(data)} bytes"
    with Image.open(path) as im:
        im.load()  # decodes every pixel: a truncated file fails here
        w, h = im.size
    assert 600 <= w <= 2500 and 200 <= h <= 2000, f"{path.name}: {w}x{h} px"
    return w, h


def referenced_images(index: Path) -> list[str]:
    return re.findall(r"<img[^>]+src='([^']+)'", index.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The report rendered once from a filled store through the real CLI (module scope: ~10 s)."""
    from tests.fixtures.cli import Cli
    import os

    base = tmp_path_factory.mktemp("report")
    state = base / "state"
    fill_store(state)
    (base / "smartstock.toml").write_text(CONFIG, encoding="utf-8")
    model = write_model_evaluation(base / "model")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}
    cli = Cli(env, base)
    # the device's forecast runs: the report then shows the device's plans, horizon included
    assert cli("forecast", "--from-store", "--state-dir", state, "--config", base / "smartstock.toml").rc == 0
    r = cli("report", "--out", base / "out", "--state-dir", state, "--config", base / "smartstock.toml",
            "--model", model, "--top", "2")
    return base, r


def test_every_chart_is_a_png_referenced_by_the_html(rendered):
    base, r = rendered
    assert r.rc == 0, r.err
    index = base / "out" / "index.html"
    assert f"report: {index}" in r.out
    charts = sorted((base / "out" / "charts").glob("*.png"))
    names = {p.name for p in charts}
    expected = {"sales_overview.png", "defect_rate.png", "defect_classes.png", "confusion_matrix.png"}
    for sku in ("GEAR-A", "HOUSING-B"):  # --top 2: the two biggest sellers get their own charts
        expected |= {f"sku_{sku}_{kind}.png" for kind in ("trend", "forecast", "policy", "phased", "simulation")}
    assert names == expected
    refs = referenced_images(index)
    assert sorted(refs) == sorted(f"charts/{n}" for n in names), "every chart referenced once, nothing else"
    for p in charts:
        check_png(p)
        assert not is_placeholder(p), f"{p.name} has data but was drawn as a no-data card"


def test_summary_table_has_the_policy_and_simulation_figures(rendered):
    base, _ = rendered
    html = (base / "out" / "index.html").read_text(encoding="utf-8")
    for sku in SKUS:  # SPARE-C is not in the top 2 but still in the tables
        assert f">{sku}<" in html
    assert "id='sku-SPARE-C'" not in html and "id='other-skus'" in html
    assert "98.0% FR" in html and "95.0% CSL" in html  # each SKU's own target from the config
    assert "model theta" in html or ">theta<" in html
    assert "simulated fill rate" in html and "holding + ordering cost" in html
    # accuracy from the evaluation file appears beside the confusion matrix
    acc = json.loads((base / "model" / "evaluation.json").read_text())["accuracy"]
    assert f"{acc:.2%}" in html


def test_charts_without_data_say_so(cli, tmp_path):
    """An empty state dir, no CSV, no model: every chart is a clear no-data card, exit 0."""
    out = tmp_path / "empty-report"
    r = cli("report", "--out", out, "--state-dir", tmp_path / "nothing-here", "--model", tmp_path / "no-model")
    assert r.rc == 0, r.err
    assert "no store" in r.err
    assert not (tmp_path / "nothing-here").exists(), "a report must not create a store"
    charts = sorted((out / "charts").glob("*.png"))
    assert {p.name for p in charts} == {"sales_overview.png", "defect_rate.png", "defect_classes.png",
                                        "confusion_matrix.png"}
    for p in charts:
        check_png(p)
        assert is_placeholder(p), p.name
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count("alt='no data for") == 4
    assert "no SKUs with sales" in html


def test_report_from_csv_files_names_bad_rows(cli, tmp_path):
    sales = tmp_path / "sales.csv"
    rows = ["sku,date,quantity"]
    start = dt.date(2025, 1, 6)
    rng = np.random.default_rng(3)
    for i in range(300):
        rows.append(f"P-1,{start + dt.timedelta(days=i)},{rng.poisson(12)}")
    rows.insert(5, "P-1,2025-13-45,3")        # line 6: bad date
    sales.write_text("\n".join(rows) + "\n", encoding="utf-8")
    insp = tmp_path / "inspections.csv"
    insp.write_text("ts,label,sku\n2026-01-05T08:00:00Z,ok,P-1\n2026-01-05T08:01:00Z,hole,P-1\n"
                    "yesterday,ok,P-1\n2026-01-05T08:03:00Z,ok,P-1\n", encoding="utf-8")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[forecast]\nmodel = "seasonal-naive"\n', encoding="utf-8")
    out = tmp_path / "csv-report"
    r = cli("report", "--out", out, "--sales", sales, "--inspections", insp, "--config", cfg,
            "--state-dir", tmp_path / "none", "--model", tmp_path / "none")
    assert r.rc == 3, (r.out, r.err)
    assert f"{sales}:6:" in r.err and f"{insp}:4:" in r.err and "Traceback" not in r.err
    charts = out / "charts"
    for name in ("sku_P-1_trend.png", "sku_P-1_forecast.png", "sku_P-1_policy.png", "sku_P-1_simulation.png",
                 "sku_P-1_phased.png",
                 "defect_rate.png", "defect_classes.png"):
        check_png(charts / name)
        assert not is_placeholder(charts / name), name
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "1 defective of 3 parts" not in html  # the title is in the PNG; the KPI is in the HTML
    assert "33.33%" in html  # 1 defect of the 3 good rows


def test_missing_input_file_is_a_clear_error(cli, tmp_path):
    r = cli("report", "--out", tmp_path / "o", "--sales", tmp_path / "nope.csv")
    assert r.rc == 3 and "nope.csv: file not found" in r.err and "Traceback" not in r.err
    r = cli("report", "--out", tmp_path / "o", "--top", "0", "--state-dir", tmp_path / "s")
    assert r.rc == 3 and "--top" in r.err


# -- the (s, Q) replay, by hand ------------------------------------------------------------------
def test_simulation_matches_a_hand_worked_replay():
    from smartstock.report.simulate import simulate_sq

    # s=30, Q=100, L=2, 10 a day, start 130: orders on days 9, 19 (position hits 30), arrive days 11, 21.
    res = simulate_sq([10.0] * 25, reorder_point=30, order_quantity=100, lead_time_days=2, holding_cost=36.5,
                      order_cost=20, unit_cost=1.0)
    assert res.order_days == [9, 19] and res.arrival_days == [11, 21]
    assert res.short_days == [] and res.fill_rate == 1.0 and res.cycle_service_level == 1.0
    assert res.on_hand[:3] == [120, 110, 100] and res.on_hand[10] == 20 and res.on_hand[11] == 110
    assert res.ordering_cost == 40 and res.purchase_cost == 200
    assert math.isclose(res.holding_cost, sum(res.on_hand) * 36.5 / 365)


def test_simulation_counts_lost_sales_and_backorders():
    from smartstock.report.simulate import simulate_sq

    # Lead time 5 days but the reorder point covers only 2: each cycle runs dry for 3 days.
    lost = simulate_sq([10.0] * 40, reorder_point=20, order_quantity=60, lead_time_days=5, initial_on_hand=80)
    assert lost.short_total > 0 and lost.stockout_events >= 2 and lost.fill_rate < 1.0
    assert min(lost.on_hand) == 0 and lost.cycle_service_level < 0.5
    assert math.isclose(lost.served_total + lost.short_total, lost.demand_total)
    back = simulate_sq([10.0] * 40, reorder_point=20, order_quantity=60, lead_time_days=5, initial_on_hand=80,
                       backorders=True)
    assert min(back.on_hand) < 0  # waiting demand shows as negative stock, served when stock arrives


def test_simulation_refuses_bad_parameters():
    from smartstock.errors import InputError
    from smartstock.report.simulate import simulate_sq

    with pytest.raises(InputError, match="order_quantity"):
        simulate_sq([1.0], reorder_point=1, order_quantity=0, lead_time_days=1)
    with pytest.raises(InputError, match="day 1"):
        simulate_sq([1.0, -2.0], reorder_point=1, order_quantity=5, lead_time_days=1)


def test_complete_buckets_drop_partial_ends():
    from smartstock.report.series import complete_buckets, daily

    days, vals = daily([("2026-01-07", 1), ("2026-01-26", 2), ("2026-02-10", 3)])  # Wed .. Tue
    weeks, sums = complete_buckets(days, vals, "W")
    assert weeks[0] == dt.date(2026, 1, 12) and weeks[-1] == dt.date(2026, 2, 2)  # whole Mon-Sun weeks only
    assert sums == [0.0, 0.0, 2.0, 0.0]  # 2026-01-26 is a Monday
    months, msum = complete_buckets(days, vals, "M")
    assert months == [] and msum == []  # neither January (starts 7th) nor February (ends 10th) is complete


def test_auto_reuses_the_model_the_device_chose(tmp_path):
    """With forecast.model = auto the report shows the device's latest choice instead of re-selecting."""
    from smartstock.config import parse_config
    from smartstock.report import build_report

    state = tmp_path / "state"
    rng = np.random.default_rng(5)
    with open_store(state) as store:
        with store.transaction() as conn:
            for i in range(300):
                day = dt.date(2025, 3, 3) + dt.timedelta(days=i)
                conn.execute("INSERT INTO sales(sku, date, quantity, natural_key, imported_at) VALUES (?,?,?,?,?)",
                             ("P-9", day.isoformat(), float(rng.poisson(9)), f"k{i}", "t"))
            conn.execute("INSERT INTO forecast_runs(sku, created_at, model, freq, horizon) VALUES (?,?,?,?,?)",
                         ("P-9", "2026-01-01T00:00:00Z", "seasonal-naive", "W", 8))
        result = build_report(tmp_path / "out", parse_config({"forecast": {"model": "auto"}}), store=store)
    html = result.index.read_text(encoding="utf-8")
    assert "title='auto: seasonal-naive (device&#x27;s choice)'>seasonal-naive<" in html
    assert "forecast:P-9" not in result.placeholders and "simulation:P-9" not in result.placeholders


def test_model_installed_over_the_air_is_the_one_shown(tmp_path):
    """Without --model, the report describes the release the device serves (STATE/models/.../current)."""
    from smartstock.config import Config
    from smartstock.report import build_report

    state = tmp_path / "state"
    release = state / "models" / "defect-classifier" / "releases" / "f00d"
    release.mkdir(parents=True)
    (release / "manifest.json").write_text(json.dumps(
        {"model_id": "line-cnn", "release": 3, "labels": ["ok", "void"], "metrics": {"accuracy": 0.9712}}))
    (state / "models" / "defect-classifier" / "current").symlink_to("releases/f00d")
    with open_store(state) as store:
        result = build_report(tmp_path / "out", Config(), store=store)
    html = result.index.read_text(encoding="utf-8")
    assert "Model <b>line-cnn</b> release 3" in html and "accuracy 97.12%" in html
    assert "confusion" in result.placeholders  # the manifest carries no confusion matrix: said, not failed
