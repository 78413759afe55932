#!/usr/bin/env bash
# The HEAR 2021 validator (hear-validator) on a trained checkpoint, through avjax.hear:
#   bash benchmarks/hear_validator.sh workdirs/avenet_tiny [EXPORT_DIR]
# It exports the checkpoint (avjax-export), then validates the export; it prints
# the validator's own output and the seconds each part took.
# hearvalidator is installed without its dependencies: it requires the `tensorflow`
# package, which pip would install over avjax's tensorflow-cpu (the same folder),
# breaking both. Its other dependency, torch, comes from the `hear` extra.
set -euo pipefail
WORKDIR=${1:?a training workdir}; OUT=${2:-${WORKDIR%/}/export}
t0=$SECONDS
pip install -q -e ".[hear]"
pip install -q --no-deps hearvalidator
echo "== installed in $((SECONDS - t0)) s"
t1=$SECONDS
python -m avjax.export --workdir="$WORKDIR" --output="$OUT" --platforms=cpu
hear-validator avjax.hear -m "$OUT"
echo "== exported and validated in $((SECONDS - t1)) s"
