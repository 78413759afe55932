"""From a config to reader specs, per-host readers and global, mesh-sharded batches.

The one place that reads `config.data`'s layout: data_pipelines receives the
specs built here (ReaderSpec, SpectrogramSpec, PrepareSettings). The reader
(and with it TensorFlow, ~700 MB of a process) is imported only by what reads
shards, so audio inference can run without it.
"""
from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np

from data_pipelines import contract
from data_pipelines import default_dataset
from data_pipelines import ingest
from data_pipelines import spectrogram as spectrogram_lib


def spectrogram_spec(data) -> spectrogram_lib.SpectrogramSpec:
  s = data.spectrogram
  return spectrogram_lib.SpectrogramSpec(
      sample_rate=data.sample_rate, win_length=s.win_length, hop_length=s.hop_length,
      n_fft=s.n_fft, log_offset=s.log_offset, seconds=s.seconds)


def reader_spec(data):
  """`config.data` -> what the reader needs, as a frozen reader_spec.ReaderSpec."""
  from data_pipelines.reader_spec import ReaderSpec
  return ReaderSpec(
      spectrogram=spectrogram_spec(data), fps=data.fps, resize=data.resize, crop=data.crop,
      negative_fraction=data.negative_fraction, negatives=data.negatives, min_shift=data.min_shift,
      both_examples=data.both_examples,
      negatives_on_grid=data.negatives_on_grid, shuffle_buffer=data.shuffle_buffer,
      flip=data.flip, colour_jitter=data.colour_jitter, zoom_out=data.zoom_out,
      gain_db=data.gain_db,
      num_classes=data.num_classes,
      # A waveform reader parses the stored waveform; prepare still stores the
      # |STFT| the config's framing asks for (prepare_settings), so one prepared
      # folder serves both kinds of model.
      stored_spectrogram=data.stored_spectrogram and data.audio == "spectrogram",
      examples_per_clip=data.examples_per_clip, sound_targets=data.get("sound_targets", ""),
      sound_k=data.get("sound_k", 0), audio=data.audio, frame_stack=data.frame_stack,
      autotune=data.autotune, records=data.records)


def shortest_clip(data) -> float:
  """Seconds a training clip must hold (ReaderSpec.shortest_clip)."""
  return reader_spec(data).shortest_clip


def prepare_settings(data, **overrides) -> ingest.PrepareSettings:
  """`config.data` -> prepare's settings, so that prepared shards are what the
  config's reader reads: its frame rate, sample rate, frame size, (when the
  config slices stored |STFT|) the config's spectrogram framing, and clips no
  shorter than its windows need (prepare's default length, or longer)."""
  need = shortest_clip(data)
  clip = overrides.pop("clip_seconds", None)
  if clip is not None and clip < need:
    raise ValueError(f"--clip_seconds={clip:g}: the config's windows need clips of at least "
                     f"{need:g} s (config.data.spectrogram.seconds"
                     f"{' plus twice config.data.min_shift' if data.negatives == 'shifted' else ''})")
  clip = clip or max(ingest.PrepareSettings.clip_seconds, math.ceil(need))
  return ingest.PrepareSettings(
      fps=data.fps, sample_rate=data.sample_rate, frame_size=data.resize,
      spectrogram=spectrogram_spec(data) if data.stored_spectrogram else None,
      clip_seconds=clip, **overrides)


def _uses_default_dataset(data_config, split: str) -> bool:
  """No config.data.dir, and a split name rather than a glob (which names its
  shards itself)."""
  from data_pipelines import reader as reader_lib
  return not data_config.dir and not reader_lib.is_glob(split)


def _check_default_split(split: str) -> None:
  if split not in default_dataset.SPLITS:
    raise ValueError(f"split {split!r}: the embedded default dataset has only "
                     f"{sorted(default_dataset.SPLITS)}; set config.data.dir for other data")


def data_splits(config) -> list[str]:
  """The splits a run of `config` reads: training, validation, and each enabled
  evaluator's own."""
  own = [e.split for e in config.evals.values() if e.every > 0 and e.get("split")]
  return list(dict.fromkeys([config.data.train_split, config.data.eval_split, *own]))


def ensure_data(config, splits=()) -> None:
  """The explicit data step, taken before any reader is built by
  train.train_and_evaluate and runner.evaluate (so by avjax-train,
  avjax-evaluate and avjax-sweep): with no config.data.dir, the
  embedded default dataset's `splits` (default: `data_splits`) are generated and
  prepared into the cache, and the ambient-sound targets fitted on its training
  split where the config asks for them. User data is never touched: it is
  prepared by avjax-prepare and its targets fitted by avjax-sound-clusters."""
  d = config.data
  wanted = [s for s in (splits or data_splits(config)) if _uses_default_dataset(d, s)]
  for split in wanted:
    _check_default_split(split)
  if not wanted:
    return
  base = default_dataset.ensure(prepare_settings(d), splits=wanted)
  if d.get("sound_targets") and d.train_split in wanted:
    ensure_default_sound_targets(d, base)


# The development set's time splits of every recording.
DEVSET_SPLITS = "train=0:0.8,validation=0.8:0.9,test=0.9:1"


def build_devset(config, base: str, spec, *, clip_seconds: float,
                 samples_dir: str | None = None, copyright_path: str | None = None,
                 workers: int | None = None) -> str:
  """The real-sound development set (data_pipelines/devset.py, avjax-devset):
  builds what is missing under `base` -> the prepared folder holding the train,
  validation, test and test_boxes splits at `config`'s settings."""
  import shutil
  from data_pipelines import devset
  videos = os.path.join(base, "videos")
  if not os.path.exists(os.path.join(videos, ".complete")):
    devset.build_videos(videos, spec, samples_dir or devset.SAMPLES_DIR,
                        copyright_path or devset.COPYRIGHT, workers=workers)
  settings = prepare_settings(config.data, clip_seconds=clip_seconds, min_seconds=0.5)
  prepared = f"{default_dataset.prepared_folder(base, settings)}_{clip_seconds:g}s"
  ranges = ingest.parse_splits(DEVSET_SPLITS)
  # `test` holds no boxes, so that sync is scored at each clip's middle frame as
  # on footage without them; `test_boxes` (the same range) takes the frame of
  # a sounding object's onset, for the localisation evaluator, as `validation`
  # does (localisation can then run during training).
  for name, time_range, boxed in (*((n, r, n == "validation") for n, r in ranges.items()),
                                  ("test_boxes", ranges["test"], True)):
    out = os.path.join(prepared, name)
    if not os.path.exists(os.path.join(out, ".complete")):
      ingest.prepare(videos, out, boxes_csv=os.path.join(videos, "boxes.csv") if boxed else None,
                     settings=settings, files_per_shard=2, workers=workers, quiet=True,
                     time_range=time_range, overwrite=True)
      open(os.path.join(out, ".complete"), "w").close()
  shutil.copyfile(os.path.join(videos, "LICENSES.csv"), os.path.join(prepared, "LICENSES.csv"))
  return prepared


def data_dir(data_config, split: str) -> str:
  """config.data.dir, or the embedded default dataset's folder where `ensure_data`
  has built `split`; building a reader builds no data."""
  if not _uses_default_dataset(data_config, split):
    return data_config.dir
  _check_default_split(split)
  folder = default_dataset.built(prepare_settings(data_config), split)
  if not folder:
    raise ValueError(f"split {split!r} of the embedded default dataset is not built yet: "
                     "avjax-train and avjax-evaluate build it (in code: "
                     "avjax.input.ensure_data(config)), or set config.data.dir")
  return folder


def data_files(data_config, split: str) -> list[str]:
  """The shards of `split`; ValueError, in one line naming the folder or glob,
  where there are none."""
  from data_pipelines import reader as reader_lib
  return reader_lib.resolve_files(data_dir(data_config, split), split)


def per_host_batch(global_batch: int) -> int:
  """A global batch's share on this host; it must divide evenly."""
  if global_batch % jax.process_count():
    raise ValueError(f"batch size {global_batch} is not divisible by {jax.process_count()} hosts")
  return global_batch // jax.process_count()


def make_reader(data_config, split: str, *, global_batch: int, seed: int,
                window_seconds: float = 0.0):
  """-> this host's data_pipelines.reader.Reader of `split`; `window_seconds` > 0:
  audio windows of that length instead of config.data.spectrogram.seconds."""
  from data_pipelines import reader as reader_lib
  host_batch = per_host_batch(global_batch)
  files = data_files(data_config, split)
  spec = reader_spec(data_config)
  if window_seconds:
    spec = dataclasses.replace(spec, spectrogram=dataclasses.replace(spec.spectrogram,
                                                                     seconds=window_seconds))
  return reader_lib.Reader(files, spec=spec,
                           batch_size=host_batch, seed=seed,
                           process_index=jax.process_index(),
                           process_count=jax.process_count())


def make_tfds_reader(tfds_config, data_config, *, global_batch: int):
  """-> this host's data_pipelines.tfds_reader.TfdsReader of the TFDS dataset
  `tfds_config` names (config.evals.<name>.tfds), in config.data's crops and framing."""
  from data_pipelines import tfds_reader
  return tfds_reader.TfdsReader(tfds_reader.spec_from_config(tfds_config),
                                reader_spec=reader_spec(data_config),
                                batch_size=per_host_batch(global_batch),
                                process_index=jax.process_index(),
                                process_count=jax.process_count())


def ensure_default_sound_targets(data_config, base: str) -> None:
  """The embedded dataset gets its ambient-sound targets on first use, as it gets
  its shards; other data needs `avjax-sound-clusters` run on it."""
  from data_pipelines import fs, sound_targets
  split_dir = fs.join(base, data_config.train_split)
  if fs.exists(fs.join(split_dir, sound_targets.TARGETS)) and fs.exists(
      fs.join(base, sound_targets.MODEL)):
    model = sound_targets.load_model(base)
    if (model["kind"], model["k"], model["features"]) == (
        data_config.sound_targets, data_config.sound_k, data_config.sound_features):
      return
  print(f"fitting {data_config.sound_targets} of {data_config.sound_features} statistics "
        f"(k={data_config.sound_k}) on {split_dir}", flush=True)
  sound_targets.fit_and_write(base, data_config.train_split, kind=data_config.sound_targets,
                              k=data_config.sound_k, features=data_config.sound_features)


def to_global(local_batch: dict, sharding) -> dict:
  """Host-local numpy batch -> global jax.Arrays sharded along the batch axis
  (the contract's device keys only)."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items() if k not in contract.HOST_ONLY}


def train_batch_shapes(config, batch: int, *, num_classes: int = 0) -> dict:
  """A training batch of `config` as ShapeDtypeStructs: the contract's device
  keys (data_pipelines/contract.py) that its reader yields, with the
  `teacher_probs` the trainer adds. What the jitted update is lowered for
  without reading data (export checks, memory plans). `num_classes` stands in
  for a manifest's labels where config.data.num_classes leaves them to it."""
  from data_pipelines import reader as reader_lib
  d = config.data
  spec = reader_spec(d)
  classes = d.num_classes or num_classes or 10
  sizes = {"crop": d.crop, "bins": spec.spectrogram.num_bins,
           "frames": spec.spectrogram.num_frames, "shipped_bins": reader_lib.shipped_bins(spec),
           "samples": spec.spectrogram.num_samples, "stack": d.frame_stack, "classes": classes,
           "target_dims": 1 if d.get("sound_targets", "") != "bits" else d.get("sound_k", 0)}
  wanted = {"aug_zoom": d.zoom_out > 0, "frame_stack": d.frame_stack > 0,
            "sound_target": bool(d.get("sound_targets", ""))}
  out = {}
  for name, key in contract.keys(contract.TRAIN).items():
    if (not key.device or (key.optional and not wanted.get(name, False))
        or (key.audio and key.audio != d.audio)):
      continue
    rows = contract.frame_rows(batch, d.both_examples) if name in contract.FRAME_KEYS else batch
    shape = (rows, *(sizes[s] if isinstance(s, str) else s for s in key.shape))
    out[name] = jax.ShapeDtypeStruct(shape, np.dtype(key.dtype))
  teachers = config.get("teachers") or {}
  if teachers:
    from avjax.models import soundnet
    m = config.model
    steps = soundnet.output_steps(sizes["samples"], kernels=m.kernels, strides=m.strides,
                                  pools=m.pools, head_kernel=m.head_kernel,
                                  head_stride=m.head_stride)
    out["teacher_probs"] = [jax.ShapeDtypeStruct((batch, steps, k), np.float32)
                            for k in m.head_classes]
  return out


def _plausible(name: str, spec: jax.ShapeDtypeStruct, rng: np.random.Generator) -> np.ndarray:
  """A value of training batch key `name` that the reader could have shipped."""
  shape, dtype = spec.shape, np.dtype(spec.dtype)
  if dtype == np.uint8:
    return rng.integers(0, 256, shape, dtype=np.uint8)
  if dtype == bool:
    return rng.uniform(size=shape) < 0.5
  if name == "label":
    return (np.arange(shape[0]) % 2).astype(dtype)
  if name == "labels":
    return np.eye(shape[1], dtype=dtype)[np.arange(shape[0]) % shape[1]]
  if dtype.kind == "i":
    return np.zeros(shape, dtype)  # a cluster index, or code bits
  if name == "stft_magnitude":
    return rng.exponential(size=shape).astype(dtype)
  if name == "aug_zoom":
    return np.tile(np.array([1.0, 0.0, 0.0], dtype), (shape[0], 1))
  if name in ("aug_gain", "aug_contrast", "aug_saturation"):
    return rng.uniform(0.7, 1.3, shape).astype(dtype)
  if name == "teacher_probs":
    logits = rng.normal(size=shape)
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)).astype(dtype)
  return (0.1 * rng.normal(size=shape)).astype(dtype)


def plausible_train_batch(config, batch: int, *, seed: int = 0) -> dict:
  """A random training batch of train_batch_shapes(config, batch), numpy, each key
  within what the reader ships (uint8 pixels, alternating labels, gains near one,
  probabilities that sum to one): for timing and checking the update without data."""
  rng = np.random.default_rng(seed)
  return {name: ([_plausible(name, s, rng) for s in spec] if isinstance(spec, list)
                 else _plausible(name, spec, rng))
          for name, spec in train_batch_shapes(config, batch).items()}
