from __future__ import annotations

from pathlib import Path

import pytest

from smartstock.config import Config, load_config, resolve_state_dir
from smartstock.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_is_valid():
    cfg = load_config(ROOT / "smartstock.example.toml")
    assert isinstance(cfg, Config)
    assert cfg.inventory.policy_for("PCB-100").lead_time_days > 0


def test_every_problem_is_reported_with_its_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[mqtt]\nport = 0\nbogus = 1\n[inventory.defaults]\nholding_cost = 0\n')
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    problems = "\n".join(ei.value.problems)
    assert "mqtt.port" in problems and "mqtt.bogus: unknown key" in problems
    assert "inventory.defaults.holding_cost" in problems
    assert str(f) in problems


def test_syntax_error_names_the_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("[device\nid=1\n")
    with pytest.raises(ConfigError, match="broken.toml: TOML syntax error"):
        load_config(f)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_per_sku_override_is_validated():
    from smartstock.config import parse_config

    with pytest.raises(ConfigError) as ei:
        parse_config({"inventory": {"skus": {"A": {"service_level": 1.5}}}})
    assert "inventory.skus.A.service_level" in "\n".join(ei.value.problems)


def test_state_dir_precedence(monkeypatch, tmp_path):
    cfg = Config.model_validate({"device": {"state_dir": str(tmp_path / "from-config")}})
    monkeypatch.delenv("SMARTSTOCK_STATE_DIR", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert resolve_state_dir(None, cfg) == tmp_path / "from-config"
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "systemd"))
    assert resolve_state_dir(None, cfg) == tmp_path / "systemd"
    monkeypatch.setenv("SMARTSTOCK_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir(None, cfg) == tmp_path / "env"
    assert resolve_state_dir(tmp_path / "cli", cfg) == tmp_path / "cli"


def test_password_never_comes_from_the_file(monkeypatch, tmp_path):
    cfg = Config.model_validate({"mqtt": {"username": "dev"}})
    monkeypatch.setenv("SMARTSTOCK_MQTT_PASSWORD", "s3cret")
    assert cfg.mqtt.password() == "s3cret"
    pw = tmp_path / "pw"
    pw.write_text("fromfile\n")
    cfg2 = Config.model_validate({"mqtt": {"username": "dev", "password_file": str(pw)}})
    assert cfg2.mqtt.password() == "fromfile"
    from smartstock.config import parse_config

    with pytest.raises(ConfigError) as ei:
        parse_config({"mqtt": {"password": "x"}})
    assert "mqtt.password: unknown key" in ei.value.problems[0]


def test_config_check_command(cli, tmp_path):
    good = cli("config", "check", str(ROOT / "smartstock.example.toml"))
    assert good.rc == 0 and "OK" in good.out
    bad = tmp_path / "bad.toml"
    bad.write_text("[source]\nfps = -1\n[vision]\nthresholds = { defect = 2.0 }\n")
    r = cli("config", "check", str(bad))
    assert r.rc == 2
    assert "source.fps" in r.err and "vision.thresholds" in r.err
    assert "Traceback" not in r.err


def test_inference_threads_are_shared_out_between_workers():
    from smartstock.config import VisionConfig

    def split(**kw):
        v = VisionConfig(**kw)
        return v.worker_count, v.threads_per_worker

    assert split() == (2, 1)                       # default: a single-threaded worker per thread
    assert split(threads=4, workers=2) == (2, 2)
    assert split(threads=2, workers=1) == (1, 2)   # the old layout: one worker, two intra-op threads
    assert split(threads=1, workers=3) == (3, 1)   # never below one thread each


def test_one_sku_rule_for_config_csv_mqtt_and_the_store(tmp_path):
    """A SKU becomes an MQTT topic level: every entry point refuses the same bad SKUs with the same rule."""
    from pydantic import ValidationError

    from smartstock.config import Config, InventoryConfig
    from smartstock.errors import InputError, InvalidParameter
    from smartstock.ingest import iter_sales_csv
    from smartstock.sku import SKU_RULE, sku_problem
    from smartstock.store import open_store
    from smartstock.store.skus import set_overrides
    from smartstock.sync.inbound import validate_sale

    bad = ["a/b", "x+", "#1", "", " lead", "tab\tin", "z" * 65]
    good = ["PCB-100", "part_1", "Ø 12 mm bolt", "z" * 64]
    assert all(sku_problem(s) for s in bad) and not any(sku_problem(s) for s in good)
    for s in bad:
        with pytest.raises(ValidationError):
            Config.model_validate({"inspection": {"sku": s}})
        with pytest.raises(ValidationError):
            InventoryConfig.model_validate({"skus": {s: {}}})
    csv_file = tmp_path / "sales.csv"
    csv_file.write_text("sku,date,quantity\n" + "".join(f"{s},2026-01-0{i + 1},1\n" for i, s in enumerate(["a/b", "PCB-100"])))
    rows = list(iter_sales_csv(csv_file))
    assert [getattr(r, "sku", None) for r in rows] == [None, "PCB-100"]
    assert SKU_RULE in rows[0].reason
    with open_store(tmp_path / "state") as store:
        with pytest.raises(InvalidParameter):
            set_overrides(store.conn, InventoryConfig(), "a/b", {"lead_time_days": 3.0})
    with pytest.raises(InputError):
        validate_sale({"id": "1", "sku": "a/b", "date": "2026-01-01", "quantity": 1})
