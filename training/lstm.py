"""The global demand LSTM: one small network trained on windows from every SKU.

Windows of `window` points are divided by their own mean level (the same `make_inputs` the device
uses, so training and inference cannot drift apart), optionally with sin/cos of the season
position; the network predicts the next `horizon` scaled points at once. LSTM(unroll=True) keeps
the TFLite graph to builtin ops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from smartstock.forecasting.lstm import make_inputs
from smartstock.forecasting.lstm_manifest import DemandManifest, Scaling

logger = logging.getLogger(__name__)


@dataclass
class LstmRecipe:
    window: int = 24
    horizon: int = 8
    season_length: int = 12
    calendar: bool = True
    units: int = 32
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 3e-3
    patience: int = 5
    max_windows: int = 50_000
    seed: int = 0


def _spec(recipe: LstmRecipe) -> DemandManifest:
    """A manifest stand-in holding only what make_inputs reads."""
    feats = ["value", "season_sin", "season_cos"] if recipe.calendar and recipe.season_length > 1 else ["value"]
    return DemandManifest.model_construct(window=recipe.window, horizon=recipe.horizon,
                                          season_length=max(1, recipe.season_length), features=feats,
                                          scaling=Scaling())


def make_windows(series: list[np.ndarray], recipe: LstmRecipe, phases: list[int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, window, F), scaled targets (N, horizon)) from every position of every series."""
    spec = _spec(recipe)
    raw, tgt, ph = [], [], []
    w, h = recipe.window, recipe.horizon
    for i, y in enumerate(series):
        for s in range(0, len(y) - w - h + 1):
            raw.append(y[s:s + w])
            tgt.append(y[s + w:s + w + h])
            ph.append((phases[i] if phases else 0) + s)
    if not raw:
        raise ValueError(f"no series is longer than window + horizon = {w + h} points")
    raw_a, tgt_a, ph_a = np.array(raw), np.array(tgt), np.array(ph)
    if len(raw_a) > recipe.max_windows:
        keep = np.random.default_rng(recipe.seed).choice(len(raw_a), recipe.max_windows, replace=False)
        raw_a, tgt_a, ph_a = raw_a[keep], tgt_a[keep], ph_a[keep]
    x, scale = make_inputs(raw_a, spec, ph_a)
    return x, (tgt_a / scale[:, None]).astype(np.float32)


def build_model(recipe: LstmRecipe, n_features: int):
    import keras

    inp = keras.Input((recipe.window, n_features), name="history")
    z = keras.layers.LSTM(recipe.units, unroll=True)(inp)
    z = keras.layers.Dense(recipe.units, activation="relu")(z)
    out = keras.layers.Dense(recipe.horizon, name="forecast")(z)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate), loss="mae")
    return model


def train(series: list[np.ndarray], recipe: LstmRecipe, phases: list[int] | None = None):
    """Fit on all but each series' last horizon; returns (model, validation metrics)."""
    import keras

    keras.utils.set_random_seed(recipe.seed)
    h = recipe.horizon
    fit_part = [y[:-h] for y in series if len(y) > recipe.window + 2 * h - 1]
    if not fit_part:
        raise ValueError(f"need series of at least window + 2*horizon = {recipe.window + 2 * h} points")
    x, t = make_windows(fit_part, recipe, phases)
    x_val, t_val = make_windows([y[-(recipe.window + h):] for y in series if len(y) >= recipe.window + h], recipe,
                                [((phases[i] if phases else 0) + len(y) - recipe.window - h) for i, y in enumerate(series)
                                 if len(y) >= recipe.window + h])
    model = build_model(recipe, x.shape[-1])
    stop = keras.callbacks.EarlyStopping(patience=recipe.patience, restore_best_weights=True)
    hist = model.fit(x, t, validation_data=(x_val, t_val), epochs=recipe.epochs, batch_size=recipe.batch_size,
                     callbacks=[stop], verbose=0, shuffle=True)
    pred = model.predict(x_val, verbose=0)
    naive = np.repeat(x_val[:, -1:, 0], h, axis=1)
    metrics = {"val_mae_scaled": float(np.mean(np.abs(pred - t_val))),
               "val_mae_scaled_naive": float(np.mean(np.abs(naive - t_val))),
               "epochs": float(len(hist.history["loss"])), "train_windows": float(len(x))}
    logger.info("lstm: %d windows, %d epochs, val MAE %.4f (naive %.4f), scaled units", len(x),
                int(metrics["epochs"]), metrics["val_mae_scaled"], metrics["val_mae_scaled_naive"])
    return model, metrics
