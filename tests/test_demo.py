"""`smartstock demo`: runs in seconds, prints stock and policy figures, is reproducible and re-runnable."""

from __future__ import annotations

import json

import pytest

from edge.demo import DEMO_SKUS, STEPS, run_demo, sample_sales

# The inventory part of the demo (the appliance step that follows it is tested with the edge service).
INVENTORY_STEPS = [(name, fn) for name, fn in STEPS if name in ("config", "sales", "import", "stock", "policy", "summary")]


def test_sample_sales_are_seeded_and_shaped():
    rows = sample_sales(seed=3)
    assert rows == sample_sales(seed=3) and rows != sample_sales(seed=4)
    per_sku = {sku: [q for s, _, q, _ in rows if s == sku] for sku in DEMO_SKUS}
    assert len(per_sku["GEAR-A"]) > 700 and len(per_sku["SPARE-D"]) < 100  # the spare part is intermittent
    assert all(q > 0 for qs in per_sku.values() for q in qs)


def test_demo_inventory_steps_give_figures_and_rerun_identically(cli, tmp_path):
    out = tmp_path / "demo"
    said: list[str] = []
    ctx = run_demo(out, say=said.append, steps=INVENTORY_STEPS)
    assert any("imported sales" in m for m in said) and set(ctx.stock) == set(DEMO_SKUS)
    assert ctx.store is not None and ctx.store.path.parent == out / "state"
    first = json.loads((out / "policy.json").read_text())
    assert set(first["policies"]) == set(DEMO_SKUS)
    gear = first["policies"]["GEAR-A"]
    assert gear["lot_model"] == "epq" and gear["defect_rate"] == pytest.approx(0.05)
    assert gear["order_quantity"] == pytest.approx(gear["lot_size"] / 0.95)
    assert all(p["reorder_point"] > p["safety_stock"] > 0 for p in first["policies"].values())

    run_demo(out, steps=INVENTORY_STEPS)  # same folder again: nothing doubled
    assert json.loads((out / "policy.json").read_text()) == first
    # The figures come from the store and config the demo left behind, through the same plan as `policy`.
    for sku in ("HOUSING-B", "SPARE-D"):
        p = json.loads(cli("policy", sku, "--json", "--config", out / "smartstock.toml", "--state-dir",
                           out / "state").out)
        for k in ("demand_basis", "demand_per_day", "eoq", "order_quantity", "safety_stock", "reorder_point",
                  "safety_stock_basis", "history_end"):
            assert p[k] == first["policies"][sku][k], (sku, k)
    assert first["policies"]["SPARE-D"]["safety_stock_basis"].startswith("empirical:")  # the intermittent part
    assert first["policies"]["GEAR-A"]["safety_stock_basis"] == "normal"
