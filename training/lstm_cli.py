"""`smartstock train lstm --input sales.csv --out DIR`: bucket, train the global LSTM, export, check parity."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from smartstock.errors import InputError

logger = logging.getLogger(__name__)


def train_and_export(series: list[np.ndarray], out: Path, *, recipe, freq: str | None, phases: list[int] | None = None,
                     model_id: str = "demand-lstm") -> dict:
    """Train, export ONNX + TFLite with parity checks, write manifest.json; returns a summary."""
    from training.lstm import make_windows, train
    from training.lstm_export import DemandExporter

    model, metrics = train(series, recipe, phases)
    x, _ = make_windows([y[-(recipe.window + recipe.horizon):] for y in series[:8]
                         if len(y) >= recipe.window + recipe.horizon], recipe)
    feats = ["value", "season_sin", "season_cos"] if x.shape[-1] == 3 else ["value"]
    exporter = DemandExporter(model, out, recipe=recipe, features=feats, golden=x[:8], freq=freq, metrics=metrics,
                              model_id=model_id)
    paths = exporter.export_all()
    return {"paths": {k: str(v) for k, v in paths.items()}, "metrics": exporter.manifest.metrics}


def run(args: argparse.Namespace) -> int:
    from smartstock.forecasting.io import read_series_csv
    from smartstock.forecasting.runner import default_season_length
    from training.lstm import LstmRecipe

    table = read_series_csv(args.input, args.freq)
    m = args.season_length or default_season_length(table.freq)
    recipe = LstmRecipe(horizon=args.horizon, season_length=m, seed=args.seed,
                        window=max(2 * args.horizon, min(2 * m, 52), 8))
    if args.epochs:
        recipe.epochs = args.epochs
    series = [s.y for s in table.series.values()]
    phases = [s.start % m for s in table.series.values()]
    long_enough = sum(len(y) >= recipe.window + 2 * recipe.horizon for y in series)
    if long_enough == 0:
        raise InputError(f"{args.input}: no series has window + 2*horizon = {recipe.window + 2 * recipe.horizon} points",
                         hint="use a shorter --horizon or a longer history")
    summary = train_and_export(series, args.out, recipe=recipe, freq=table.freq, phases=phases)
    print(json.dumps(summary, indent=2))
    return 0
