"""tf.data readers: DMVR-format shards -> host batches for the jitted step.

Frames leave as uint8 crops with their augmentation draws (`aug_*`);
avjax.frames turns them into the contract's float32 frames on the device.

Training batches hold frame/audio pairs: a frame at time t with the 1 s of audio
centred on it (label 1), or with 1 s of audio from another video (label 0). Every
random draw is stateless, keyed by (seed, global example index), and the record
order of epoch e depends only on (seed, e). So a reader is a pure function of its
seed and start position: restoring at step k only re-reads serialized records of
the current epoch (and re-parses at most B + 1 of them), never decodes them.

`examples_per_clip` pairs come from each record read: the record is parsed once
and its pairs go into B + 1 consecutive batches, one each (see `spread_index`).

Audio windows start on the frame grid: the positive window for frame k starts at
frame k - floor(fps/2), so it is centred on frame k to within half a frame, and a
negative window starts on the grid too, so the start phase never tells positives
from negatives. `negatives_on_grid=False` draws negative starts anywhere, the
shortcut the "Objects that Sound" paper warns of, for ablations.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from data_pipelines import dmvr
from data_pipelines import host_memory
from data_pipelines import spectrogram as spectrogram_lib

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class ReaderSpec:
  """What the reader needs from `config.data`, as a plain frozen record."""
  spectrogram: spectrogram_lib.SpectrogramSpec
  fps: float = 25.0                 # for shards that do not store their frame rate
  resize: int = 256                 # shorter side before cropping
  crop: int = 224
  negative_fraction: float = 0.5
  negatives: str = "stream"         # "stream" or "in_batch"
  negatives_on_grid: bool = True
  shuffle_buffer: int = 1024
  flip: bool = True
  colour_jitter: float = 0.3        # 0 disables
  gain_db: float = 3.0              # random gain range (+/-) in dB; 0 disables
  num_classes: int = 0              # 0: from the manifest
  # Slice windows out of the |STFT| that prepare stored, instead of parsing the
  # waveform and recomputing it; the Reader turns it on where the shards allow.
  stored_spectrogram: bool = False
  # Training pairs drawn from each record read (different frames and windows).
  # Reading, checking and parsing a record costs more than one pair's decode;
  # a 10 s paper-scale clip has ~9 distinct 1 s windows to give.
  examples_per_clip: int = 1

  def __post_init__(self):
    if self.negatives not in ("stream", "in_batch"):
      raise ValueError(f"config.data.negatives must be 'stream' or 'in_batch', got {self.negatives!r}")
    if not 0.0 <= self.negative_fraction < 1.0:
      raise ValueError(f"config.data.negative_fraction must be in [0, 1), got {self.negative_fraction}")
    if self.examples_per_clip < 1:
      raise ValueError(f"config.data.examples_per_clip must be >= 1, got {self.examples_per_clip}")


def reader_spec_from_config(data) -> ReaderSpec:
  s = data.spectrogram
  return ReaderSpec(
      spectrogram=spectrogram_lib.SpectrogramSpec(
          sample_rate=data.sample_rate, win_length=s.win_length, hop_length=s.hop_length,
          n_fft=s.n_fft, log_offset=s.log_offset, seconds=s.seconds),
      fps=data.fps, resize=data.resize, crop=data.crop,
      negative_fraction=data.negative_fraction, negatives=data.negatives,
      negatives_on_grid=data.negatives_on_grid, shuffle_buffer=data.shuffle_buffer,
      flip=data.flip, colour_jitter=data.colour_jitter, gain_db=data.gain_db,
      num_classes=data.num_classes, stored_spectrogram=data.stored_spectrogram,
      examples_per_clip=data.examples_per_clip)


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------
def resolve_files(data_dir: str, split: str) -> list[str]:
  """`split` is a folder under `data_dir` (as `prepare` writes) or a glob pattern."""
  pattern = split if any(c in split for c in "*?[") else os.path.join(data_dir, split, "*.tfrecord*")
  files = sorted(f for f in glob.glob(pattern) if not f.endswith((".json", ".tmp")))
  if not files:
    raise FileNotFoundError(f"no TFRecord shards match {pattern!r} (config.data.dir={data_dir!r}, "
                            f"split={split!r})")
  return files


def load_manifest(files: Sequence[str]) -> dict | None:
  path = os.path.join(os.path.dirname(files[0]), "manifest.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: unreadable manifest: {e}") from e


def host_files(files: Sequence[str], process_index: int, process_count: int) -> list[str]:
  if len(files) < process_count:
    raise ValueError(f"{len(files)} shards cannot be split over {process_count} hosts; "
                     "prepare with more shards (--files_per_shard)")
  return list(files[process_index::process_count])


def count_records(files: Sequence[str]) -> int:
  """Records in `files`: from the manifest when there is one, else by reading."""
  manifest = load_manifest(files)
  if manifest and all(os.path.basename(f) in manifest["shards"] for f in files):
    return sum(manifest["shards"][os.path.basename(f)] for f in files)
  return int(tf.data.TFRecordDataset(list(files)).reduce(np.int64(0), lambda n, _: n + 1))


# ----------------------------------------------------------------------------
# Per-clip ops (each usable alone or inside tf.data)
# ----------------------------------------------------------------------------
def window_frame_range(num_frames, num_samples, fps, spec: spectrogram_lib.SpectrogramSpec):
  """Frames k whose grid-aligned audio window [k - floor(fps/2), +1 s) fits the clip."""
  half = tf.floor(fps / 2.0)
  duration = tf.cast(num_samples, tf.float32) / spec.sample_rate
  last_start = tf.floor((duration - spec.seconds) * fps + 1e-3)  # in frames
  lo = tf.cast(half, tf.int32)
  hi = tf.minimum(num_frames - 1, tf.cast(last_start + half, tf.int32))
  return lo, hi


def grid_start_sample(k, fps, spec):
  """First sample of the audio window for frame k (on the frame grid)."""
  start_s = (tf.cast(k, tf.float32) - tf.floor(fps / 2.0)) / fps
  return tf.cast(tf.round(start_s * spec.sample_rate), tf.int32)


def magnitude_window(magnitude_bytes, start_sample, spec: spectrogram_lib.SpectrogramSpec):
  """The stored whole-clip |STFT| frames of the window starting at `start_sample`
  (a multiple of the hop): [frames, bins] float32, decoding only those bytes."""
  row = spec.num_bins * 4
  first = start_sample // spec.hop_length
  raw = tf.strings.substr(magnitude_bytes, tf.cast(first, tf.int32) * row, spec.num_frames * row)
  return tf.reshape(tf.io.decode_raw(raw, tf.float32, little_endian=True),
                    [spec.num_frames, spec.num_bins])


def random_gain(seed, gain_db):
  """A gain factor of +-gain_db. It scales |STFT| (as it would the waveform) when
  the log-spectrogram is taken: scaling a float32 waveform first would round
  quiet bins by more than 1e-4 in the log domain."""
  db = tf.random.stateless_uniform([], seed, -gain_db, gain_db)
  return tf.pow(10.0, db / 20.0)


def frame_augment_params(seed, *, spec: ReaderSpec) -> dict:
  """One frame's random draws: the crop seed, and the flip and colour jitter
  that avjax.frames applies on device (keys avjax.frames.AUGMENT_KEYS)."""
  seeds = tf.random.experimental.stateless_split(seed, 5)
  j = spec.colour_jitter
  return {
      "crop_seed": seeds[0],
      "aug_flip": tf.logical_and(spec.flip, tf.random.stateless_uniform([], seeds[1]) < 0.5),
      "aug_brightness": tf.random.stateless_uniform([], seeds[2], -j * 0.5, j * 0.5),
      "aug_contrast": tf.random.stateless_uniform([], seeds[3], 1 - j, 1 + j),
      "aug_saturation": tf.random.stateless_uniform([], seeds[4], 1 - j, 1 + j),
  }


def _crop_offsets(shape, crop: int, seed, train: bool):
  if not train:
    return (shape[0] - crop) // 2, (shape[1] - crop) // 2
  seeds = tf.random.experimental.stateless_split(seed, 2)
  y = tf.random.stateless_uniform([], seeds[0], 0, shape[0] - crop + 1, dtype=tf.int32)
  x = tf.random.stateless_uniform([], seeds[1], 0, shape[1] - crop + 1, dtype=tf.int32)
  return y, x


def scaled_shape(shape, short_side: int):
  """(h, w) -> the size with the shorter side scaled to `short_side`, rounded."""
  scale = short_side / tf.cast(tf.reduce_min(shape), tf.float32)
  return tf.cast(tf.round(tf.cast(shape, tf.float32) * scale), tf.int32)


def resize_crop(image, seed, *, spec: ReaderSpec, train: bool):
  """uint8 [H, W, 3] -> [crop, crop, 3] uint8: a random (train) or central (eval)
  crop after scaling the shorter side to `spec.resize` (no resampling when it is)."""
  shape = tf.shape(image)[:2]
  new = scaled_shape(shape, spec.resize)
  y, x = _crop_offsets(new, spec.crop, seed, train)

  def resized():
    out = tf.image.resize(image, new, antialias=True)[y:y + spec.crop, x:x + spec.crop]
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)

  out = tf.cond(tf.reduce_all(new == shape),
                lambda: image[y:y + spec.crop, x:x + spec.crop], resized)
  return tf.ensure_shape(out, [spec.crop, spec.crop, 3])


def decode_crop(jpeg, seed, *, spec: ReaderSpec, train: bool):
  """JPEG bytes -> resize_crop of the decoded frame.

  Frames stored at the resize size (the usual case: prepare --frame_size) are
  decoded only inside the crop window, which skips a quarter of a 256->224 decode.
  """
  shape = tf.io.extract_jpeg_shape(jpeg)[:2]

  def crop_only():
    y, x = _crop_offsets(shape, spec.crop, seed, train)
    return tf.io.decode_and_crop_jpeg(jpeg, tf.stack([y, x, spec.crop, spec.crop]), channels=3)

  image = tf.cond(tf.reduce_all(scaled_shape(shape, spec.resize) == shape), crop_only,
                  lambda: resize_crop(tf.io.decode_jpeg(jpeg, channels=3), seed, spec=spec,
                                      train=train))
  return tf.ensure_shape(image, [spec.crop, spec.crop, 3])


def box_in_crop(box, jpeg, spec: ReaderSpec):
  """A box normalised to the stored frame -> normalised to the evaluation crop
  (shorter side scaled to `spec.resize`, central `spec.crop` square), clipped to it."""
  new = tf.cast(scaled_shape(tf.io.extract_jpeg_shape(jpeg)[:2], spec.resize), tf.float32)
  offset = tf.floor((new - spec.crop) / 2)
  scale, shift = tf.tile(new, [2]), tf.tile(offset, [2])
  return tf.clip_by_value((box * scale - shift) / spec.crop, 0.0, 1.0)


def clip_windows(clip: dict, index, seed, *, spec: ReaderSpec, train: bool) -> dict:
  """Chooses the frame and the audio windows of one parsed clip.

  Returns the chosen JPEG, the positive window (centred on that frame) and a
  negative candidate window (used when this clip is another clip's negative).
  """
  aspec = spec.spectrogram
  # Checks gate what follows through control dependencies: in a traced tf.data
  # function nothing else orders them before the ops whose inputs they vouch for.
  rate_ok = tf.debugging.assert_equal(
      clip["sample_rate"], aspec.sample_rate,
      message=f"a clip's stored sample rate differs from config.data.sample_rate="
              f"{aspec.sample_rate}; prepare the data at that rate")
  with tf.control_dependencies([rate_ok]):
    n_samples = tf.identity(clip["num_samples"])
  seeds = tf.random.experimental.stateless_split(tf.stack([seed, index]), 6)
  n_frames = clip["num_frames"]
  fps = clip["fps"]
  lo, hi = window_frame_range(n_frames, n_samples, fps, aspec)
  long_enough = tf.debugging.assert_less_equal(
      lo, hi, message=f"a clip is shorter than the {aspec.seconds}s audio window")
  with tf.control_dependencies([long_enough]):
    lo, hi = tf.identity(lo), tf.identity(hi)
  if train:
    k = tf.random.stateless_uniform([], seeds[0], lo, hi + 1, dtype=tf.int32)
  else:
    # The frame the first box refers to, else the middle frame.
    box_t = tf.cast(tf.concat([clip["box_times_us"], [-1]], 0)[0], tf.float32) / 1e6
    k = tf.where(box_t >= 0, tf.cast(tf.round(box_t * fps), tf.int32), n_frames // 2)
  frame_k = tf.clip_by_value(k, 0, n_frames - 1)
  pos_start = grid_start_sample(tf.clip_by_value(k, lo, hi), fps, aspec)
  if spec.negatives_on_grid or not train:
    j = tf.random.stateless_uniform([], seeds[1], lo, hi + 1, dtype=tf.int32) if train else (lo + hi) // 2
    neg_start = grid_start_sample(j, fps, aspec)
  else:
    neg_start = tf.random.stateless_uniform([], seeds[1], 0, n_samples - aspec.num_samples + 1,
                                            dtype=tf.int32)
  if spec.stored_spectrogram:
    window = lambda s: magnitude_window(clip["magnitude_bytes"], s, aspec)
    shape = [aspec.num_frames, aspec.num_bins]
  else:
    window = lambda s: clip["waveform"][s:s + aspec.num_samples]
    shape = [aspec.num_samples]
  pos, neg = window(pos_start), window(neg_start)
  pos_gain = neg_gain = tf.constant(1.0)
  if train and spec.gain_db > 0:
    pos_gain, neg_gain = random_gain(seeds[2], spec.gain_db), random_gain(seeds[3], spec.gain_db)
  out = {
      "index": index,
      "frame_seed": seeds[4],
      "pos_audio": tf.ensure_shape(pos, shape),
      "pos_start": tf.cast(pos_start, tf.float32) / aspec.sample_rate,
      "pos_gain": pos_gain,
      "neg_gain": neg_gain,
      "neg_audio": tf.ensure_shape(neg, shape),
      "neg_start": tf.cast(neg_start, tf.float32) / aspec.sample_rate,
      "video_id": clip["video_id"],
      "filename": clip["filename"],
      "fps": fps,
      "label_index": clip["label_index"],
      "boxes": clip["boxes"],
  }
  out["jpeg"] = clip["jpeg_frames"][frame_k]
  return out


def is_negative(index, negative_fraction: float):
  """Spreads negatives evenly over the stream: exactly round(n*f) in any n in a row, +-1."""
  i = tf.cast(index, tf.float64)
  return tf.floor((i + 1) * negative_fraction) - tf.floor(i * negative_fraction) >= 1


def mix_pair(anchor: dict, other: dict, neg) -> dict:
  """The pairing rule, for one example or a batch: where `neg`, the audio is
  `other`'s negative window, else `anchor`'s own; the label says only whether
  that audio comes from the frame's video."""
  same_video = tf.equal(anchor["video_id"], other["video_id"])
  audio_neg = neg
  for _ in range(anchor["pos_audio"].shape.rank - neg.shape.rank):  # waveforms or |STFT| windows
    audio_neg = tf.expand_dims(audio_neg, -1)
  return {
      "audio": tf.where(audio_neg, other["neg_audio"], anchor["pos_audio"]),
      "gain": tf.where(neg, other["neg_gain"], anchor["pos_gain"]),
      "label": tf.cast(tf.logical_or(tf.logical_not(neg), same_video), tf.int32),
      "video_id": anchor["video_id"],
      "audio_video_id": tf.where(neg, other["video_id"], anchor["video_id"]),
      "audio_start": tf.where(neg, other["neg_start"], anchor["pos_start"]),
      "fps": anchor["fps"],
  }


def decode_for_batch(clip: dict, *, spec: ReaderSpec, train: bool) -> dict:
  """The chosen frame as a uint8 crop, plus (training) its augmentation draws."""
  params = frame_augment_params(clip["frame_seed"], spec=spec)
  out = {"frames": decode_crop(clip["jpeg"], params.pop("crop_seed"), spec=spec, train=train)}
  if train:
    out.update(params)
  return out


def add_spectrograms(batch: dict, spec: ReaderSpec,
                     keys=(("audio", "gain", "spectrogram"),)) -> dict:
  """Replaces batched waveforms [B, N] (or stored |STFT| windows [B, T, F]) and
  their gains [B] by log-spectrograms [B, F, T, 1]."""
  batch = dict(batch)
  for audio_key, gain_key, spec_key in keys:
    audio, gain = batch.pop(audio_key), batch.pop(gain_key)
    if spec.stored_spectrogram:
      magnitude = audio
    else:
      magnitude = spectrogram_lib.stft_magnitude(audio, spec.spectrogram)
    magnitude = magnitude * tf.cast(gain, magnitude.dtype)[:, None, None]
    batch[spec_key] = spectrogram_lib.log_of_magnitude(magnitude, spec.spectrogram)[..., None]
  return batch


FRAME_KEYS = ("frames", "aug_flip", "aug_brightness", "aug_contrast", "aug_saturation")
NEGATIVE_KEYS = ("neg_audio", "neg_gain", "video_id", "neg_start")
# What a training batch of clips carries before pairing (fixed shapes, no strings).
TRAIN_CLIP_KEYS = ("index", "pos_audio", "pos_gain", "pos_start", "fps") + FRAME_KEYS + NEGATIVE_KEYS


def pair_batch(anchors: dict, others: dict, *, spec: ReaderSpec) -> dict:
  """Pairs a batch of clips: where the stream says negative, example i takes the
  negative window of `others`' example i."""
  neg = is_negative(anchors["index"], spec.negative_fraction)
  other = {k: others[k] for k in NEGATIVE_KEYS}
  return {**{k: anchors[k] for k in FRAME_KEYS}, **mix_pair(anchors, other, neg)}


def pair_in_batch(batch: dict, *, spec: ReaderSpec) -> dict:
  """Negatives take the negative window of the next example in the same batch."""
  src = tf.roll(tf.range(tf.shape(batch["index"])[0]), -1, 0)
  return pair_batch(batch, {k: tf.gather(batch[k], src) for k in NEGATIVE_KEYS}, spec=spec)


def with_next(ds: tf.data.Dataset, combine) -> tf.data.Dataset:
  """combine(element i, element i + 1) for each i, in one pass over `ds`: a scan
  holds one element back (no second iterator re-reading and re-decoding)."""
  def empty(s):
    return tf.fill(s.shape, "") if s.dtype == tf.string else tf.zeros(s.shape, s.dtype)

  initial = tf.nest.map_structure(empty, ds.element_spec)
  return ds.scan(initial, lambda previous, current: (current, combine(previous, current))).skip(1)


def pair_with_next_batch(batches: tf.data.Dataset, *, spec: ReaderSpec) -> tf.data.Dataset:
  """Stream negatives: example i takes the negative window of stream clip i + B,
  which sits in the next batch, so a negative's clip is never in its own batch."""
  return with_next(batches, lambda previous, current: pair_batch(previous, current, spec=spec))


# ----------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------
def _parse_fn(spec: ReaderSpec):
  audio = "magnitude" if spec.stored_spectrogram else "waveform"
  return lambda s: dmvr.parse(s, default_fps=spec.fps, audio=audio,
                              default_sample_rate=spec.spectrogram.sample_rate)


def can_use_stored_spectrogram(manifest: dict | None, spec: ReaderSpec) -> bool:
  """Whether prepare stored |STFT| with `spec`'s framing and every window the
  reader asks for starts on that STFT's hop grid (frame-grid windows, at an
  integer number of hops per video frame)."""
  stored = (manifest or {}).get("spectrogram")
  a = spec.spectrogram
  if not stored or not spec.negatives_on_grid:
    return False
  same = (stored.get("sample_rate"), stored.get("win_length"), stored.get("hop_length"),
          stored.get("n_fft")) == (a.sample_rate, a.win_length, a.hop_length, a.n_fft)
  fps = manifest.get("settings", {}).get("fps", spec.fps)
  per_frame = a.sample_rate / fps
  return same and float(per_frame).is_integer() and int(per_frame) % a.hop_length == 0


def indexed_records(files: Sequence[str], *, seed: int, epoch_size: int, start: int,
                    shuffle_buffer: int) -> tf.data.Dataset:
  """Endless (global index, serialized record) stream, starting at index `start`.

  Epoch e visits the files in an order drawn from (seed, e) and shuffles records
  in a buffer seeded by (seed, e); skipping to `start` touches only raw records.
  """
  files_t = tf.constant(list(files))
  n = len(files)
  first_epoch, offset = divmod(start, epoch_size)

  def epoch(e):
    order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([tf.constant(seed, tf.int64), e])))
    records = tf.data.Dataset.from_tensor_slices(tf.gather(files_t, order)).interleave(
        tf.data.TFRecordDataset, cycle_length=min(n, 8), block_length=1,
        num_parallel_calls=AUTOTUNE, deterministic=True)
    records = records.shuffle(shuffle_buffer, seed=seed * 1_000_003 + e,
                              reshuffle_each_iteration=False)
    records = records.enumerate().map(lambda j, r: (e * epoch_size + j, r))
    return records.skip(tf.where(e == first_epoch, tf.constant(offset, tf.int64), 0))

  return tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch)


def spread_index(record_index, j, *, examples_per_clip: int, clips_in_flight: int):
  """Stream position of the j-th example of the record at `record_index`.

  Records go in blocks of `clips_in_flight`, whose clips give their first
  examples in turn, then their second ones...: a clip's examples sit
  `clips_in_flight` apart in the stream (the order tf.data's interleave yields).
  """
  m = clips_in_flight
  return (record_index // m) * m * examples_per_clip + j * m + record_index % m


# What one training example takes from its clip into decoding and batching.
WINDOW_KEYS = ("index", "frame_seed", "jpeg", "pos_audio", "pos_gain", "pos_start",
               "fps") + NEGATIVE_KEYS


def train_dataset(files: Sequence[str], *, spec: ReaderSpec, batch_size: int, seed: int,
                  start_example: int = 0, epoch_size: int | None = None) -> tf.data.Dataset:
  """Endless, deterministic training batches, starting after `start_example` examples."""
  epoch_size = epoch_size or count_records(files)
  if epoch_size == 0:
    raise ValueError(f"no records in {list(files)[:3]}...")
  parse = _parse_fn(spec)
  k = spec.examples_per_clip
  # More clips in flight than a batch holds: a clip never gives two pairs of one
  # batch, nor the stream negative (clip i + B's window) of its own pair.
  m = batch_size + 1 if k > 1 else 1
  first_block, skip = divmod(start_example, m * k)

  def clip_examples(i, record):
    clip = parse(record)
    rows = [clip_windows(clip, spread_index(i, j, examples_per_clip=k, clips_in_flight=m), seed,
                         spec=spec, train=True) for j in range(k)]
    return {key: tf.stack([row[key] for row in rows]) for key in WINDOW_KEYS}

  def decoded(example):
    example = {**example, **decode_for_batch(example, spec=spec, train=True)}
    return {key: example[key] for key in TRAIN_CLIP_KEYS}

  records = indexed_records(files, seed=seed, epoch_size=epoch_size, start=first_block * m,
                            shuffle_buffer=spec.shuffle_buffer)
  if k == 1:
    first = lambda x: {key: v[0] for key, v in x.items()}
    examples = records.map(lambda i, r: decoded(first(clip_examples(i, r))),
                           num_parallel_calls=AUTOTUNE)
  else:
    examples = records.map(clip_examples, num_parallel_calls=AUTOTUNE).interleave(
        tf.data.Dataset.from_tensor_slices, cycle_length=m, block_length=1)
    examples = examples.skip(skip).map(decoded, num_parallel_calls=AUTOTUNE)
  batches = examples.batch(batch_size, drop_remainder=True)
  if spec.negatives == "stream":
    ds = pair_with_next_batch(batches, spec=spec)
  else:
    ds = batches.map(lambda b: pair_in_batch(b, spec=spec), num_parallel_calls=AUTOTUNE)
  ds = ds.map(lambda b: add_spectrograms(b, spec), num_parallel_calls=AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(AUTOTUNE)


def eval_dataset(files: Sequence[str], *, spec: ReaderSpec, batch_size: int,
                 num_classes: int) -> tf.data.Dataset:
  """Every clip once, in file order, with a negative spectrogram from the next clip
  (the last clip's from the first)."""
  parse = _parse_fn(spec)
  records = tf.data.Dataset.from_tensor_slices(list(files)).interleave(
      tf.data.TFRecordDataset, cycle_length=1)

  def example(i, record):
    a = clip_windows(parse(record), i, 0, spec=spec, train=False)
    boxes = a["boxes"]
    has_box = tf.shape(boxes)[0] > 0
    return {
        **decode_for_batch(a, spec=spec, train=False),
        "audio": a["pos_audio"],
        "gain": a["pos_gain"],
        "neg_audio": a["neg_audio"],  # this clip's window for the previous clip
        "neg_gain": a["neg_gain"],
        "labels": tf.reduce_max(tf.one_hot(a["label_index"], max(num_classes, 1),
                                           dtype=tf.int32), axis=0)
                  if num_classes else tf.zeros([1], tf.int32),
        # In the returned frame's coordinates; -1s when the clip has no box.
        "box": tf.where(has_box, box_in_crop(tf.concat([boxes, tf.zeros([1, 4])], 0)[0],
                                             a["jpeg"], spec), -tf.ones([4])),
        "video_id": a["video_id"],
        "filename": a["filename"],
        "audio_start": a["pos_start"],
        "fps": a["fps"],
    }

  def with_next_negative(clip, following):
    return {**clip, "neg_audio": following["neg_audio"], "neg_gain": following["neg_gain"],
            "neg_label": tf.cast(tf.equal(clip["video_id"], following["video_id"]), tf.int32)}

  clips = records.enumerate().map(example, num_parallel_calls=AUTOTUNE)
  ds = with_next(clips.concatenate(clips.take(1)), with_next_negative)
  ds = ds.batch(batch_size).map(
      lambda b: add_spectrograms(b, spec, (("audio", "gain", "spectrogram"),
                                           ("neg_audio", "neg_gain", "neg_spectrogram"))),
      num_parallel_calls=AUTOTUNE)
  return ds.prefetch(AUTOTUNE)


def pad_batch(batch: dict, batch_size: int) -> dict:
  """Pads a short final batch to `batch_size`, adding `mask` (1 = real example)."""
  n = len(next(iter(batch.values())))
  out = {k: np.concatenate([v, np.zeros((batch_size - n, *v.shape[1:]), v.dtype)])
         for k, v in batch.items()}
  out["mask"] = (np.arange(batch_size) < n).astype(np.float32)
  return out


# ----------------------------------------------------------------------------
# The object the trainer holds
# ----------------------------------------------------------------------------
class Reader:
  """Training and evaluation batches for one host, from a data config.

  `process_index`/`process_count` pick this host's shards; `batch_size` is the
  per-host batch. The training position is the number of examples consumed.
  """

  def __init__(self, files: Sequence[str], *, spec: ReaderSpec, batch_size: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    host_memory.tune_allocator()  # before tf.data starts its threads
    self.all_files = list(files)
    self.files = host_files(files, process_index, process_count)
    self.process_count = process_count
    self.batch_size, self.seed = batch_size, seed
    manifest = load_manifest(files)
    if spec.stored_spectrogram and not can_use_stored_spectrogram(manifest, spec):
      spec = dataclasses.replace(spec, stored_spectrogram=False)
    self.spec = spec
    self.label_names = list(manifest["labels"]) if manifest else []
    self.num_classes = spec.num_classes or len(self.label_names)
    self._epoch_size = None

  @property
  def epoch_size(self) -> int:
    if self._epoch_size is None:
      self._epoch_size = count_records(self.files)
    return self._epoch_size

  def train_iterator(self, start_step: int = 0) -> Iterator[dict]:
    ds = train_dataset(self.files, spec=self.spec, batch_size=self.batch_size, seed=self.seed,
                       start_example=start_step * self.batch_size, epoch_size=self.epoch_size)
    return ds.as_numpy_iterator()

  def num_eval_batches(self) -> int:
    """The same on every host: hosts with fewer clips pad with masked batches."""
    counts = [count_records(host_files(self.all_files, i, self.process_count))
              for i in range(self.process_count)]
    return max(1, math.ceil(max(counts) / self.batch_size))

  def eval_iterator(self) -> Iterator[dict]:
    ds = eval_dataset(self.files, spec=self.spec, batch_size=self.batch_size,
                      num_classes=self.num_classes)
    n = 0
    last = None
    for batch in ds.as_numpy_iterator():
      last = pad_batch(batch, self.batch_size)
      n += 1
      yield last
    empty = {k: np.zeros_like(v) for k, v in last.items()} if last else None
    for _ in range(self.num_eval_batches() - n):
      yield empty
