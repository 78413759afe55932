#!/usr/bin/env bash
# The HEAR 2021 validator (hear-validator) on a trained checkpoint, through avjax.hear:
#   bash benchmarks/hear_validator.sh [WORKDIR [EXPORT_DIR]]
# It exports the checkpoint (avjax-export), then validates the export; it prints
# the validator's own output and the seconds each part took. Without WORKDIR (as
# .ci/run calls it) it first trains a tiny AVE-Net briefly on a few generated clips
# (benchmarks/hear_checkpoint.py) in a temporary folder.
# hearvalidator is installed without its dependencies: it requires the `tensorflow`
# package, which pip would install over avjax's tensorflow-cpu (the same folder),
# breaking both. Its other dependency, torch, comes from the `hear` extra.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
pip install -q -e ".[hear]"
pip install -q --no-deps hearvalidator
echo "== installed in $((SECONDS - t0)) s"
t1=$SECONDS
if [ $# -ge 1 ]; then
  WORKDIR=$1; CHECKPOINT=best
else
  TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
  WORKDIR=$TMP/avenet_tiny; CHECKPOINT=latest
  python benchmarks/hear_checkpoint.py "$WORKDIR"
fi
OUT=${2:-${WORKDIR%/}/export}
python -m avjax.export --workdir="$WORKDIR" --output="$OUT" --platforms=cpu --checkpoint=$CHECKPOINT
hear-validator avjax.hear -m "$OUT"
echo "== trained (if asked), exported and validated in $((SECONDS - t1)) s"
