#!/usr/bin/env bash
# The GPU figures of issue 16 in one prepared run, on an x86_64 machine with an NVIDIA GPU and a
# CUDA 12 driver (a Jetson runs the same benchmark inside the Dockerfile.jetson image instead:
# `python -m benchmarks providers`, its onnxruntime-gpu and TensorRT come from JetPack).
#
#   benchmarks/gpu.sh            # from the repository root; writes benchmarks/results/providers.json, edge.json
#
# It builds its own venv (.venv-gpu, or $VENV) with the edge and dev extras, swaps the CPU onnxruntime
# for onnxruntime-gpu (CUDA/cuDNN from their pip wheels) plus tensorrt-cu12, checks that ONNX Runtime
# offers the CUDA and TensorRT providers, then runs `python -m benchmarks providers edge`: every
# provider (CPU, CUDA, TensorRT FP32/FP16) x {shipped 96x96, heavier 224x224} x batch 1/8/32 with the
# IO binding off and on, preprocessing step by step, and the loop with 1, 2 and 4 cameras. The GPU's
# name, driver and the onnxruntime version go into providers.json ("gpu", "onnxruntime").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-gpu}"
PY="${PYTHON:-python3}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu.sh: no NVIDIA GPU here (nvidia-smi missing or failing); run it on the GPU machine" >&2
    exit 3
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e ".[edge,dev]" "onnx>=1.15"
"$VENV/bin/pip" uninstall -y -q onnxruntime || true          # the CPU wheel and the GPU wheel share a module
"$VENV/bin/pip" install -q "onnxruntime-gpu[cuda,cudnn]" tensorrt-cu12

# CUDA, cuDNN and TensorRT libraries from their pip wheels, for the providers to dlopen.
LIBS="$("$VENV/bin/python" - <<'PY'
import glob, os, site
dirs = []
for sp in site.getsitepackages():
    dirs += glob.glob(os.path.join(sp, "nvidia", "*", "lib")) + glob.glob(os.path.join(sp, "tensorrt_libs"))
print(":".join(sorted(set(dirs))))
PY
)"
export LD_LIBRARY_PATH="${LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

"$VENV/bin/python" - <<'PY'
import onnxruntime as ort
have = ort.get_available_providers()
print("onnxruntime", ort.__version__, have)
missing = {"CUDAExecutionProvider", "TensorrtExecutionProvider"} - set(have)
if missing:
    raise SystemExit(f"gpu.sh: this onnxruntime lacks {sorted(missing)}; check the CUDA 12 driver and the wheels above")
PY

export SMARTSTOCK_BENCH_LONG_MAX_S="${SMARTSTOCK_BENCH_LONG_MAX_S:-60}"   # the edge RSS replay: a minute is enough here
nice -n 5 "$VENV/bin/python" -m benchmarks providers edge
echo "gpu.sh: results in benchmarks/results/providers.json and edge.json; put the table in README.md (section GPU) with the GPU named"
