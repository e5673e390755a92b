#!/usr/bin/env bash
# The checks that need CUDA (bench/gpu.py): the tests marked gpu, then short GPU vs CPU sweeps per
# task. Without CUDA: one line, exit 0. Sized for one device session of at most 9 minutes.
#   bench/gpu_check.sh [--tasks fcn,emotion] [--budget 30] [--limit N]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python -m bench gpu "$@"
