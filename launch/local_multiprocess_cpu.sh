#!/usr/bin/env bash
# N CPU processes on this machine, each with D host devices: a rehearsal of a
# multi-host run (per-host shards, global arrays, one checkpoint) with no cluster.
#   bash launch/local_multiprocess_cpu.sh 2 configs/avenet.py:tiny /tmp/avenet_mp [overrides]
set -euo pipefail
N=${1:?processes}; CONFIG=${2:?config}; WORKDIR=${3:?workdir}; shift 3
PORT=${PORT:-$((20000 + RANDOM % 10000))}
export XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-1}"
pids=()
for ((i = 0; i < N; i++)); do
  JAX_PLATFORMS=cpu python -m avjax.main --multihost --coordinator="localhost:$PORT" \
    --num_processes="$N" --process_id="$i" --config="$CONFIG" --workdir="$WORKDIR" "$@" \
    > "${WORKDIR%/}.process$i.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
cat "${WORKDIR%/}.process0.log" | tail -n 5
exit $status
