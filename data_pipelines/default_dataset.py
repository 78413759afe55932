"""The embedded default dataset, generated and prepared on first use into a cache.

Videos are generated once per dataset version; each (sample rate, frame size, fps)
setting gets its own prepared TFRecords beside them. A `.complete` marker is
written last, so an interrupted generation resumes on the next call (prepare and
the generator both skip what is already on disk).
"""
from __future__ import annotations

import os
import sys

from data_pipelines import prepare as prepare_lib
from data_pipelines import synthetic

VERSION = "v1"


def cache_root() -> str:
  return os.environ.get("AVJAX_DATA_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "avjax")


def ensure(*, sample_rate: int, frame_size: int, fps: float,
           splits=synthetic.DEFAULT_SPLITS, root: str | None = None,
           quiet: bool = False) -> str:
  """Returns a folder with one prepared sub-folder per split, building it if needed."""
  base = os.path.join(root or cache_root(), "default_av", VERSION)
  prepared = os.path.join(base, f"prepared_{sample_rate}hz_{frame_size}px_{fps:g}fps")
  for split in splits:
    videos = os.path.join(base, "videos", split.name)
    if not os.path.exists(os.path.join(videos, ".complete")):
      if not quiet:
        print(f"generating the default dataset's {split.name} split ({split.num_clips} "
              f"clips) into {videos}", file=sys.stderr)
      synthetic.generate_split(split, videos)
      open(os.path.join(videos, ".complete"), "w").close()
    out = os.path.join(prepared, split.name)
    if not os.path.exists(os.path.join(out, ".complete")):
      prepare_lib.prepare(
          videos, out, labels_csv=os.path.join(videos, "labels.csv"),
          boxes_csv=os.path.join(videos, "boxes.csv"),
          settings=prepare_lib.PrepareSettings(fps=fps, sample_rate=sample_rate,
                                               frame_size=frame_size),
          files_per_shard=64, quiet=quiet)
      open(os.path.join(out, ".complete"), "w").close()
  return prepared
