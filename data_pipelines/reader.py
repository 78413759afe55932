"""tf.data readers: DMVR-format shards -> host batches for the jitted step.

This module is the file and dataset side: shards and their manifest, the
record stream, batching. What happens to one clip (windows, crops, boxes,
spectrograms) is in clip_ops.py, the pairing rule in pairs.py, and the keys of
the batches it yields in contract.py. In training, frames leave as uint8 crops
and audio as |STFT| windows, with their augmentation draws (`aug_*`); the
jitted step (avjax/step_inputs.py) jitters and normalises the frames and takes
the log-spectrograms on the device. Evaluation batches carry log-spectrograms.

Training batches hold frame/audio pairs: a frame at time t with the 1 s of audio
centred on it (label 1), or with 1 s of audio from another video (label 0). Every
random draw is stateless, keyed by (seed, global example index), and the record
order of epoch e depends only on (seed, e). So a reader is a pure function of its
seed and start position: restoring at step k only re-reads serialized records of
the current epoch (and re-parses at most B + 1 of them), never decodes them.

`examples_per_clip` pairs come from each record read: the record is parsed once
and its pairs go into B + 1 consecutive batches, one each (see `spread_index`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from data_pipelines import clip_ops
from data_pipelines import contract
from data_pipelines import dmvr
from data_pipelines import fs
from data_pipelines import pairs
from data_pipelines import records as records_lib
from data_pipelines import spectrogram as spectrogram_lib
from data_pipelines.reader_spec import ReaderSpec
from data_pipelines.graph import graph_fn
from data_pipelines.tfrecord import DataError

AUTOTUNE = tf.data.AUTOTUNE
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------
def is_glob(split: str) -> bool:
  return any(c in split for c in "*?[")


def resolve_files(data_dir: str, split: str) -> list[str]:
  """`split` is a folder under `data_dir` (as `prepare` writes) or a glob pattern.

  A folder's shards must be those its manifest lists: a stale shard from another
  prepare job, or a missing one, is refused by name (`check_against_manifest`).
  """
  folder = not is_glob(split)
  pattern = fs.join(data_dir, split, "*.tfrecord*") if folder else split
  files = sorted(f for f in fs.glob(pattern) if not f.endswith((".json", ".tmp")))
  if not files:
    raise FileNotFoundError(f"no TFRecord shards match {pattern!r} (config.data.dir={data_dir!r}, "
                            f"split={split!r})")
  if folder:
    check_against_manifest(files, load_manifest(files))
  return files


def check_against_manifest(files: Sequence[str], manifest: dict | None) -> None:
  """The shards found in a prepared folder must be the manifest's, no more, no less."""
  if not manifest or "shards" not in manifest:
    return
  found = {fs.basename(f) for f in files}
  listed = set(manifest["shards"])
  folder = fs.dirname(files[0])
  if found - listed:
    raise DataError(f"{folder}: shards not in its manifest.json (left by another prepare job?): "
                    f"{sorted(found - listed)[:5]}; remove them or prepare again with --overwrite")
  if listed - found:
    raise DataError(f"{folder}: shards in manifest.json are missing: {sorted(listed - found)[:5]}")


def damaged_record(path: str) -> str | None:
  """Where a TFRecord file's framing breaks (a record running past the end of the
  file), found by seeking over the length headers; None if it holds together.
  Corrupted bytes inside a record are left to the CRC check of a full read."""
  size = fs.getsize(path)
  offset = index = 0
  with fs.open(path, "rb") as f:
    while offset < size:
      header = f.read(12)
      if len(header) < 12:
        return f"record {index} at byte {offset}: truncated header"
      length = int.from_bytes(header[:8], "little")
      end = offset + 12 + length + 4
      if end > size:
        return f"record {index} at byte {offset}: truncated ({length} bytes declared, {size - offset - 16} left)"
      f.seek(end)
      offset, index = end, index + 1
  return None


def explain_read_error(files: Sequence[str], error: Exception) -> str:
  """A tf.data read error -> one line naming the shard (and record) at fault,
  when a shard's framing or a full read of it shows which."""
  reason = " ".join(str(getattr(error, "message", error)).split("[[")[0].split())
  for f in files:  # the span source's errors name the shard and record already
    if f + ": record " in reason:
      return reason[reason.index(f + ": record "):]
  if not isinstance(error, tf.errors.DataLossError):  # the records are sound: their content is not
    return f"{fs.dirname(files[0])}: {reason}"
  for f in files:
    where = damaged_record(f)
    if where:
      return f"{f}: {where} ({reason})"
  for f in files:  # bytes corrupted inside a record: the CRC check of a full read finds it
    try:
      record_dataset([f]).reduce(np.int64(0), graph_fn(lambda n, _: n + 1))
    except tf.errors.OpError as e:
      return f"{f}: {' '.join(str(e.message).split('[[')[0].split())}"
  return f"reading {len(files)} shard(s) in {fs.dirname(files[0])} failed: {reason}"


def load_manifest(files: Sequence[str]) -> dict | None:
  path = fs.join(fs.dirname(files[0]), "manifest.json")
  if not fs.exists(path):
    return None
  try:
    return json.loads(fs.read_text(path))
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: unreadable manifest: {e}") from e


def host_files(files: Sequence[str], process_index: int, process_count: int) -> list[str]:
  if len(files) < process_count:
    raise ValueError(f"{len(files)} shards cannot be split over {process_count} hosts; "
                     "prepare with more shards (--files_per_shard)")
  return list(files[process_index::process_count])


def count_records(files: Sequence[str], manifest: dict | None = None) -> int:
  """Records in `files`: from their folder's manifest (`manifest`, else read)
  when there is one, else by reading."""
  manifest = manifest or load_manifest(files)
  if manifest and all(fs.basename(f) in manifest["shards"] for f in files):
    return sum(manifest["shards"][fs.basename(f)] for f in files)
  return int(record_dataset(files).reduce(np.int64(0), graph_fn(lambda n, _: n + 1)))


# ----------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------
def tf_readable(files: Sequence[str]) -> list[str]:
  """`files` as paths TensorFlow's readers open: themselves where its filesystems
  reach them (local, gs://), else local copies (fs.cached_copy): a Python
  generator inside tf.data would deadlock when an iterator is destroyed while it
  waits for the GIL."""
  return [f if fs.tf_reads(f) else fs.cached_copy(f) for f in files]


def record_dataset(files, records: str = "tfrecord", skip: dict | None = None) -> tf.data.Dataset:
  """Serialized records of `files` in order, read by the source `records` names
  (data_pipelines/records.py), less the positions `skip` lists per file."""
  readable = tf_readable(files)
  skip = {r: skip[f] for f, r in zip(files, readable) if f in skip} if skip else None
  return records_lib.record_dataset(readable, records_lib.source(records, readable), skip)


# ----------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------
def parse_fn(spec: ReaderSpec):
  audio = "magnitude" if spec.stored_spectrogram else "waveform"
  return lambda s: dmvr.parse(s, default_fps=spec.fps, audio=audio,
                              default_sample_rate=spec.spectrogram.sample_rate)


def stored_spectrogram_mismatch(manifest: dict | None, spec: ReaderSpec) -> str | None:
  """Why the |STFT| prepare stored cannot serve `spec`, or None when it can: the
  same framing, and every window the reader asks for starting on its hop grid
  (frame-grid windows, at a whole number of hops per video frame)."""
  if not spec.negatives_on_grid:
    return "negatives_on_grid=False draws windows off the hop grid"
  stored = spectrogram_lib.SpectrogramSpec.from_manifest((manifest or {}).get("spectrogram"))
  why = spectrogram_lib.framing_mismatch(stored, spec.spectrogram)
  if why:
    return why
  fps = manifest.get("settings", {}).get("fps", spec.fps)
  per_frame = spec.spectrogram.sample_rate / fps
  if not (float(per_frame).is_integer() and int(per_frame) % spec.spectrogram.hop_length == 0):
    return (f"{per_frame:g} samples per video frame ({fps:g} fps) is not a whole number of "
            f"{spec.spectrogram.hop_length}-sample hops")
  return None


def can_use_stored_spectrogram(manifest: dict | None, spec: ReaderSpec) -> bool:
  return stored_spectrogram_mismatch(manifest, spec) is None


def vouches_for_windows(manifest: dict | None, spec: ReaderSpec) -> bool:
  """Whether a split's manifest vouches that every clip has room for the windows
  without looking: prepare drops tails shorter than its min_seconds, which
  covers one window. Shifted negatives need more, and a file's last clip is
  shorter than the rest, so those are looked at (`short_clips`)."""
  min_seconds = ((manifest or {}).get("settings") or {}).get("min_seconds", 0.0)
  return spec.negatives != "shifted" and min_seconds + 1e-6 >= spec.spectrogram.seconds


@functools.lru_cache(maxsize=16)
def _short_clips_once(files: tuple[str, ...], spec: ReaderSpec, shards: tuple) -> dict:
  del shards  # in the key only: a split prepared again is scanned again
  return short_clips(files, spec)


def short_clips_of(files: Sequence[str], spec: ReaderSpec, manifest: dict | None) -> dict:
  """`short_clips`, once per process for the same shards: each evaluator of a
  run builds a reader of its split."""
  shards = tuple(sorted(((manifest or {}).get("shards") or {}).items()))
  return _short_clips_once(tuple(files), spec, shards)


def short_clips(files: Sequence[str], spec: ReaderSpec) -> dict[str, list[int]]:
  """Each file's record positions whose clip has no room for the windows
  (clip_ops.holds_windows), found by parsing every record once; nothing is
  decoded."""
  parse = parse_fn(spec)
  local = tf_readable(files)
  src = records_lib.source(spec.records, local)
  readable = tf.constant(local)

  def positions(i):
    return src.items(readable[i]).enumerate().map(
        graph_fn(lambda p, item: (i, p, clip_ops.holds_windows(parse(src.read(item)), spec))),
        num_parallel_calls=AUTOTUNE)

  rows = tf.data.Dataset.range(len(files)).interleave(
      graph_fn(positions), cycle_length=min(len(files), 8), num_parallel_calls=AUTOTUNE,
      deterministic=False).filter(graph_fn(lambda i, p, ok: tf.logical_not(ok)))
  out: dict[str, list[int]] = {}
  for i, p, _ in rows.as_numpy_iterator():
    out.setdefault(files[int(i)], []).append(int(p))
  return {f: sorted(ps) for f, ps in out.items()}


@functools.cache
def _say_once(message: str) -> None:
  log.warning(message)


def indexed_records(files: Sequence[str], fn, *, seed: int, epoch_size: int, start: int,
                    shuffle_buffer: int, records: str = "tfrecord",
                    skip: dict | None = None) -> tf.data.Dataset:
  """Endless stream of fn(global index, serialized record), from index `start`,
  in order, computed on AUTOTUNE threads.

  Epoch e visits the files in an order drawn from (seed, e) and shuffles records
  in a buffer seeded by (seed, e); skipping to `start` reads no record. The
  buffer holds the items of the source `records` names (records.py): records, or
  with "spans" where records lie, and `fn`'s thread then reads each record, in the
  same order. Records at the positions `skip` lists per file (`short_clips`)
  are left out before numbering: `epoch_size` counts the others.
  """
  readable = tf_readable(files)
  src = records_lib.source(records, readable)
  files_t = tf.constant(readable)
  n = len(files)
  keys = records_lib.skip_keys(files, skip or {})
  first_epoch, offset = divmod(start, epoch_size)

  def epoch(e):
    order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([tf.constant(seed, tf.int64), e])))
    files_e = tf.data.Dataset.from_tensor_slices((tf.gather(files_t, order),
                                                  tf.cast(order, tf.int64)))
    parallel = dict(num_parallel_calls=AUTOTUNE, deterministic=True) if src.opens_in_parallel else {}
    items = files_e.interleave(lambda f, i: records_lib.file_items(src, f, i, keys),
                               cycle_length=min(n, 8), block_length=1, **parallel)
    items = items.shuffle(shuffle_buffer, seed=seed * 1_000_003 + e,
                              reshuffle_each_iteration=False)
    items = items.enumerate().map(graph_fn(lambda j, r: (e * epoch_size + j, r)))
    return items.skip(tf.where(e == first_epoch, tf.constant(offset, tf.int64), 0))

  # Reading inside fn's map spares the stream a stage of its own per record.
  return tf.data.Dataset.range(first_epoch, 2**62).flat_map(graph_fn(epoch)).map(
      graph_fn(lambda i, r: fn(i, src.read(r))), num_parallel_calls=AUTOTUNE, deterministic=True)


def spread_index(record_index, j, *, examples_per_clip: int, clips_in_flight: int):
  """Stream position of the j-th example of the record at `record_index`.

  Records go in blocks of `clips_in_flight`, whose clips give their first
  examples in turn, then their second ones...: a clip's examples sit
  `clips_in_flight` apart in the stream (the order tf.data's interleave yields).
  """
  m = clips_in_flight
  return (record_index // m) * m * examples_per_clip + j * m + record_index % m


# What one training example takes from its clip into decoding, and into batching.
WINDOW_KEYS = ("index", "frame_seed", "jpeg", "jpeg_stack", "pos_audio", "pos_gain", "pos_start",
               "fps", "labels", "clip_id") + pairs.NEGATIVE_KEYS
TRAIN_CLIP_KEYS = ("index", "pos_audio", "pos_gain", "pos_start",
                   "fps", "labels", "clip_id") + contract.FRAME_KEYS + pairs.NEGATIVE_KEYS


def multi_hot(label_index, num_classes: int):
  """A clip's label indices -> [classes] int32 (one zero when there are no classes)."""
  if not num_classes:
    return tf.zeros([1], tf.int32)
  return tf.reduce_max(tf.one_hot(label_index, num_classes, dtype=tf.int32), axis=0)


def decodes_magnitude(spec: ReaderSpec) -> bool:
  """Whether training decodes a record's whole stored |STFT| once and takes its
  windows as views (several pairs per record: 2k windows), rather than decoding
  each window's bytes (one pair: two windows cost less than the whole clip)."""
  return spec.stored_spectrogram and spec.examples_per_clip > 1


def shipped_bins(spec: ReaderSpec) -> int:
  """The width of a training batch's `stft_magnitude`: the config's bins, padded
  to whole 64-byte rows where the reader decodes whole records' |STFT|."""
  bins = spec.spectrogram.num_bins
  return clip_ops.padded_bins(bins) if decodes_magnitude(spec) else bins


def train_parse_fn(spec: ReaderSpec):
  """`parse_fn` for training: with several pairs per record, the clip's |STFT|
  comes decoded (`magnitude`, clip_ops.decoded_magnitude) instead of as bytes."""
  parse = parse_fn(spec)
  if not decodes_magnitude(spec):
    return parse

  def parse_decoded(record):
    clip = parse(record)
    clip["magnitude"] = clip_ops.decoded_magnitude(clip.pop("magnitude_bytes"), spec.spectrogram)
    return clip

  return parse_decoded


def train_dataset(files: Sequence[str], *, spec: ReaderSpec, batch_size: int, seed: int,
                  start_example: int = 0, epoch_size: int | None = None,
                  num_classes: int = 0, skip: dict | None = None) -> tf.data.Dataset:
  """Endless, deterministic training batches, starting after `start_example`
  examples; the records at the positions `skip` lists per file are left out
  (`epoch_size` then counts the others)."""
  epoch_size = epoch_size or count_records(files) - sum(len(p) for p in (skip or {}).values())
  if epoch_size == 0:
    raise ValueError(f"no records in {list(files)[:3]}...")
  parse = train_parse_fn(spec)
  if spec.both_examples:  # B examples are B / 2 clips, each given twice (pairs.pair_both)
    if batch_size % 2:
      raise ValueError(f"config.data.both_examples: a host's batch of {batch_size} examples is "
                       "not a whole number of clips given twice")
    batch_size, start_example = batch_size // 2, start_example // 2
  k = spec.examples_per_clip
  # More clips in flight than a batch holds: a clip never gives two pairs of one
  # batch, nor the stream negative (clip i + B's window) of its own pair.
  m = batch_size + 1 if k > 1 else 1
  first_block, skip_examples = divmod(start_example, m * k)
  # Where the pairing takes one window per clip, the clip carries only it: its
  # windows are copied by the stack, the batch and the pairing, twice as many
  # bytes with both.
  one = (not spec.both_examples
         and pairs.gives_one_window(spec.negatives, batch_size, spec.negative_fraction))
  window_keys, clip_keys = WINDOW_KEYS, TRAIN_CLIP_KEYS
  if one:
    window_keys, clip_keys = (tuple(k for k in keys if k not in ("pos_audio", "neg_audio"))
                              + ("window",) for keys in (WINDOW_KEYS, TRAIN_CLIP_KEYS))

  def clip_examples(i, record):
    clip = parse(record)
    rows = [clip_ops.clip_windows(clip, spread_index(i, j, examples_per_clip=k, clips_in_flight=m),
                                  seed, spec=spec, train=True) for j in range(k)]
    for row in rows:
      row["labels"] = multi_hot(row["label_index"], num_classes)
      if one:
        row["window"] = pairs.one_window(row, spec.negative_fraction)
    return {key: tf.stack([row[key] for row in rows]) for key in window_keys if key in rows[0]}

  def decoded(example):
    example = {**example, **clip_ops.decode_for_batch(example, spec=spec, train=True)}
    return {key: example[key] for key in clip_keys if key in example}  # optional draws

  records = functools.partial(indexed_records, files, seed=seed, epoch_size=epoch_size,
                              start=first_block * m, shuffle_buffer=spec.shuffle_buffer,
                              records=spec.records, skip=skip)
  if k == 1:
    first = lambda x: {key: v[0] for key, v in x.items()}
    examples = records(lambda i, r: decoded(first(clip_examples(i, r))))
  else:
    examples = records(clip_examples).interleave(tf.data.Dataset.from_tensor_slices,
                                                 cycle_length=m, block_length=1)
    examples = examples.skip(skip_examples).map(graph_fn(decoded), num_parallel_calls=AUTOTUNE)
  batches = examples.batch(batch_size, drop_remainder=True)
  ds = pairs.pair_batches(batches, negatives=spec.negatives,
                          negative_fraction=spec.negative_fraction,
                          both_examples=spec.both_examples)
  ds = ds.map(graph_fn(lambda b: clip_ops.add_spectrograms(b, spec, log_on_device=True)),
              num_parallel_calls=AUTOTUNE)
  return ds.with_options(dataset_options(spec)).prefetch(AUTOTUNE)


def usable_cores() -> int:
  """The cores this process may run on (its affinity mask, where the OS has one)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS
    return os.cpu_count() or 1


def dataset_options(spec: ReaderSpec) -> tf.data.Options:
  """Deterministic order, and tf.data's autotuning only where `spec.autotune`:
  without it, each AUTOTUNE stage runs as many calls at once as the host has
  cores, and the prefetch buffer still grows while its consumer waits."""
  options = tf.data.Options()
  options.deterministic = True
  if not spec.autotune:
    options.autotune.enabled = False
    options.autotune.initial_parallelism = usable_cores()
  return options


def eval_dataset(files: Sequence[str], *, spec: ReaderSpec, batch_size: int,
                 num_classes: int, window_hop: float = 0.0,
                 audio_offsets: Sequence[int] = (), skip: dict | None = None) -> tf.data.Dataset:
  """Every clip once, in file order, with a negative spectrogram from the next clip
  (the last clip's from the first; with shifted negatives, its own window
  `min_shift` later, else earlier, labelled out of sync). `window_hop` > 0:
  every window of each clip, one every `window_hop` seconds, each with its
  centre frame and its clip's `clip_index` (the probes' clip-level protocol). `audio_offsets` (frames): each
  clip's frames once per offset that fits in the clip, with the audio window moved
  by it (`audio_offset`, seconds; the sync offset evaluator). Records at the
  positions `skip` lists per file are left out."""
  parse = parse_fn(spec)
  records = record_dataset(files, spec.records, skip)

  def example(i, clip, frame=None, offset=None):
    a = clip_ops.clip_windows(clip, i, 0, spec=spec, train=False, frame=frame,
                              audio_offset=offset)
    boxes = a["boxes"]
    has_box = tf.shape(boxes)[0] > 0
    return {
        **clip_ops.decode_for_batch(a, spec=spec, train=False),
        "audio": a["pos_audio"],
        "gain": a["pos_gain"],
        "neg_audio": a["neg_audio"],  # this clip's window for the previous clip
        "neg_gain": a["neg_gain"],
        "labels": multi_hot(a["label_index"], num_classes),
        # In the returned frame's coordinates; -1s when the clip has no box.
        "box": tf.where(has_box, clip_ops.box_in_crop(tf.concat([boxes, tf.zeros([1, 4])], 0)[0],
                                                      a["jpeg"], spec), -tf.ones([4])),
        "video_id": a["video_id"],
        "filename": a["filename"],
        "audio_start": a["pos_start"],
        "fps": a["fps"],
        "clip_index": tf.cast(i, tf.int32),
        "audio_offset": a["audio_offset"],
    }

  if audio_offsets:
    def offsets(i, record):
      clip = parse(record)
      wanted = tf.constant(list(audio_offsets), tf.int32)
      # The middle frame, not a box's: a box near the clip's edge would leave
      # room for few offsets, and chance would depend on where boxes fall.
      middle = clip["num_frames"] // 2
      examples = tf.data.Dataset.from_tensor_slices(wanted).map(
          graph_fn(lambda d: (d, example(i, clip, frame=middle, offset=d))))
      # An offset clipped at the clip's ends would repeat another: left out.
      return examples.filter(graph_fn(lambda d, e: tf.abs(
          e["audio_offset"] * e["fps"] - tf.cast(d, tf.float32)) < 0.5)).map(
              graph_fn(lambda d, e: e))
    clips = records.enumerate().flat_map(graph_fn(offsets))
  elif window_hop > 0:
    def windows(i, record):
      clip = parse(record)
      frames = clip_ops.window_frames(clip, spec=spec, hop_seconds=window_hop)
      return tf.data.Dataset.from_tensor_slices(frames).map(
          graph_fn(lambda k: example(i, clip, k)))
    clips = records.enumerate().flat_map(graph_fn(windows))
  else:
    clips = records.enumerate().map(graph_fn(lambda i, r: example(i, parse(r))),
                                    num_parallel_calls=AUTOTUNE)
  if spec.negatives == "shifted":  # its own window moved by min_shift: out of sync
    ds = clips.map(graph_fn(lambda c: {**c, "neg_label": tf.constant(0, tf.int32)}))
  else:
    ds = pairs.with_next(clips.concatenate(clips.take(1)), pairs.with_next_negative)
  ds = ds.batch(batch_size).map(
      graph_fn(lambda b: clip_ops.add_spectrograms(
          b, spec, (("audio", "gain", "spectrogram"), ("neg_audio", "neg_gain", "neg_spectrogram")))),
      num_parallel_calls=AUTOTUNE)
  return ds.with_options(dataset_options(spec)).prefetch(AUTOTUNE)


def padded_batches(batches: Iterator[dict], batch_size: int, num_batches: int) -> Iterator[dict]:
  """`batches`, each padded to `batch_size` (pad_batch), then all-padding batches
  up to `num_batches`: every host yields the same number, so collectives line up."""
  n, last = 0, None
  for batch in batches:
    last = pad_batch(batch, batch_size)
    n += 1
    yield last
  empty = {k: np.zeros_like(v) for k, v in last.items()} if last else None
  for _ in range(num_batches - n):
    yield empty


def pad_batch(batch: dict, batch_size: int) -> dict:
  """Pads a short final batch to `batch_size`, adding `mask` (1 = real example)."""
  n = len(next(iter(batch.values())))
  out = {k: np.concatenate([v, np.zeros((batch_size - n, *v.shape[1:]), v.dtype)])
         for k, v in batch.items()}
  out["mask"] = (np.arange(batch_size) < n).astype(np.float32)
  return out


class SoundTargets:
  """A split's ambient-sound targets (SPLIT/sound_targets.json), joined into
  batches by clip id."""

  def __init__(self, split_dir: str):
    from data_pipelines import sound_targets
    t = sound_targets.load_targets(split_dir)
    self.path, self.kind, self.k = fs.join(split_dir, sound_targets.TARGETS), t["kind"], t["k"]
    ids = tf.strings.to_hash_bucket_fast(tf.constant(t["keys"]), 2**31 - 1).numpy().astype(np.int32)
    order = np.argsort(ids, kind="stable")
    self.ids, self.targets = ids[order], np.asarray(t["targets"], np.int32)[order]
    self.dims = self.targets.shape[1]

  def join(self, batch: dict) -> dict:
    ids = batch["clip_id"]
    pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
    missing = self.ids[pos] != ids
    if missing.any():
      raise DataError(f"{self.path}: no target for {int(missing.sum())} clips of a batch; the "
                      "shards changed since it was written: run avjax-sound-clusters again")
    return {**batch, "sound_target": self.targets[pos]}


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
    self.all_files = list(files)
    self.files = host_files(files, process_index, process_count)
    self.process_count = process_count
    self.batch_size, self.seed = batch_size, seed
    manifest = load_manifest(files)
    why = spec.stored_spectrogram and stored_spectrogram_mismatch(manifest, spec)
    if why:
      _say_once(f"{fs.dirname(self.all_files[0])}: computing each window's STFT instead of "
                f"slicing the stored |STFT|: {why}")
      spec = dataclasses.replace(spec, stored_spectrogram=False)
    self.spec = spec
    self.label_names = list(manifest["labels"]) if manifest else []
    self.num_classes = spec.num_classes or len(self.label_names)
    self._epoch_size = None
    self._manifest = manifest
    self.skip = ({} if vouches_for_windows(manifest, spec) else
                 short_clips_of(self.all_files, spec, manifest))
    self.num_skipped = sum(len(p) for p in self.skip.values())
    if self.num_skipped:
      self._check_some_clips_hold_windows()

  def _check_some_clips_hold_windows(self) -> None:
    """Says how many clips are left out (in the log), and refuses a split, or
    a host's shards, where none is left."""
    folder = fs.dirname(self.all_files[0])
    need = (f"{self.spec.spectrogram.seconds:g} s audio window"
            + (f" plus twice config.data.min_shift={self.spec.min_shift:g} s"
               if self.spec.negatives == "shifted" else ""))
    total = count_records(self.all_files, self._manifest)
    log.warning("%s: %d of %d clips are left out, too short for the %s", folder,
                self.num_skipped, total, need)
    for i in range(self.process_count):
      if self.usable_records(host_files(self.all_files, i, self.process_count)) == 0:
        raise DataError(f"{folder}: no clip{' of host %d' % i if self.process_count > 1 else ''} "
                        f"is long enough for the {need} ({self.num_skipped} of {total} too short)")

  def usable_records(self, files: Sequence[str]) -> int:
    """Records of `files` less those left out as too short (`skip`)."""
    return (count_records(files, self._manifest)
            - sum(len(self.skip.get(f, ())) for f in files))

  @property
  def epoch_size(self) -> int:
    if self._epoch_size is None:
      self._epoch_size = self.usable_records(self.files)
    return self._epoch_size

  def train_iterator(self, start_step: int = 0) -> Iterator[dict]:
    ds = train_dataset(self.files, spec=self.spec, batch_size=self.batch_size, seed=self.seed,
                       start_example=start_step * self.batch_size, epoch_size=self.epoch_size,
                       num_classes=self.num_classes, skip=self.skip)
    batches = self._named_errors(ds.as_numpy_iterator())
    if self.spec.sound_targets:
      targets = SoundTargets(fs.dirname(self.all_files[0]))
      if (targets.kind, targets.k) != (self.spec.sound_targets, self.spec.sound_k):
        raise ValueError(f"{targets.path}: {targets.kind} with k={targets.k}, but the config asks "
                         f"for {self.spec.sound_targets} with k={self.spec.sound_k}; run "
                         "avjax-sound-clusters with the config's settings")
      batches = map(targets.join, batches)
    return batches

  def _named_errors(self, batches: Iterator[dict]) -> Iterator[dict]:
    """Read errors become DataError naming the shard, instead of TensorFlow's
    offset-only message."""
    try:
      yield from batches
    except GeneratorExit:  # closed (at exit, TensorFlow's module may be gone already)
      raise
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError, tf.errors.UnknownError) as e:
      raise DataError(explain_read_error(self.files, e)) from None

  def num_eval_batches(self) -> int:
    """The same on every host: hosts with fewer clips pad with masked batches."""
    counts = [self.usable_records(host_files(self.all_files, i, self.process_count))
              for i in range(self.process_count)]
    return max(1, math.ceil(max(counts) / self.batch_size))

  def eval_iterator(self, window_hop: float = 0.0,
                    audio_offsets: Sequence[int] = ()) -> Iterator[dict]:
    """Padded evaluation batches: one per clip, or with `window_hop` > 0 one per
    window, or with `audio_offsets` one per offset (see eval_dataset; those two on
    one host only, as hosts' example counts differ)."""
    if (window_hop > 0 or audio_offsets) and self.process_count > 1:
      raise ValueError("evaluation windows and audio offsets run on one host; the hosts' "
                       "batch counts would differ")
    ds = eval_dataset(self.files, spec=self.spec, batch_size=self.batch_size,
                      num_classes=self.num_classes, window_hop=window_hop,
                      audio_offsets=audio_offsets, skip=self.skip)
    yield from padded_batches(self._named_errors(ds.as_numpy_iterator()), self.batch_size,
                              self.num_eval_batches())
