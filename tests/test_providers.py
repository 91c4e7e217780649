"""Execution providers: the choice (pure, GPU-free) and the real onnxruntime falling back to CPU with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from smartstock.runtime.providers import choose_providers, engine_cache_dir

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
MODEL = Path(__file__).resolve().parents[1] / "models" / "defect" / "defect.onnx"


def test_auto_prefers_tensorrt_then_cuda_then_cpu_where_available(tmp_path):
    chosen, warnings = choose_providers(["auto"], [TRT, CUDA, CPU], trt_fp16=True, trt_cache_dir=tmp_path)
    assert [name for name, _ in chosen] == [TRT, CUDA, CPU] and warnings == []
    trt_opts = chosen[0][1]
    assert trt_opts["trt_fp16_enable"] is True and trt_opts["trt_engine_cache_path"] == str(tmp_path)
    chosen, warnings = choose_providers(["auto"], ["AzureExecutionProvider", CPU])
    assert chosen == [(CPU, {})] and warnings == []  # a CPU-only box: auto is quiet


def test_a_provider_asked_for_by_name_but_missing_falls_back_to_cpu_with_a_warning():
    chosen, warnings = choose_providers(["tensorrt", "cuda"], [CPU])
    assert chosen == [(CPU, {})]
    assert len(warnings) == 2 and "'tensorrt' is not available" in warnings[0]
    chosen, _ = choose_providers(["cuda"], [CUDA, CPU])
    assert [n for n, _ in chosen] == [CUDA, CPU]  # CPU always stays as the last resort


def test_engine_cache_is_keyed_by_model_and_runtime_version(tmp_path):
    a = engine_cache_dir(tmp_path, "a" * 64, "1.20.0")
    assert a != engine_cache_dir(tmp_path, "b" * 64, "1.20.0")  # an OTA swap builds a new engine
    assert a != engine_cache_dir(tmp_path, "a" * 64, "1.22.0")  # so does a JetPack/onnxruntime upgrade
    assert a == engine_cache_dir(tmp_path, "a" * 64, "1.20.0")  # a restart finds the old one


def test_real_onnxruntime_asked_for_cuda_runs_on_cpu_and_says_so(caplog):
    from smartstock.runtime.backends import load_backend

    with caplog.at_level(logging.WARNING):
        gpu = load_backend(MODEL, providers=("cuda",), threads=1)
    cpu = load_backend(MODEL, providers=("cpu",), threads=1)
    assert gpu.provider == "cpu" and cpu.provider == "cpu"
    assert any("'cuda' is not available" in r.getMessage() for r in caplog.records)
    x = np.random.default_rng(0).uniform(0, 255, (2, *cpu.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(gpu.run(x), cpu.run(x), rtol=0, atol=1e-6)


def test_the_classifier_reports_its_provider_and_config_refuses_unknown_ones():
    import pytest
    from pydantic import ValidationError

    from smartstock.config import Config
    from smartstock.vision.classifier import DefectClassifier

    clf = DefectClassifier.load(MODEL, threads=1, providers=("tensorrt", "cuda", "cpu"))
    assert clf.provider == "cpu"  # no GPU here: TensorRT and CUDA are skipped, CPU serves
    assert Config().vision.providers == ["auto"]
    with pytest.raises(ValidationError):
        Config.model_validate({"vision": {"providers": ["rocm"]}})


def test_golden_tolerance_widens_for_gpu_kernels_and_fp16_only():
    from smartstock.runtime.providers import golden_tolerance

    assert golden_tolerance(1e-4, "cpu") == 1e-4  # CPU keeps the export's own tolerance
    assert golden_tolerance(1e-4, "cuda") == 1e-3
    assert golden_tolerance(1e-4, "tensorrt", "fp16") == 2e-2
    assert golden_tolerance(0.05, "tensorrt", "fp16") == 0.05  # int8 exports already allow more


def test_io_binding_gives_the_same_scores_per_batch_size_and_thread():
    """vision.io_binding: outputs land in preallocated per-thread buffers; every call still returns its
    own scores, bit for bit those of session.run, whatever batch sizes and threads interleave."""
    from concurrent.futures import ThreadPoolExecutor

    from smartstock.runtime.backends import load_backend

    plain = load_backend(MODEL, "onnx", threads=1, providers=("cpu",))
    bound = load_backend(MODEL, "onnx", threads=1, providers=("cpu",), io_binding=True)
    rng = np.random.default_rng(7)
    batches = [rng.uniform(0, 255, (n, *plain.input_shape[1:])).astype(np.float32) for n in (1, 3, 8, 3, 1, 8)]
    want = [plain.run(b) for b in batches]
    first = bound.run(batches[0])
    bound.run(batches[4])  # a later call of the same size reuses the buffer: what it returned must not change
    assert np.array_equal(first, want[0])
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(bound.run, batches * 3))
    for g, w in zip(got, want * 3):
        assert g.shape == w.shape and np.array_equal(g, w)
