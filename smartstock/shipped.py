"""Where the shipped demo models are: `models/` of the repository (checkout or `pip install -e .`), or
the folder named by SMARTSTOCK_MODELS_DIR (a container or wheel install, where the package is not
beside `models/`; Dockerfile.jetson sets it)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SMARTSTOCK_MODELS_DIR"
_REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


def candidates(kind: str, file: str) -> list[Path]:
    """Where `models/<kind>/<file>` is looked for, in order."""
    env = os.environ.get(ENV, "").strip()
    return ([Path(env) / kind / file] if env else []) + [_REPO_MODELS / kind / file]


def shipped_model(kind: str, file: str) -> Path | None:
    """The first existing `<models>/<kind>/<file>`, or None."""
    return next((p for p in candidates(kind, file) if p.is_file()), None)
