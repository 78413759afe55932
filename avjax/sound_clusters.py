"""Ambient-sound targets: avjax-sound-clusters --data=DIR --split=train --k=30

On the training split (--split equal to --fit_split, default train): computes
every clip's sound statistics, fits k-means (or, with --bits, the signs of the
top --k principal projections) and writes DIR/sound_model.json and
DIR/train/sound_targets.json. On any other split: that split's targets from the
training fit (DIR/sound_model.json), so validation and test never fit their own.
"""
from __future__ import annotations

from absl import flags

from avjax import cli

_DATA = flags.DEFINE_string("data", None, "prepared data folder (local or gs://), one sub-folder per split")
_SPLIT = flags.DEFINE_string("split", "train", "the split to write targets for")
_FIT_SPLIT = flags.DEFINE_string("fit_split", "train", "the split the clustering is fitted on")
_K = flags.DEFINE_integer("k", 30, "clusters (or bits with --bits)")
_BITS = flags.DEFINE_bool("bits", False, "the paper's binary code instead of k-means")
_FEATURES = flags.DEFINE_enum("features", "texture", ["texture", "mfcc"],
                              "sound-texture statistics or MFCC mean/std")
_SEED = flags.DEFINE_integer("seed", 0, "k-means / PCA seed")
_WORKERS = flags.DEFINE_integer("workers", 0, "processes computing statistics (0: every core)")
flags.mark_flags_as_required(["data"])


def main(argv):
  del argv
  from data_pipelines import fs, sound_targets
  if _SPLIT.value == _FIT_SPLIT.value:
    model = sound_targets.fit_and_write(
        _DATA.value, _FIT_SPLIT.value, kind="bits" if _BITS.value else "clusters", k=_K.value,
        features=_FEATURES.value, seed=_SEED.value, workers=_WORKERS.value)
    print(f"fitted {model['kind']} (k={model['k']}, {model['features']} statistics) on "
          f"{model['num_clips']} clips: {fs.join(_DATA.value, sound_targets.MODEL)}")
    print(f"wrote {fs.join(_DATA.value, _SPLIT.value, sound_targets.TARGETS)}")
  else:
    path = sound_targets.assign_and_write(_DATA.value, _SPLIT.value, workers=_WORKERS.value)
    print(f"wrote {path} (from the fit on {sound_targets.load_model(_DATA.value)['fit_split']})")


def run():
  cli.run("avjax-sound-clusters", main)


if __name__ == "__main__":
  run()
