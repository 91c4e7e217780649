"""ONNX Runtime execution providers: which to ask for, given what the installed onnxruntime offers.

`auto` means TensorRT, then CUDA, then CPU, each only where the installed onnxruntime lists it (the
Jetson image installs onnxruntime-gpu; a Raspberry Pi or CI has CPU only). A provider asked for by
name that this onnxruntime does not offer is skipped with a warning: the line keeps running on CPU.
The choice is a pure function so it is tested without a GPU; the backend reports the provider that
actually serves (onnxruntime may still drop one that fails to initialise).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "tensorrt", "cuda", "cpu")
ORT_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
SHORT_NAMES = {v: k for k, v in ORT_NAMES.items()}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")


def choose_providers(requested: Sequence[str], available: Sequence[str], *, trt_fp16: bool = False,
                     trt_cache_dir: Path | None = None) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(providers with their options, in priority order, always ending with CPU; warnings for the log)."""
    wanted: list[str] = []
    for name in requested:
        for short in (AUTO_ORDER if name == "auto" else (name,)):
            if short not in wanted:
                wanted.append(short)
    warnings = [f"execution provider {short!r} is not available in this onnxruntime "
                f"(it offers {', '.join(SHORT_NAMES.get(a, a) for a in available)}); skipped"
                for short in wanted
                if ORT_NAMES[short] not in available and short != "cpu" and "auto" not in requested]
    out: list[tuple[str, dict[str, Any]]] = []
    for short in wanted:
        ort_name = ORT_NAMES[short]
        if ort_name not in available and short != "cpu":
            continue
        options: dict[str, Any] = {}
        if short == "tensorrt":
            options["trt_fp16_enable"] = bool(trt_fp16)
            if trt_cache_dir is not None:
                options["trt_engine_cache_enable"] = True
                options["trt_engine_cache_path"] = str(trt_cache_dir)
                options["trt_timing_cache_enable"] = True
                options["trt_timing_cache_path"] = str(trt_cache_dir)
        out.append((ort_name, options))
    if not any(name == ORT_NAMES["cpu"] for name, _ in out):
        out.append((ORT_NAMES["cpu"], {}))  # the last resort is always there
    return out, warnings


def engine_cache_dir(state_dir: Path, model_sha256: str, ort_version: str) -> Path:
    """Where TensorRT engines for one model file live: a new model (OTA) or a new onnxruntime/TensorRT
    (JetPack upgrade) gets a new folder; a restart finds the old one. TensorRT itself refuses an engine
    built for another GPU or TensorRT version and rebuilds it."""
    return Path(state_dir) / "trt-cache" / f"{model_sha256[:16]}-ort{ort_version}"


# Largest |score diff| on golden samples that a provider/precision is allowed beyond the export's own
# tolerance: GPU kernels reorder float sums (CUDA, TensorRT FP32), FP16 keeps ~3 significant digits.
PROVIDER_TOLERANCE = {("cpu", "fp32"): 0.0, ("cuda", "fp32"): 1e-3, ("tensorrt", "fp32"): 1e-3,
                      ("tensorrt", "fp16"): 2e-2}


def golden_tolerance(export_tolerance: float, provider: str, precision: str = "fp32") -> float:
    """The golden-sample tolerance to use on this provider: the export's, widened for GPU kernels and FP16."""
    return max(export_tolerance, PROVIDER_TOLERANCE.get((provider, precision), 2e-2))
