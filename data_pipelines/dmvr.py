"""The stored-clip format: tf.train.SequenceExample in DeepMind DMVR's layout.

DMVR readers look for JPEG frames under the feature list `image/encoded` (one
bytes feature per frame) and the waveform under `WAVEFORM/feature/floats` (one
float feature holding the whole clip). Labels, filename and timestamps live in
the context. Keys not in DMVR (fps, sample rate, boxes) are optional on read, so
shards that other tools wrote load with defaults from the config.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np

FRAMES = "image/encoded"
WAVEFORM = "WAVEFORM/feature/floats"
FILENAME = "video/filename"
START_US = "clip/start/timestamp"
END_US = "clip/end/timestamp"
LABEL_INDEX = "clip/label/index"
LABEL_TEXT = "clip/label/text"
FPS = "image/frame_rate"
SAMPLE_RATE = "WAVEFORM/sample_rate"
BOX_KEYS = ("clip/box/ymin", "clip/box/xmin", "clip/box/ymax", "clip/box/xmax")
BOX_TIME_US = "clip/box/timestamp"
# Not DMVR: the whole clip's |STFT| (float32 little-endian [frames, bins] bytes),
# its framing, and the waveform's length, so a reader can skip the waveform.
MAGNITUDE = "spectrogram/magnitude"
STFT_KEYS = ("spectrogram/win_length", "spectrogram/hop_length", "spectrogram/n_fft")
NUM_SAMPLES = "WAVEFORM/num_samples"


@dataclasses.dataclass
class Clip:
  """One decoded clip, ready to serialise."""
  filename: str
  start_s: float
  end_s: float
  fps: float
  sample_rate: int
  jpeg_frames: Sequence[bytes]
  waveform: np.ndarray  # [samples] float32 mono
  label_index: Sequence[int] = ()
  label_text: Sequence[str] = ()
  boxes: np.ndarray | None = None  # [K, 4] ymin, xmin, ymax, xmax in 0..1
  box_times_s: Sequence[float] = ()
  magnitude: np.ndarray | None = None  # [frames, bins] |STFT| of the whole waveform
  spectrogram: Any = None              # the SpectrogramSpec `magnitude` was framed with


@functools.cache
def sequence_example_class():
  """tf.train.SequenceExample's message class, built from its .proto definition
  (tensorflow/core/example/{feature,example}.proto) in a private descriptor pool:
  the same wire format, so the same bytes, without loading TensorFlow (~700 MB of
  a prepare worker's memory, and seconds of its start)."""
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
  F = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(name="avjax/example.proto", package="tensorflow",
                                             syntax="proto3")

  def message(name, *fields, nested=()):
    m = proto.message_type.add(name=name)
    for n in nested:
      m.nested_type.append(n)
    for number, (field, kind, label, type_name, oneof) in enumerate(fields, 1):
      f = m.field.add(name=field, number=number, type=kind, label=label)
      if type_name:
        f.type_name = type_name
      if oneof is not None:
        f.oneof_index = oneof
    return m

  def map_entry(name, value_type):
    entry = descriptor_pb2.DescriptorProto(name=name)
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=value_type)
    entry.options.map_entry = True
    return entry

  rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
  message("BytesList", ("value", F.TYPE_BYTES, rep, None, None))
  message("FloatList", ("value", F.TYPE_FLOAT, rep, None, None))
  message("Int64List", ("value", F.TYPE_INT64, rep, None, None))
  feature = message("Feature", ("bytes_list", F.TYPE_MESSAGE, opt, ".tensorflow.BytesList", 0),
                    ("float_list", F.TYPE_MESSAGE, opt, ".tensorflow.FloatList", 0),
                    ("int64_list", F.TYPE_MESSAGE, opt, ".tensorflow.Int64List", 0))
  feature.oneof_decl.add(name="kind")
  message("Features", ("feature", F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry", None),
          nested=[map_entry("FeatureEntry", ".tensorflow.Feature")])
  message("FeatureList", ("feature", F.TYPE_MESSAGE, rep, ".tensorflow.Feature", None))
  message("FeatureLists",
          ("feature_list", F.TYPE_MESSAGE, rep, ".tensorflow.FeatureLists.FeatureListEntry", None),
          nested=[map_entry("FeatureListEntry", ".tensorflow.FeatureList")])
  message("SequenceExample", ("context", F.TYPE_MESSAGE, opt, ".tensorflow.Features", None),
          ("feature_lists", F.TYPE_MESSAGE, opt, ".tensorflow.FeatureLists", None))
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.SequenceExample"))


def to_sequence_example(clip: Clip):
  """The clip as a SequenceExample message (serialize it with deterministic=True
  for bytes that depend only on the clip)."""
  ex = sequence_example_class()()
  ctx = ex.context.feature
  ctx[FILENAME].bytes_list.value.append(clip.filename.encode())
  ctx[START_US].int64_list.value.append(int(round(clip.start_s * 1e6)))
  ctx[END_US].int64_list.value.append(int(round(clip.end_s * 1e6)))
  ctx[FPS].float_list.value.append(clip.fps)
  ctx[SAMPLE_RATE].int64_list.value.append(clip.sample_rate)
  ctx[LABEL_INDEX].int64_list.value.extend(clip.label_index)
  ctx[LABEL_TEXT].bytes_list.value.extend(t.encode() for t in clip.label_text)
  if clip.boxes is not None and len(clip.boxes):
    for i, key in enumerate(BOX_KEYS):
      ctx[key].float_list.value.extend(np.asarray(clip.boxes)[:, i].tolist())
    ctx[BOX_TIME_US].int64_list.value.extend(int(round(t * 1e6)) for t in clip.box_times_s)
  ctx[NUM_SAMPLES].int64_list.value.append(len(clip.waveform))
  if clip.magnitude is not None:
    ctx[MAGNITUDE].bytes_list.value.append(np.asarray(clip.magnitude, "<f4").tobytes())
    s = clip.spectrogram
    for key, v in zip(STFT_KEYS, (s.win_length, s.hop_length, s.n_fft)):
      ctx[key].int64_list.value.append(int(v))
  frames = ex.feature_lists.feature_list[FRAMES]
  for jpeg in clip.jpeg_frames:
    frames.feature.add().bytes_list.value.append(jpeg)
  ex.feature_lists.feature_list[WAVEFORM].feature.add().float_list.value.extend(
      np.asarray(clip.waveform, np.float32).tolist())
  return ex


def parse(serialized, *, default_fps: float, default_sample_rate: int,
          audio: str = "waveform") -> dict:
  """Serialized SequenceExample -> dict of tensors (tf-graph friendly).

  `audio="magnitude"` reads the stored
  |STFT| bytes (`magnitude_bytes`) instead of the waveform, whose float list is
  the costliest part of a record to parse.
  """
  import tensorflow as tf
  if audio not in ("waveform", "magnitude"):
    raise ValueError(f"audio must be 'waveform' or 'magnitude', got {audio!r}")
  context_spec = {
      FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
      START_US: tf.io.FixedLenFeature([], tf.int64, default_value=0),
      FPS: tf.io.FixedLenFeature([], tf.float32, default_value=default_fps),
      SAMPLE_RATE: tf.io.FixedLenFeature([], tf.int64, default_value=default_sample_rate),
      LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
      BOX_TIME_US: tf.io.VarLenFeature(tf.int64),
      **{k: tf.io.VarLenFeature(tf.float32) for k in BOX_KEYS},
  }
  seq_spec = {FRAMES: tf.io.FixedLenSequenceFeature([], tf.string)}
  if audio == "waveform":
    seq_spec[WAVEFORM] = tf.io.VarLenFeature(tf.float32)
  else:
    context_spec[MAGNITUDE] = tf.io.FixedLenFeature([], tf.string)
    context_spec[NUM_SAMPLES] = tf.io.FixedLenFeature([], tf.int64)
  ctx, seq = tf.io.parse_single_sequence_example(
      serialized, context_features=context_spec, sequence_features=seq_spec)
  filename = ctx[FILENAME]
  out = {"filename": filename}
  if audio == "waveform":
    waveform = tf.reshape(tf.sparse.to_dense(seq[WAVEFORM]), [-1])
    out["waveform"] = waveform
    out["num_samples"] = tf.shape(waveform)[0]
    # Shards from other tools may lack a filename; the first audio samples still
    # identify the video, which the negative-pair labels need.
    fallback_key = lambda: tf.strings.reduce_join(tf.strings.as_string(waveform[:256], precision=6))
  else:
    out["magnitude_bytes"] = ctx[MAGNITUDE]
    out["num_samples"] = tf.cast(ctx[NUM_SAMPLES], tf.int32)
    fallback_key = lambda: tf.strings.substr(ctx[MAGNITUDE], 0, 4096)
  video_key = tf.cond(tf.strings.length(filename) > 0, lambda: filename, fallback_key)
  out.update({
      "fps": ctx[FPS],
      "sample_rate": tf.cast(ctx[SAMPLE_RATE], tf.int32),
      "video_id": tf.cast(tf.strings.to_hash_bucket_fast(video_key, 2**31 - 1), tf.int32),
      "clip_start_us": ctx[START_US],
      "label_index": tf.cast(tf.sparse.to_dense(ctx[LABEL_INDEX]), tf.int32),
      "boxes": tf.stack([tf.sparse.to_dense(ctx[k]) for k in BOX_KEYS], axis=-1),
      "box_times_us": tf.sparse.to_dense(ctx[BOX_TIME_US]),
  })
  out["jpeg_frames"] = seq[FRAMES]
  out["num_frames"] = tf.shape(seq[FRAMES])[0]
  return out
