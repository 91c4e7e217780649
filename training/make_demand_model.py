"""`python -m training.make_demand_model --out models/demand`: the small shipped demand LSTM.

Trained on generated monthly sales (training/sales_data.py), 12-month season, horizon 8,
so `smartstock forecast --model lstm` works out of the box. Files stay small (tens of kB).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from training.lstm import LstmRecipe
from training.lstm_cli import train_and_export
from training.sales_data import generate_series


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("models/demand"))
    p.add_argument("--series", type=int, default=400)
    p.add_argument("--epochs", type=int, default=40)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = LstmRecipe(window=24, horizon=8, season_length=12, epochs=args.epochs)
    series = generate_series(args.series, 72, season_length=12, seed=0)
    summary = train_and_export(series, args.out, recipe=recipe, freq="M", phases=[0] * len(series))
    (args.out / "README.md").write_text(
        "# Shipped demand LSTM\n\nMade by `python -m training.make_demand_model --out models/demand` "
        f"({args.series} generated monthly series of 72 points, window 24, horizon 8, season 12).\n"
        "Parity with Keras and validation metrics are in manifest.json.\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
