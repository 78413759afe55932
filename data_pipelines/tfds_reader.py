"""A TFDS classification dataset as evaluation batches, for the probes.

`config.evals.linear_probe.tfds.name=speech_commands` (or clustering's) reads a
TensorFlow Datasets dataset by name instead of a prepared split: its audio
(resampled to the config's rate, the window at the clip's centre, zero-padded
when shorter) and/or its image, or its video's middle frame (resized and
centre-cropped as the evaluation reader crops frames), and its class label.
Frame-stack models (sync) need prepared splits. Batches have the prepared reader's
evaluation layout (`spectrogram` log|STFT| [B, F, T, 1] or `waveform`,
`frames` uint8, multi-hot `labels`, `filename`, `video_id`, `fold`, `mask`), so
every evaluator runs on them unchanged.

Nothing downloads unless `download=True`: otherwise the dataset must already
be prepared in `data_dir` (local or gs://; a dataset prepared there is found by
name even when its builder is not registered in this process). `manual_dir` is
TFDS's, for datasets whose files the user fetches. With `train_split` set, the
probe fits on that split and scores `split` (the official protocol); without,
it cross-validates k folds of `split`.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator

import numpy as np

from data_pipelines import fs
from data_pipelines import reader_spec as reader_spec_lib
from data_pipelines import spectrogram as spectrogram_lib


class TfdsError(ValueError):
  """A TFDS dataset that cannot serve the probe; the message names it."""


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
  name: str
  split: str = "test"
  train_split: str = ""
  data_dir: str = ""
  manual_dir: str = ""
  download: bool = False
  audio: str = ""   # feature keys; "" = the dataset's only Audio / Image feature
  image: str = ""   # an Image or a Video feature
  label: str = "label"


def spec_from_config(cfg) -> TfdsSpec:
  return TfdsSpec(**{f.name: cfg[f.name] for f in dataclasses.fields(TfdsSpec) if f.name in cfg})


def _not_prepared(spec: TfdsSpec, where: str) -> TfdsError:
  return TfdsError(f"tfds {spec.name!r} is not prepared in {where}; prepare it (tfds build) or "
                   "set download=True")


def readable_data_dir(spec: TfdsSpec) -> str:
  """`spec.data_dir` as TensorFlow can read it: itself (local, or gs:// through
  TensorFlow's GCS client), or, where that client cannot reach the storage (a
  local emulator: its endpoints are compiled in), a local copy of the dataset's
  folder (`fs.cached_tree`), as the prepared reader copies its shards."""
  if not spec.data_dir or fs.tf_reads(spec.data_dir):
    return spec.data_dir
  if spec.download:
    raise TfdsError(f"tfds {spec.name!r}: download=True cannot write to {spec.data_dir}, which "
                    "TensorFlow's GCS client cannot reach; prepare it locally and copy it there")
  folder = fs.join(spec.data_dir, spec.name.split("/")[0].split(":")[0])
  try:
    return os.path.dirname(fs.cached_tree(folder))
  except FileNotFoundError:
    raise _not_prepared(spec, spec.data_dir) from None


def _builder(spec: TfdsSpec):
  import tensorflow_datasets as tfds
  data_dir = readable_data_dir(spec)
  kwargs = {"data_dir": data_dir} if data_dir else {}
  try:
    builder = tfds.builder(spec.name, **kwargs)
  except Exception as e:  # TFDS raises several unrelated types for an unknown name
    raise TfdsError(f"tfds {spec.name!r}: {' '.join(str(e).split())[:300]}") from None
  if spec.download:
    config = tfds.download.DownloadConfig(manual_dir=spec.manual_dir or None)
    builder.download_and_prepare(download_config=config)
  elif not builder.is_prepared():
    raise _not_prepared(spec, spec.data_dir or builder.data_dir)
  return builder


def _feature_key(features, wanted: str, kind, what: str, name: str) -> str:
  """The feature `wanted`, or the dataset's only feature of `kind` ("" if none)."""
  if wanted:
    if wanted not in features:
      raise TfdsError(f"tfds {name!r} has no feature {wanted!r} (features: {sorted(features)})")
    return wanted
  keys = [k for k, f in features.items() if isinstance(f, kind)]
  if len(keys) > 1:
    raise TfdsError(f"tfds {name!r} has several {what} features {keys}; choose one")
  return keys[0] if keys else ""


class TfdsReader:
  """Evaluation batches of a TFDS split for one host (`eval_iterator`)."""

  def __init__(self, spec: TfdsSpec, *, reader_spec: reader_spec_lib.ReaderSpec, batch_size: int,
               process_index: int = 0, process_count: int = 1):
    import tensorflow_datasets as tfds
    self.tfds_spec, self.spec, self.batch_size = spec, reader_spec, batch_size
    self.process_index, self.process_count = process_index, process_count
    self.builder = _builder(spec)
    features = self.builder.info.features
    self.audio_key = _feature_key(features, spec.audio, tfds.features.Audio, "audio", spec.name)
    self.image_key = _feature_key(features, spec.image,
                                  (tfds.features.Image, tfds.features.Video), "image or video",
                                  spec.name)
    if self.image_key and reader_spec.frame_stack:
      raise TfdsError(f"tfds {spec.name!r}: a frame-stack model needs prepared splits")
    if not (self.audio_key or self.image_key):
      raise TfdsError(f"tfds {spec.name!r} has no Audio or Image feature to probe")
    label = features[spec.label] if spec.label in features else None
    if not isinstance(label, tfds.features.ClassLabel):
      raise TfdsError(f"tfds {spec.name!r}: {spec.label!r} is not a ClassLabel feature")
    self.num_classes = label.num_classes
    self.rate = features[self.audio_key].sample_rate if self.audio_key else None
    if self.audio_key and not self.rate:
      raise TfdsError(f"tfds {spec.name!r}: its audio feature declares no sample_rate")
    self.splits = [s for s in (spec.train_split, spec.split) if s]
    for s in self.splits:
      if s not in self.builder.info.splits:
        raise TfdsError(f"tfds {spec.name!r} has no split {s!r} "
                        f"(splits: {sorted(self.builder.info.splits)})")
    self.modalities = [m for m, k in (("audio", self.audio_key), ("frame", self.image_key)) if k]

  def _examples(self) -> Iterator[tuple[str, int, dict]]:
    """(fold, index, example) of this host's examples, every split in turn."""
    for split in self.splits:
      fold = "train" if split == self.tfds_spec.train_split else "test"
      ds = self.builder.as_dataset(split=split, shuffle_files=False)
      ds = ds.shard(self.process_count, self.process_index)
      for i, ex in enumerate(ds.as_numpy_iterator()):
        yield fold, i * self.process_count + self.process_index, ex

  def _audio(self, samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    if x.ndim > 1:
      x = x.mean(-1)
    if self.rate != self.spec.spectrogram.sample_rate:
      import librosa
      x = librosa.resample(x, orig_sr=self.rate, target_sr=self.spec.spectrogram.sample_rate,
                           res_type="soxr_hq")
    n = self.spec.spectrogram.num_samples
    start = max(0, (len(x) - n) // 2)
    window = np.zeros(n, np.float32)
    piece = x[start:start + n]
    window[(n - len(piece)) // 2:(n - len(piece)) // 2 + len(piece)] = piece
    return window

  def _row(self, fold: str, index: int, ex: dict) -> dict:
    from data_pipelines import clip_ops
    labels = np.zeros(self.num_classes, np.float32)
    labels[int(ex[self.tfds_spec.label])] = 1.0
    row = {"labels": labels, "fold": fold.encode(), "video_id": index, "clip_index": index,
           "filename": f"{self.tfds_spec.name}/{fold}/{index}".encode()}
    if self.audio_key:
      window = self._audio(ex[self.audio_key])
      if self.spec.audio == "waveform":
        row["waveform"] = window
      else:
        row["spectrogram"] = spectrogram_lib.log_spectrogram_numpy(window, self.spec.spectrogram)[..., None]
    if self.image_key:
      image = ex[self.image_key]
      if image.ndim == 4:  # a video: its middle frame
        image = image[len(image) // 2]
      image = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image[..., :3]
      row["frames"] = clip_ops.resize_crop(image, None, spec=self.spec, train=False).numpy()
    return row

  def num_eval_batches(self) -> int:
    counts = [sum(math.ceil(max(0, self.builder.info.splits[s].num_examples - h) /
                            self.process_count) for s in self.splits)
              for h in range(self.process_count)]
    return max(1, math.ceil(max(counts) / self.batch_size))

  def eval_iterator(self, window_hop: float = 0.0, audio_offsets=()) -> Iterator[dict]:
    """Padded batches, the same number on every host."""
    from data_pipelines.reader import padded_batches
    if window_hop > 0 or audio_offsets:
      raise TfdsError(f"tfds {self.tfds_spec.name!r}: window_hop and audio offsets need "
                      "prepared splits")
    yield from padded_batches(self._batches(), self.batch_size, self.num_eval_batches())

  def _batches(self) -> Iterator[dict]:
    """This host's examples as rows, stacked `batch_size` at a time (the last short)."""
    rows, any_rows = [], False
    for fold, index, ex in self._examples():
      rows.append(self._row(fold, index, ex))
      any_rows = True
      if len(rows) == self.batch_size:
        yield _stack(rows)
        rows = []
    if rows:
      yield _stack(rows)
    if not any_rows:
      raise TfdsError(f"tfds {self.tfds_spec.name!r}: splits {self.splits} hold no examples")


def _stack(rows: list[dict]) -> dict:
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}
