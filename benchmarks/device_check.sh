#!/usr/bin/env bash
# The accelerator figures of docs/performance.md in one run on a machine with an
# accelerator (a TPU VM, or a GPU host with jax[cuda]), in under 8 minutes:
# compile time, update time, MFU and peak memory of the paper configs at their
# planned per-device batches, in bfloat16 with and without remat, then the
# training reader's rate on this host's cores for the same configs.
#
#   bash benchmarks/device_check.sh [CONFIGS]   # default: avenet=256,sync=24
#
# CONFIGS is NAME=BATCH,... (benchmarks/device_step.py); the batches default to
# the plan's (benchmarks/accelerator_plan.py) bfloat16 batch for an H100, capped
# at the paper's global batch. Run from the repository root with avjax installed.
set -euo pipefail
configs="${1:-avenet=256,sync=24}"
names="$(echo "$configs" | sed 's/=[0-9]*//g')"
cd "$(dirname "$0")/.."
python -c "import jax; d = jax.devices()[0]; print('device:', d.device_kind, d.platform, len(jax.devices()), 'device(s)')"
nproc | sed 's/^/host cores: /'
python benchmarks/device_step.py --configs "$configs" --steps 10
python benchmarks/device_step.py --configs "$configs" --steps 10 --remat
python benchmarks/accelerator_plan.py --parts reader --configs "$names" --reader_batches 30
