"""The embedded default dataset, generated and prepared on first use into a cache.

Videos are generated once per dataset version; each (sample rate, frame size, fps)
setting gets its own prepared TFRecords beside them. A `.complete` marker is
written last, so an interrupted generation resumes on the next call (prepare and
the generator both skip what is already on disk).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import sys
from typing import Sequence

from data_pipelines import ingest
from data_pipelines import synthetic

# v5: the time-structured sync splits. Splits added since (glyphs_*, turns_test) leave
# the older ones byte for byte as they were, so they share its cache.
VERSION = "v5"


def cache_root() -> str:
  return os.environ.get("AVJAX_DATA_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "avjax")


SPLITS = {s.name: s for s in synthetic.DEFAULT_SPLITS}


def ensure(settings: ingest.PrepareSettings,
           splits: Sequence[str | synthetic.SplitSpec] = ("train", "validation"),
           root: str | None = None, quiet: bool = False) -> str:
  """Returns a folder with one prepared sub-folder per split, building what is missing.

  Only the splits asked for are built: training needs train and validation; the
  test splits are made when an evaluation first asks for them. `settings` are
  prepare's (frame rate and size, sample rate, stored |STFT| framing).
  """
  specs = [SPLITS[s] if isinstance(s, str) else s for s in splits]
  base = os.path.join(root or cache_root(), "default_av", VERSION)
  os.makedirs(base, exist_ok=True)
  # Several processes of one machine (a local multi-process run) share the cache:
  # one builds, the others wait and then find it complete.
  with open(os.path.join(base, ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    return _ensure_locked(specs, base, settings, quiet)


def built(settings: ingest.PrepareSettings, split: str, root: str | None = None) -> str:
  """The prepared folder holding `split` at these settings if `ensure` has built
  it, else ""; builds nothing."""
  folder = prepared_folder(os.path.join(root or cache_root(), "default_av", VERSION), settings)
  return folder if os.path.exists(os.path.join(folder, split, ".complete")) else ""


def prepared_folder(base: str, settings: ingest.PrepareSettings) -> str:
  """One folder per setting, named by what changes the records."""
  s = settings.spectrogram
  stft_tag = f"_stft{s.win_length}-{s.hop_length}-{s.n_fft}" if s else ""
  return os.path.join(base, f"prepared_{settings.sample_rate}hz_{settings.frame_size}px_"
                            f"{settings.fps:g}fps{stft_tag}")


def _ensure_locked(specs, base, settings, quiet) -> str:
  prepared = prepared_folder(base, settings)
  video_dir = lambda split: os.path.join(base, "videos", split.name)
  missing = [s for s in specs if not os.path.exists(os.path.join(video_dir(s), ".complete"))]
  if missing:
    if not quiet:
      print(f"generating the default dataset ({', '.join(f'{s.name}: {s.num_clips} clips' for s in missing)})"
            f" into {os.path.join(base, 'videos')}", file=sys.stderr)
    synthetic.generate_splits({s: video_dir(s) for s in missing})
    for s in missing:
      open(os.path.join(video_dir(s), ".complete"), "w").close()
  for split in specs:
    videos = video_dir(split)
    out = os.path.join(prepared, split.name)
    if not os.path.exists(os.path.join(out, ".complete")):
      ingest.prepare(
          videos, out, labels_csv=os.path.join(videos, "labels.csv"),
          boxes_csv=os.path.join(videos, "boxes.csv"), settings=settings,
          files_per_shard=split.files_per_shard, quiet=quiet)
      open(os.path.join(out, ".complete"), "w").close()
    # The evaluators' truths beside the shards: sounding intervals (active speaker
    # detection) and a duets split's stems (separation).
    speakers = os.path.join(videos, "speakers.csv")
    if os.path.exists(speakers) and not os.path.exists(os.path.join(out, "speakers.csv")):
      shutil.copyfile(speakers, os.path.join(out, "speakers.csv"))
    stems = synthetic.stems_folder(videos)
    if os.path.isdir(stems) and not os.path.isdir(os.path.join(out, synthetic.STEMS)):
      shutil.copytree(stems, os.path.join(out, synthetic.STEMS + ".tmp"), dirs_exist_ok=True)
      os.replace(os.path.join(out, synthetic.STEMS + ".tmp"), os.path.join(out, synthetic.STEMS))
  return prepared

