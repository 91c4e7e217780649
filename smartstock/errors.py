"""Errors a user can act on, each with the exit code the CLI returns for it.

Exit codes (documented in the README):
    0  success
    1  unexpected failure (a bug: the traceback is logged)
    2  bad usage or bad configuration
    3  bad input data (some rows rejected; the good ones were kept)
    4  model file or manifest rejected (also: `train cnn` judged the trained model unfit)
    5  an optional runtime is not installed
    6  state store problem (locked, corrupt, not writable)
    7  over-the-air update refused or rolled back (`ota rollout`: paused)
    8  MQTT broker unreachable or it refused the connection (tools that need it now)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

from typing import Any


class SmartStockError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base


class ConfigError(SmartStockError):
    """The configuration file or a command-line option is invalid."""

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


class InvalidParameter(SmartStockError, ValueError):
    """A numeric parameter of the inventory maths (demand, cost, rate, service level) is out of range.

    Also a ValueError, so library callers that validate numbers can catch it the usual way.
    """

    exit_code = 2


class InputError(SmartStockError):
    """User data (CSV, image, payload) is invalid."""

    exit_code = 3


class ModelError(SmartStockError):
    """A model file or its manifest is missing, corrupt or inconsistent."""

    exit_code = 4


class BackendUnavailable(SmartStockError):
    """An optional runtime (ONNX Runtime, LiteRT, statsmodels, ...) is not installed."""

    exit_code = 5


class StoreError(SmartStockError):
    """The SQLite state store cannot be opened or written."""

    exit_code = 6


class OtaRejected(SmartStockError):
    """An over-the-air update was refused; the running model keeps serving."""

    exit_code = 7


class BrokerUnavailable(SmartStockError):
    """A command that needs the MQTT broker now could not connect (the device service itself retries)."""

    exit_code = 8


def first_problem(e: Any) -> tuple[str, dict[str, Any]]:
    """(dotted field path or "(top level)", pydantic's first error dict) of a pydantic ValidationError:
    the one place that turns a validation failure into the field a user's message names."""
    first = e.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "(top level)", first
