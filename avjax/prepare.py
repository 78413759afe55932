"""Prepare videos for training: avjax-prepare (or python -m avjax.prepare).

  avjax-prepare --input DIR_OR_CSV --output DIR --config=configs/avenet.py \\
      [--labels CSV] [--boxes CSV] [--workers N]

With --config, the frame rate, sample rate, frame size and stored |STFT|
framing come from the training config (`--config.data.*` overrides apply), so
the shards hold what that config's reader slices. Without it they come from
--fps, --sample_rate, --frame_size and --stft (default: the paper's settings).
The work itself is data_pipelines.ingest.prepare.

--splits train=0:0.8,validation=0.8:1 prepares time-disjoint splits of every
input file (fractions of its duration, or seconds with an `s`: 0:480s) into
OUTPUT/train and OUTPUT/validation: how a few long recordings of your own give
a training split and a held-out one. Each manifest records its range.

With --runner, the same preparation runs as an Apache Beam pipeline
(data_pipelines/beam_ingest.py; `pip install avjax[beam]`), and the flags
avjax-prepare does not define are Beam's pipeline options:

  avjax-prepare --input DIR --output DIR --config=... --runner=DirectRunner \
      --direct_num_workers=0 --direct_running_mode=multi_processing
  avjax-prepare --input gs://b/videos --output gs://b/prepared --config=... \
      --runner=DataflowRunner --project=P --region=R --temp_location=gs://b/tmp
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
_LABELS = flags.DEFINE_string("labels", None, "CSV file,label[,start,end] (several labels separated by ';'; "
                             "start,end: seconds the labels hold for)")
_BOXES = flags.DEFINE_string("boxes", None, "CSV file,ymin,xmin,ymax,xmax[,time] normalised to 0..1")
_FPS = flags.DEFINE_float("fps", None, "frames per second stored (default 25)")
_SAMPLE_RATE = flags.DEFINE_integer("sample_rate", None, "audio sample rate (default 48000)")
_FRAME_SIZE = flags.DEFINE_integer("frame_size", None,
                                   "shorter side of the stored frames, in pixels (default 256)")
_STFT = flags.DEFINE_string("stft", None, "win_length,hop_length,n_fft of the stored |STFT| "
                            "(default 480,240,512)")
_NO_SPECTROGRAM = flags.DEFINE_bool("no_spectrogram", False,
                                    "store no |STFT| (smaller shards; the reader then computes it)")
_CLIP_SECONDS = flags.DEFINE_float("clip_seconds", 10.0, "longer videos are cut into clips of "
                                    "this length (with --config: 10, or what its windows need)")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 1.0, "shorter files and tails are skipped")
_WORKERS = flags.DEFINE_integer("workers", None, "processes (default: all cores)")
_THREADS = flags.DEFINE_integer("threads", None, "FFmpeg decoder and scaler threads per worker "
                                "(default: cores / workers; 0: FFmpeg's choice)")
_FILES_PER_SHARD = flags.DEFINE_integer("files_per_shard", 32, "input files per output shard")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", None, "output shards (default: "
                                   "inputs / --files_per_shard)")
_RANGE_SECONDS = flags.DEFINE_float("range_seconds", 60.0, "files longer than this are decoded "
                                    "as time ranges of about this length, in parallel (0: never)")
_RUNNER = flags.DEFINE_string("runner", None, "run on Apache Beam with this runner (DirectRunner, "
                              "DataflowRunner, FlinkRunner, SparkRunner, ...); the flags "
                              "avjax-prepare does not define are then Beam pipeline options")
_SPLITS = flags.DEFINE_string("splits", None, "time splits of every input file, each prepared "
                              "into OUTPUT/<name>: e.g. train=0:0.8,validation=0.8:1 (fractions "
                              "of each file) or train=0:480s,test=480s:600s (seconds)")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace another prepare job's shards in "
                               "--output (without it such a folder is refused)")
_AUDIO_ONLY = flags.DEFINE_bool("audio_only", False, "sound recordings without a video stream "
                                "(ESC-50's wavs) become clips of black frames instead of being "
                                "skipped; probe them with modalities=audio")
flags.mark_flags_as_required(["input", "output"])

# What --config decides; giving one of these beside it would say it twice.
CONFIG_DECIDES = ("fps", "sample_rate", "frame_size", "stft", "no_spectrogram")


def settings_from_flags():
  from data_pipelines import ingest
  from data_pipelines import spectrogram as spectrogram_lib
  common = dict(clip_seconds=_CLIP_SECONDS.value, min_seconds=_MIN_SECONDS.value,
                audio_only=_AUDIO_ONLY.value)
  config = cli.loaded_config(_CONFIG) if _CONFIG.value is not None else None
  if config is not None:
    given = [f"--{n}" for n in CONFIG_DECIDES if flags.FLAGS[n].present]
    if given:
      raise ValueError(f"{', '.join(given)}: --config decides these; override "
                       "--config.data.* instead")
    from avjax import input as input_lib
    from avjax import config_check
    config_check.check_data(config)
    if not flags.FLAGS["clip_seconds"].present:  # the config's windows decide it
      del common["clip_seconds"]
    return input_lib.prepare_settings(config.data, **common)
  default = ingest.PrepareSettings()
  rate = _SAMPLE_RATE.value or default.sample_rate
  try:
    spectrogram = None if _NO_SPECTROGRAM.value else spectrogram_lib.SpectrogramSpec.parse_stft(
        _STFT.value or "480,240,512", rate)
  except ValueError as e:
    raise ValueError(f"--stft {e}") from None
  return ingest.PrepareSettings(fps=_FPS.value or default.fps, sample_rate=rate,
                                     frame_size=_FRAME_SIZE.value or default.frame_size,
                                     spectrogram=spectrogram, **common)


def beam_args(runner: str, rest: list[str]) -> list[str]:
  """--runner and the pipeline options among `rest`; a flag that is neither
  avjax-prepare's nor a Beam option is an error, not silently dropped."""
  try:
    from apache_beam.options.pipeline_options import PipelineOptions
  except ImportError:
    raise ValueError(f"--runner={runner} needs Apache Beam: pip install 'avjax[beam]'") from None
  known = PipelineOptions(rest).get_all_options(drop_default=False)
  for arg in rest:
    name = arg.lstrip("-").split("=", 1)[0]
    if arg.startswith("-") and name not in known:
      raise ValueError(f"{arg.split('=', 1)[0]}: neither an avjax-prepare flag nor a Beam "
                       "pipeline option")
    if not arg.startswith("-"):
      raise ValueError(f"{arg!r}: unexpected argument")
  return [f"--runner={runner}", *rest]


def main(argv):
  from data_pipelines import fs, ingest
  settings = settings_from_flags()
  common = dict(labels_csv=_LABELS.value, boxes_csv=_BOXES.value, settings=settings,
                files_per_shard=_FILES_PER_SHARD.value, num_shards=_NUM_SHARDS.value,
                overwrite=_OVERWRITE.value, range_seconds=_RANGE_SECONDS.value or None)
  if _RUNNER.value is None and len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]} (Beam options need --runner)")
  if _RUNNER.value is not None and (_WORKERS.value is not None or _THREADS.value is not None):
    raise ValueError("--workers and --threads set the local process pool; with --runner the "
                     "runner's options decide the parallelism (e.g. --direct_num_workers)")
  # --splits: one output folder per time split, each a prepare job of its own.
  jobs = ({None: _OUTPUT.value} if not _SPLITS.value else
          {r: fs.join(_OUTPUT.value, name) for name, r in ingest.parse_splits(_SPLITS.value).items()})
  for time_range, output in jobs.items():
    if _RUNNER.value is None:
      manifest = ingest.prepare(_INPUT.value, output, workers=_WORKERS.value,
                                threads=_THREADS.value, time_range=time_range, **common)
    else:
      from data_pipelines import beam_ingest
      manifest = beam_ingest.run(_INPUT.value, output, time_range=time_range,
                                 beam_args=beam_args(_RUNNER.value, argv[1:]), **common)
    refuse_empty(manifest, output)


def refuse_empty(manifest: dict, output: str) -> None:
  """A job whose every file was skipped made no dataset: that is a failure, not
  an empty success that training would trip over later."""
  if not manifest["num_clips"]:
    from data_pipelines import fs
    from data_pipelines import ingest
    raise ValueError(f"{output}: no clip prepared; all {manifest['num_skipped']} input file(s) "
                     f"were skipped (reasons in {fs.join(output, ingest.REPORT)})")


def _with_runner(argv) -> bool:
  return any(a == "--runner" or a.startswith("--runner=") for a in argv)


def run():
  cli.run("avjax-prepare", main, pass_through=_with_runner)


if __name__ == "__main__":
  run()
