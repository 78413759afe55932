"""From a config to reader specs, per-host readers and global, mesh-sharded batches.

The one place that reads `config.data`'s layout: data_pipelines receives the
specs built here (ReaderSpec, SpectrogramSpec, PrepareSettings). The reader
(and with it TensorFlow, ~700 MB of a process) is imported only by what reads
shards, so audio inference can run without it.
"""
from __future__ import annotations

import jax
import numpy as np

from data_pipelines import contract
from data_pipelines import default_dataset
from data_pipelines import prepare as prepare_lib
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
      autotune=data.autotune)


def prepare_settings(data, **overrides) -> prepare_lib.PrepareSettings:
  """`config.data` -> prepare's settings, so that prepared shards are what the
  config's reader reads: its frame rate, sample rate, frame size and (when the
  config slices stored |STFT|) the config's spectrogram framing."""
  return prepare_lib.PrepareSettings(
      fps=data.fps, sample_rate=data.sample_rate, frame_size=data.resize,
      spectrogram=spectrogram_spec(data) if data.stored_spectrogram else None, **overrides)


def data_dir(data_config, split: str) -> str:
  """config.data.dir, or the embedded default dataset with `split` built (on first
  use). A glob `split` names its shards itself and needs neither."""
  from data_pipelines import reader as reader_lib
  if data_config.dir or reader_lib.is_glob(split):
    return data_config.dir
  if split not in default_dataset.SPLITS:
    raise ValueError(f"split {split!r}: the embedded default dataset has only "
                     f"{sorted(default_dataset.SPLITS)}; set config.data.dir for other data")
  return default_dataset.ensure(prepare_settings(data_config), splits=(split,))


def make_reader(data_config, split: str, *, global_batch: int, seed: int):
  """-> this host's data_pipelines.reader.Reader of `split`."""
  from data_pipelines import reader as reader_lib
  if global_batch % jax.process_count():
    raise ValueError(f"batch size {global_batch} is not divisible by {jax.process_count()} hosts")
  base = data_dir(data_config, split)
  if data_config.get("sound_targets") and split == data_config.train_split and not data_config.dir:
    ensure_default_sound_targets(data_config, base)
  files = reader_lib.resolve_files(base, split)
  return reader_lib.Reader(files, spec=reader_spec(data_config),
                           batch_size=global_batch // jax.process_count(), seed=seed,
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
