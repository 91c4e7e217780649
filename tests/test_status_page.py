"""The status page in a real headless browser (Debian's chromium driven by Playwright), served by the
real edge service (`smartstock run`) on a looping folder of parts and the exported test model:
no console errors, counters moving, defect thumbnails from /snapshots, stock per SKU, and
"disconnected" with the last values kept when the service stops."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edge.samples import write_parts
from smartstock.store import open_store
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SKU = "PCB-S"
CONFIG = f"""
[device]
device_id = "page-cam"
[inspection]
sku = "{SKU}"
[forecast]
model = "seasonal-naive"   # the planner runs at start; keep it quick
[http]
port = 0
"""
# Failed requests after the service stopped are logged by chromium itself; nothing else may be.
NETWORK_ERRORS = ("Failed to load resource", "net::ERR_")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (make test installs it)")




@pytest.fixture(scope="module")
def service(tmp_path_factory, request):
    """`smartstock run` replaying a looping parts folder at 6 parts/s with its HTTP server on a free port."""
    model_dir = Path(request.getfixturevalue("defect_model_dir"))
    model = sorted(model_dir.glob("*.onnx"))[0]
    base = tmp_path_factory.mktemp("status-page")
    write_parts(base / "parts", 24, size=96, defect_rate=0.4, seed=3)
    state = base / "state"
    with open_store(state) as store, store.transaction() as conn:  # some sales, so the SKU gets a plan
        for i in range(120):
            day = dt.date(2026, 6, 1) + dt.timedelta(days=i)
            conn.execute("INSERT INTO sales(sku, date, quantity, natural_key, imported_at) VALUES (?,?,?,?,?)",
                         (SKU, day.isoformat(), 20 + i % 7, f"s{i}", "test"))
    (base / "smartstock.toml").write_text(CONFIG, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTSTOCK_", "NOTIFY_", "WATCHDOG_"))}
    log = open(base / "service.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "smartstock", "run", "--config", str(base / "smartstock.toml"),
                             "--model", str(model), "--state-dir", str(state), "--source", str(base / "parts"),
                             "--loop", "--fps", "6"], stdout=log, stderr=subprocess.STDOUT, cwd=base,
                            env={**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    port_file = state / "http.port"
    try:
        port = wait_until(lambda: port_file.exists() and port_file.read_text().strip()
                         and int(port_file.read_text()) or (proc.poll() is not None and -1), 90, "http.port")
        assert port > 0, f"service exited early with {proc.returncode}: {(base / 'service.log').read_text()[-2000:]}"
        yield {"proc": proc, "url": f"http://127.0.0.1:{port}/", "base": base}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(service):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.console_messages = []  # type: ignore[attr-defined]
        pg.page_errors = []  # type: ignore[attr-defined]
        pg.on("console", lambda m: pg.console_messages.append((m.type, m.text)))
        pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
        pg.goto(service["url"])
        yield pg
        browser.close()


def _counters(pg) -> dict:
    return pg.evaluate("""() => Object.fromEntries(['c-parts','c-good','c-defects','c-rate','c-fps','c-camera',
        'c-model','c-outbox','c-p50','c-p99','conn'].map(id => [id, document.getElementById(id).textContent]))""")


def _int(text: str) -> int:
    return int(text.replace(",", "").replace("\u202f", "").replace(".", "").strip())


def _screenshot(pg, tmp_path: Path, name: str) -> None:
    pg.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("SMARTSTOCK_SCREENSHOTS"):  # to look at them: not kept by the test suite
        Path(os.environ["SMARTSTOCK_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(os.environ["SMARTSTOCK_SCREENSHOTS"]) / name)


def test_live_counters_move_without_console_errors(page, service, tmp_path):
    pg = page
    pg.wait_for_function("document.getElementById('conn').textContent === 'live'", timeout=30_000)
    pg.wait_for_function("parseInt(document.getElementById('c-parts').textContent.replace(/\\D/g, '')) > 0",
                         timeout=30_000)
    first = _counters(pg)
    parts1 = _int(first["c-parts"])
    pg.wait_for_function(f"parseInt(document.getElementById('c-parts').textContent.replace(/\\D/g, '')) > {parts1}",
                         timeout=15_000)
    now = _counters(pg)
    assert _int(now["c-parts"]) > parts1
    assert _int(now["c-good"]) + _int(now["c-defects"]) == _int(now["c-parts"])  # same snapshot, consistent
    assert now["c-camera"] == "ok" and now["c-model"] != "–" and now["c-p99"].endswith("ms")
    assert now["conn"] == "live"
    assert not pg.locator("#banner").is_visible()
    cams = pg.evaluate("() => [...document.querySelectorAll('#cameras tr')].map(r => [...r.cells].map(c => c.textContent))")
    assert len(cams) == 1 and cams[0][:3] == ["cam1", SKU, "ok"], cams  # the one-camera shortcut
    assert len(cams[0]) == 11 and cams[0][6].endswith("%") and cams[0][9] == "0", cams  # rate, ..., capture errors

    # The stock table shows the line's SKU with the plan the service computed (planning runs in the
    # background after start-up, so wait for the service's first plan, then for the page to show it).
    def service_plan():
        with urllib.request.urlopen(service["url"] + "api/status", timeout=5) as r:
            return next((p for p in json.load(r)["plans"] if p["sku"] == SKU), None)

    plan = wait_until(service_plan, 90, f"the service's plan for {SKU}")
    row_js = f"[...document.querySelectorAll('#stock tr')].find(tr => tr.cells[0].textContent === '{SKU}')"
    if plan.get("reorder_point") is not None:
        rop = f"{round(plan['reorder_point']):,}"
        pg.wait_for_function(f"(() => {{ const r = {row_js}; return r && r.cells[2].textContent === '{rop}'; }})()",
                             timeout=15_000)
        row = pg.evaluate(f"{row_js}.innerText").split("\t")
        assert row[-1] in ("ok", "reorder"), row
    else:  # e.g. the tiny test model calls most parts defective, so the yield is too low to plan
        pg.wait_for_function(f"(() => {{ const r = {row_js}; return r && r.cells[12].textContent === 'no plan'; }})()",
                             timeout=15_000)
        pg.wait_for_function("document.getElementById('plan-notes').textContent.length > 0", timeout=15_000)
        assert plan["error"][:40] in pg.inner_text("#plan-notes"), plan

    # Recent defects: exactly what /api/recent reports, each snapshot served by the device and decoded.
    time.sleep(3.5)  # one /api/recent poll after the checks above
    with urllib.request.urlopen(service["url"] + "api/recent?limit=200", timeout=5) as r:
        recent = json.load(r)["inspections"]
    defects = [x for x in recent if x["is_defect"] and x["snapshot"]]
    if defects:
        pg.wait_for_function("""() => { const imgs = [...document.querySelectorAll('#defects figure img')];
            return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }""", timeout=15_000)
        assert pg.locator("#defects figure").count() <= 12
    else:
        assert "no defects" in pg.inner_text("#defects")
    assert pg.locator("#recent tr").count() >= 1

    _screenshot(pg, tmp_path, "status_live.png")
    errors = [m for m in pg.console_messages if m[0] in ("error", "warning")]
    assert errors == [] and pg.page_errors == []


def test_shows_disconnected_and_keeps_last_values_when_the_service_stops(page, service, tmp_path):
    pg = page
    pg.wait_for_function("document.getElementById('conn').textContent === 'live'", timeout=30_000)
    before = _int(_counters(pg)["c-parts"])
    proc = service["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    pg.wait_for_function("document.getElementById('conn').textContent === 'disconnected'", timeout=15_000)
    assert "stale" in pg.evaluate("document.body.className")
    after = _counters(pg)
    assert _int(after["c-parts"]) >= before  # last values kept, greyed out
    assert "last data" in pg.inner_text("#updated")
    assert pg.locator("#banner").is_visible() and "No answer from the device" in pg.inner_text("#banner")
    _screenshot(pg, tmp_path, "status_disconnected.png")
    assert pg.page_errors == [], "no JavaScript exception while the device is away"
    unexpected = [m for m in pg.console_messages if m[0] == "error" and not any(s in m[1] for s in NETWORK_ERRORS)]
    assert unexpected == []
