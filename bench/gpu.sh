#!/usr/bin/env bash
# GPU figures of the streaming step (issue 15): step p50/p99 at batch 1 with the state
# bound on the device and with host state, 30 Hz streams at p99 <= 10 ms, whole-clip
# throughput. Run from a clone on a machine with an NVIDIA GPU and its driver; it
# installs the gpu extra (onnxruntime-gpu with CUDA and cuDNN from PyPI) into .venv-gpu
# and needs no torch. Under 10 minutes. Extra arguments go to bench/gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -U pip
"$VENV/bin/pip" install -q -e '.[gpu]' 'onnxruntime-gpu[cuda,cudnn]>=1.21,<2'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$VENV/bin/python" bench/gpu.py "$@"
