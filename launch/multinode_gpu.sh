#!/usr/bin/env bash
# Several GPU nodes, one process per node. Run on every node with its own NODE_RANK:
#   COORDINATOR=node0:1234 NUM_NODES=4 NODE_RANK=0 bash launch/multinode_gpu.sh configs/avenet.py /ckpt/avenet ...
# Under SLURM, jax.distributed.initialize() reads the SLURM variables itself; pass --multihost only.
set -euo pipefail
CONFIG=${1:?config}; WORKDIR=${2:?workdir}; shift 2
exec python -m avjax.main --multihost --coordinator="${COORDINATOR:?host:port}" \
  --num_processes="${NUM_NODES:?}" --process_id="${NODE_RANK:?}" \
  --config="$CONFIG" --workdir="$WORKDIR" "$@"
