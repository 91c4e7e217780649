"""The `smartstock` CLI host: commands contributed by `edge` and `training` through the entry-point group,
and a command whose extra is missing exits 5 naming the extra, without a traceback."""

from __future__ import annotations

import json

import pytest

from tests.conftest import python_subprocess

# Make the named packages unimportable in a child interpreter, then run the CLI there.
BLOCKED_CLI = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
from smartstock.cli import main
sys.exit(main({argv!r}))
"""


def _cli_without(blocked: list[str], argv: list[str]):
    return python_subprocess(BLOCKED_CLI.format(blocked=blocked, argv=argv))


def test_contributed_commands_are_discovered_from_the_entry_point_group():
    p = python_subprocess(
        "import json\nfrom smartstock.cli import registrars\n"
        "print(json.dumps([name for name, _ in registrars()]))")
    assert p.returncode == 0, p.stderr
    names = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"run", "demo", "train"} <= set(names)
    # the library's own modules come first; contributed ones are found by entry point, not by import string
    assert names.index("smartstock.commands.config_cmd") < names.index("run")


def test_train_without_the_train_extra_exits_5_naming_the_extra(tmp_path):
    import cv2
    import numpy as np

    for cls in ("ok", "defect"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(tmp_path / "data" / cls / f"{i}.png"), np.full((32, 32), 40 * i, np.uint8))
    p = _cli_without(["tensorflow", "keras"], ["train", "cnn", "--data", str(tmp_path / "data"),
                                               "--out", str(tmp_path / "out")])
    assert p.returncode == 5, p.stderr
    assert "'train' extra" in p.stderr
    assert ".venv/bin/pip install -e '.[train]'" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("blocked", [["cv2"], ["onnxruntime", "ai_edge_litert"]])
def test_run_without_the_edge_runtime_exits_5_naming_the_extra(tmp_path, blocked):
    p = _cli_without(blocked, ["run", "--state-dir", str(tmp_path / "state"), "--max-frames", "1"])
    assert p.returncode == 5, p.stderr
    assert "smartstock[edge]" in p.stderr
    assert "Traceback" not in p.stderr


def test_an_unrelated_missing_module_is_a_bug_not_advice():
    from smartstock.extras import missing_extra

    assert missing_extra(ModuleNotFoundError("x", name="no_such_module_here")) is None
    advice = missing_extra(ModuleNotFoundError("x", name="onnxruntime.capi"))
    assert advice is not None and advice.exit_code == 5 and "edge" in str(advice)
