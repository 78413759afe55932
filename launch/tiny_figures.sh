#!/usr/bin/env bash
# The README's method table: train every tiny config on the embedded default data, then score
# it and the same network at random initialisation on held-out splits.
#   bash launch/tiny_figures.sh workdirs/figures [method ...]
# Methods: l3 avenet avolnet avcontrastive selavi ambient soundnet sync cosine (default: all),
# separation (its frame tower from ROOT/avcontrastive, trained first if absent), sonorization, and the frame-only pretext baselines: rotation relative_position colourization exemplar simclr mae arrow_of_time
# shuffle_and_learn odd_one_out.
# Each evaluation writes WORKDIR/<method>/eval/metrics_<split>_<step>.json and prints a table;
# this script's log holds both, trained and random init, one after the other.
set -euo pipefail
ROOT=${1:?figures directory}; shift
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=(l3 avenet avolnet avcontrastive selavi ambient soundnet sync cosine)

train() {  # method config [overrides]
  local m=$1 c=$2; shift 2
  echo "== train $m ($(date +%T))"
  local t0=$SECONDS
  python -m avjax.main --config="$c" --workdir="$ROOT/$m" "$@"
  echo "== trained $m in $((SECONDS - t0)) s"
}

score() {  # method config split evals [overrides]
  local m=$1 c=$2 s=$3 e=$4; shift 4
  for init in "" "--random_init"; do
    echo "== evaluate $m split=$s evals=$e ${init:-trained}"
    python -m avjax.evaluate --config="$c" --workdir="$ROOT/$m" --split="$s" --evals="$e" \
      --nopictures $init "$@"
  done
}

for m in "${METHODS[@]}"; do
  case $m in
    l3|avenet)
      train "$m" "configs/$m.py:tiny"
      score "$m" "configs/$m.py:tiny" test avc,retrieval ;;
    avolnet)
      train "$m" configs/avolnet.py:tiny
      score "$m" configs/avolnet.py:tiny test avc
      for s in test_crowded test_small test_many; do
        score "$m" configs/avolnet.py:tiny "$s" localisation
      done ;;
    avcontrastive|cosine)
      train "$m" "configs/$m.py:tiny"
      score "$m" "configs/$m.py:tiny" test retrieval,linear_probe ;;
    selavi)
      train "$m" configs/selavi.py:tiny
      score "$m" configs/selavi.py:tiny test clustering,linear_probe ;;
    ambient)
      train "$m" configs/ambient.py:tiny
      score "$m" configs/ambient.py:tiny test linear_probe,clustering ;;
    soundnet)
      train teacher configs/frame_classifier.py:tiny
      train "$m" configs/soundnet.py:tiny --config.teachers.objects.workdir="$ROOT/teacher"
      score "$m" configs/soundnet.py:tiny test linear_probe \
        --config.teachers.objects.workdir="$ROOT/teacher" ;;
    sync)
      train "$m" configs/sync.py:tiny
      score "$m" configs/sync.py:tiny sync_test avc,sync_offsets
      score "$m" configs/sync.py:tiny sync_crowded avc,localisation
      score "$m" configs/sync.py:tiny turns_test active_speaker ;;
    separation)
      [ -d "$ROOT/avcontrastive/checkpoints" ] || train avcontrastive configs/avcontrastive.py:tiny
      train "$m" configs/separation.py:tiny --config.init_from.workdir="$ROOT/avcontrastive"
      score "$m" configs/separation.py:tiny test separation
      score "$m" configs/separation.py:tiny duets_test separation \
        --config.evals.separation.mixtures=scenes ;;
    sonorization)  # trained on the struck-object splits
      train "$m" configs/sonorization.py:tiny
      score "$m" configs/sonorization.py:tiny hits_test sonorization ;;
    rotation|relative_position)  # trained on the upright-glyph splits
      train "$m" "configs/$m.py:tiny"
      score "$m" "configs/$m.py:tiny" glyphs_test linear_probe,clustering ;;
    simclr|colourization|mae|exemplar)
      train "$m" "configs/$m.py:tiny"
      score "$m" "configs/$m.py:tiny" test linear_probe,clustering ;;
    arrow_of_time|shuffle_and_learn|odd_one_out)
      train "$m" "configs/$m.py:tiny"
      score "$m" "configs/$m.py:tiny" test linear_probe,clustering ;;
    *) echo "tiny_figures.sh: unknown method '$m'" >&2; exit 2 ;;
  esac
done
