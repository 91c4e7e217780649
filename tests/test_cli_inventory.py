"""`smartstock eoq`, `stock`, `sku` and `policy` through the real command."""

from __future__ import annotations

import json

import pytest


def test_eoq_text_and_json(cli):
    r = cli("eoq", "--demand", "1200", "--order-cost", "50", "--holding-cost", "2")
    assert r.rc == 0 and "EOQ: 244.95 units" in r.out and "489.90" in r.out
    j = json.loads(cli("eoq", "--demand", "1200", "--order-cost", "50", "--holding-cost", "2", "--json").out)
    assert j["eoq"] == pytest.approx(244.949, abs=1e-3) and j["orders_per_year"] == pytest.approx(4.899, abs=1e-3)
    assert j["annual_total_cost"] == pytest.approx(489.898, abs=1e-3)
    j = json.loads(cli("eoq", "--demand", "1000", "--order-cost", "10", "--holding-cost", "0.5",
                       "--production-rate", "2000", "--json").out)
    assert j["model"] == "epq" and j["order_quantity"] == pytest.approx(282.84, abs=0.01)


@pytest.mark.parametrize("args,word", [
    (["--demand", "1200", "--order-cost", "50", "--holding-cost", "0"], "holding_cost"),
    (["--demand", "-5", "--order-cost", "50", "--holding-cost", "2"], "demand"),
    (["--demand", "1000", "--order-cost", "10", "--holding-cost", "1", "--production-rate", "800"], "production_rate"),
])
def test_eoq_invalid_parameters_exit_2_with_the_name(cli, args, word):
    r = cli("eoq", *args)
    assert r.rc == 2 and word in r.err and "Traceback" not in r.err


def test_stock_moves_and_policy_with_yield(cli, tmp_path):
    assert cli("stock", "move", "GEAR", "produced", "900").rc == 0
    assert cli("stock", "move", "GEAR", "scrapped", "100", "--ref", "batch-7").rc == 0
    assert "already booked" in cli("stock", "move", "GEAR", "scrapped", "100", "--ref", "batch-7").out
    assert cli("stock", "move", "GEAR", "adjusted", "--", "-20").rc == 0
    bad = cli("stock", "move", "GEAR", "produced", "-3")
    assert bad.rc == 2 and "adjusted" in bad.err
    stock = json.loads(cli("stock", "--json").out)["skus"]["GEAR"]
    assert (stock["produced"], stock["scrapped"], stock["on_hand"]) == (900, 100, 880)
    assert stock["defect_rate"] == pytest.approx(0.1)

    # No sales yet: the annual demand set on the device is the demand.
    r = cli("policy", "GEAR")
    assert r.rc == 2 and "sku set GEAR --annual-demand" in r.err
    assert cli("sku", "set", "GEAR", "--annual-demand", "1200", "--order-cost", "50", "--holding-cost", "2").rc == 0
    p = json.loads(cli("policy", "GEAR", "--json").out)
    assert p["eoq"] == pytest.approx(244.949, abs=1e-3)
    assert p["defect_rate"] == pytest.approx(0.1)
    assert p["order_quantity"] == pytest.approx(p["eoq"] / 0.9)  # start Q / (1 - p)
    assert p["on_hand"] == 880 and p["demand_source"] == "config:annual_demand"
    # Lead-time demand in units consumed, d L / (1 - p); the safety stock then covers scrap variance alone
    # (no demand or lead-time variability was given): z sqrt(d L p) / (1 - p).
    assert p["reorder_point"] - p["safety_stock"] == pytest.approx(1200 / 365 * 7 / 0.9)
    assert p["safety_stock"] == pytest.approx(1.6449 * (1200 / 365 * 7 * 0.1) ** 0.5 / 0.9, rel=1e-4)


def test_sku_overrides_win_over_config_and_bad_values_change_nothing(cli, tmp_path):
    cfg = tmp_path / "smartstock.toml"
    cfg.write_text("[inventory.defaults]\nlead_time_days = 10\n[inventory.skus.B1]\nlead_time_days = 4\nunit_cost = 3\n")
    assert cli("sku", "set", "B1", "--config", cfg, "--service-level", "0.99", "--lead-time-days", "2",
               "--name", "Bracket").rc == 0
    bad = cli("sku", "set", "B1", "--config", cfg, "--holding-cost", "0")
    assert bad.rc == 2 and "holding_cost" in bad.err
    shown = json.loads(cli("sku", "show", "B1", "--config", cfg, "--json").out)
    assert shown["name"] == "Bracket"
    assert shown["policy"]["lead_time_days"] == 2 and shown["source"]["lead_time_days"] == "store"
    assert shown["policy"]["unit_cost"] == 3 and shown["source"]["unit_cost"] == "config sku"
    assert shown["policy"]["holding_cost"] == 2 and shown["source"]["holding_cost"] == "config default"
    assert cli("sku", "set", "B1", "--config", cfg, "--clear", "lead_time_days").rc == 0
    shown = json.loads(cli("sku", "show", "B1", "--config", cfg, "--json").out)
    assert shown["policy"]["lead_time_days"] == 4 and shown["policy"]["service_level"] == 0.99
    listed = json.loads(cli("sku", "list", "--config", cfg, "--json").out)
    assert [row["sku"] for row in listed] == ["B1"]


def test_policy_from_sales_history(cli, tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("sku,date,quantity\n" + "".join(f"P,2024-01-{d:02d},{10 if d % 2 else 0}\n" for d in range(1, 31)))
    assert cli("sales", "import", f).rc == 0
    p = json.loads(cli("policy", "P", "--json").out)
    assert p["demand_per_day"] == pytest.approx(5.0) and p["demand_source"] == "sales:30d"
    assert p["safety_stock"] > 0 and p["reorder_point"] == pytest.approx(5 * 7 + p["safety_stock"])
    text = cli("policy", "P")
    assert text.rc == 0 and "reorder point" in text.out and "safety stock" in text.out


def test_command_output_is_not_mixed_with_log_lines(cli):
    """`smartstock stock > file` gets the table only: log lines (here the first-run migrations) go to stderr."""
    r = cli("stock")
    assert r.rc == 0 and r.out == "(no rows)\n"
    assert "applying migration" in r.err
