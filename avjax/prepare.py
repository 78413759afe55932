"""Prepare videos for training: avjax-prepare (or python -m avjax.prepare).

  avjax-prepare --input DIR_OR_CSV --output DIR --config=configs/avenet.py \\
      [--labels CSV] [--boxes CSV] [--workers N]

With --config, the frame rate, sample rate, frame size and stored |STFT|
framing come from the training config (`--config.data.*` overrides apply), so
the shards hold what that config's reader slices. Without it they come from
--fps, --sample_rate, --frame_size and --stft (default: the paper's settings).
The work itself is data_pipelines.prepare.prepare.
"""
from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from avjax import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "training config[:arg] whose data settings the shards must serve",
    lock_config=True)
_INPUT = flags.DEFINE_string("input", None, "folder of videos, or a CSV whose first column lists them")
_OUTPUT = flags.DEFINE_string("output", None, "folder for the TFRecord shards")
_LABELS = flags.DEFINE_string("labels", None, "CSV file,label (several labels separated by ';')")
_BOXES = flags.DEFINE_string("boxes", None, "CSV file,ymin,xmin,ymax,xmax[,time] normalised to 0..1")
_FPS = flags.DEFINE_float("fps", None, "frames per second stored (default 25)")
_SAMPLE_RATE = flags.DEFINE_integer("sample_rate", None, "audio sample rate (default 48000)")
_FRAME_SIZE = flags.DEFINE_integer("frame_size", None,
                                   "shorter side of the stored frames, in pixels (default 256)")
_STFT = flags.DEFINE_string("stft", None, "win_length,hop_length,n_fft of the stored |STFT| "
                            "(default 480,240,512)")
_NO_SPECTROGRAM = flags.DEFINE_bool("no_spectrogram", False,
                                    "store no |STFT| (smaller shards; the reader then computes it)")
_CLIP_SECONDS = flags.DEFINE_float("clip_seconds", 10.0, "longer videos are cut into clips of this length")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 1.0, "shorter files and tails are skipped")
_WORKERS = flags.DEFINE_integer("workers", None, "processes (default: all cores)")
_FILES_PER_SHARD = flags.DEFINE_integer("files_per_shard", 32, "input files per output shard")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace another prepare job's shards in "
                               "--output (without it such a folder is refused)")
flags.mark_flags_as_required(["input", "output"])

# What --config decides; giving one of these beside it would say it twice.
CONFIG_DECIDES = ("fps", "sample_rate", "frame_size", "stft", "no_spectrogram")


def settings_from_flags():
  from data_pipelines import prepare as prepare_lib
  from data_pipelines import spectrogram as spectrogram_lib
  common = dict(clip_seconds=_CLIP_SECONDS.value, min_seconds=_MIN_SECONDS.value)
  config = cli.loaded_config(_CONFIG) if _CONFIG.value is not None else None
  if config is not None:
    given = [f"--{n}" for n in CONFIG_DECIDES if flags.FLAGS[n].present]
    if given:
      raise ValueError(f"{', '.join(given)}: --config decides these; override "
                       "--config.data.* instead")
    from avjax import input as input_lib
    from avjax import config_check
    config_check.check_data(config)
    return input_lib.prepare_settings(config.data, **common)
  default = prepare_lib.PrepareSettings()
  rate = _SAMPLE_RATE.value or default.sample_rate
  try:
    spectrogram = None if _NO_SPECTROGRAM.value else spectrogram_lib.SpectrogramSpec.parse_stft(
        _STFT.value or "480,240,512", rate)
  except ValueError as e:
    raise ValueError(f"--stft {e}") from None
  return prepare_lib.PrepareSettings(fps=_FPS.value or default.fps, sample_rate=rate,
                                     frame_size=_FRAME_SIZE.value or default.frame_size,
                                     spectrogram=spectrogram, **common)


def main(argv):
  del argv
  from data_pipelines import prepare as prepare_lib
  settings = settings_from_flags()
  prepare_lib.prepare(_INPUT.value, _OUTPUT.value, labels_csv=_LABELS.value,
                      boxes_csv=_BOXES.value, settings=settings, workers=_WORKERS.value,
                      files_per_shard=_FILES_PER_SHARD.value, overwrite=_OVERWRITE.value)


def run():
  cli.run("avjax-prepare", main)


if __name__ == "__main__":
  run()
