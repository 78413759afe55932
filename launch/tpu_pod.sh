#!/usr/bin/env bash
# A Cloud TPU pod slice: the same command on every host; jax.distributed finds its peers.
#   bash launch/tpu_pod.sh NAME ZONE configs/avenet.py gs://bucket/avenet --config.data.dir=gs://bucket/prepared
# Each host reads only its own shards (files[process_index::process_count]).
# Every argument reaches the remote shell quoted (printf %q), so a value with spaces or
# shell characters arrives as one argument, as it was given.
set -euo pipefail
NAME=${1:?tpu name}; ZONE=${2:?zone}; CONFIG=${3:?config}; WORKDIR=${4:?workdir}; shift 4
REMOTE=$(printf '%q ' python -m avjax.main --multihost "--config=$CONFIG" "--workdir=$WORKDIR" "$@")
gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command "
  cd ~/avjax && pip install -q -e '.[tpu]' && $REMOTE"
