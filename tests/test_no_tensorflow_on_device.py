"""The device side (smartstock, edge) must never load TensorFlow: it costs 3.5 s and 570 MB."""

from __future__ import annotations

import json

from tests.conftest import python_subprocess

FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "training")

CODE = """
import importlib, json, pkgutil, sys
import smartstock, edge
names = []
for pkg in (smartstock, edge):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if m.name.endswith("__main__"):
            continue
        importlib.import_module(m.name)
        names.append(m.name)
loaded = sorted({n.split(".")[0] for n in sys.modules} & set(%r))
print(json.dumps({"modules": names, "forbidden_loaded": loaded}))
""" % (FORBIDDEN,)


def test_every_device_module_imports_without_tensorflow():
    p = python_subprocess(CODE)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert "smartstock.config" in result["modules"]
    assert "smartstock.store.db" in result["modules"]
    assert result["forbidden_loaded"] == []


def test_cli_help_does_not_load_tensorflow():
    p = python_subprocess(
        "import sys\nfrom smartstock.cli import build_parser\nbuild_parser()\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'tensorflow','keras','onnxruntime','statsmodels'}))")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
