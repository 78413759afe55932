#!/usr/bin/env bash
# One machine, all its GPUs, one process (jit shards the batch over the local mesh).
#   bash launch/local_gpu.sh configs/avenet.py /ckpt/avenet --config.data.dir=/data/prepared
# Install first: pip install -e ".[gpu]"
set -euo pipefail
CONFIG=${1:?config file}; WORKDIR=${2:?workdir}; shift 2
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec python -m avjax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
