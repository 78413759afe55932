"""Build the real-sound development set: avjax-devset (or python -m avjax.devset).

  apt-get install sonic-pi-samples       # the recordings it is made from (CC0, CC BY-SA)
  avjax-devset --config=configs/sync.py:tiny

Composites Sonic Pi's samples with moving pictures into long recordings
(data_pipelines/devset.py: a music bed, off-screen sounds, pans and cuts,
silent motion, small sources), then prepares each recording's first 80% as
`train`, the next 10% as `validation` and the last 10% as `test`
(avjax-prepare --splits), at the config's settings, into the data cache, and
the last 10% again with each sounding object's box at its onset as
`test_boxes` (localisation; `test` has none, so that sync is scored at each
clip's middle frame, as on footage without boxes). It
prints the flags that train and evaluate on it. Built once; a second call with
the same settings only prints them.
"""
from __future__ import annotations

import os

from absl import flags
from ml_collections import config_flags

from avjax import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "training config[:arg] whose data settings the shards must serve",
    lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "folder to build in (default: the data cache's "
                              "devsets/sonicpi/<version>)")
_SAMPLES = flags.DEFINE_string("samples_dir", None, "Sonic Pi's samples (default: where "
                               "Debian's sonic-pi-samples puts them)")
_COPYRIGHT = flags.DEFINE_string("copyright", None, "their Debian copyright file (licences)")
_CLIP_SECONDS = flags.DEFINE_float("clip_seconds", 3.0, "prepared clip length")
_RECORDINGS = flags.DEFINE_integer("recordings", None, "recordings to make (default 12)")
_SECONDS = flags.DEFINE_float("seconds", None, "length of each recording (default 150)")
_WORKERS = flags.DEFINE_integer("workers", None, "processes (default: all cores)")


def base_dir() -> str:
  from data_pipelines import default_dataset, devset
  return _OUTPUT.value or os.path.join(default_dataset.cache_root(), "devsets", devset.NAME,
                                       devset.VERSION)


def spec_from_flags():
  from data_pipelines import devset
  over = {k: v for k, v in (("num_recordings", _RECORDINGS.value), ("seconds", _SECONDS.value))
          if v is not None}
  return devset.DevSetSpec(**over)


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  if _CONFIG.value is None:
    raise ValueError("--config: which training config's settings to prepare for "
                     "(e.g. configs/sync.py:tiny)")
  config = cli.loaded_config(_CONFIG)
  from avjax import input as input_lib
  prepared = input_lib.build_devset(config, base_dir(), spec_from_flags(),
                                    clip_seconds=_CLIP_SECONDS.value,
                                    samples_dir=_SAMPLES.value,
                                    copyright_path=_COPYRIGHT.value, workers=_WORKERS.value)
  print(f"--config.data.dir={prepared} --config.data.train_split=train "
        "--config.data.eval_split=validation  (held out: test, and test_boxes for localisation; "
        "licences: "
        f"{os.path.join(prepared, 'LICENSES.csv')})")


def run():
  cli.run("avjax-devset", main)


if __name__ == "__main__":
  run()
