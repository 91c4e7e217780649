"""Which optional extra brings which import, so a missing one is reported as what to install.

One table for the CLI host (a command whose extra is missing exits 5 naming it) and anyone who
turns a ModuleNotFoundError into advice.
"""

from __future__ import annotations

from smartstock.errors import BackendUnavailable

# top-level import name -> extra of the `smartstock` distribution that installs it
EXTRA_OF: dict[str, str] = {
    "onnxruntime": "edge", "ai_edge_litert": "edge", "cv2": "edge", "paho": "edge", "statsmodels": "edge",
    "pandas": "edge", "scipy": "edge", "cryptography": "edge", "statsforecast": "edge",
    "tensorflow": "train", "keras": "train", "tf2onnx": "train", "onnx": "train", "PIL": "train",
    "matplotlib": "report",
}
WHY = {"edge": "the device runtime", "train": "training (a workstation; devices do not train)",
       "report": "charts in reports"}


def missing_extra(e: ModuleNotFoundError) -> BackendUnavailable | None:
    """The advice for a missing optional package, or None when `e` is not about one (a real bug)."""
    top = (e.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    return BackendUnavailable(
        f"{top} is not installed: this command needs the '{extra}' extra ({WHY[extra]})",
        hint=f"pip install 'smartstock[{extra}]' (from a clone: .venv/bin/pip install -e '.[{extra}]')")
