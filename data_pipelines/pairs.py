"""The pair sampler: which example is a negative, where a negative's audio comes
from, and which audio window makes a positive. Training and evaluation both pair
through here.

Positive: frame k with the 1 s window that starts at frame k - floor(fps/2),
i.e. centred on frame k to within half a frame. Negative: the frame with a 1 s
window of another clip that also starts on the frame grid, so the start phase
never tells positives from negatives; `negatives_on_grid=False` draws negative
starts anywhere, the shortcut the "Objects that Sound" paper warns of (for
ablations). Synchronisation ("shifted"): the negative is the clip's own window
moved by at least `min_shift` seconds, and its label says out of sync.

Negatives are spread evenly over the example stream (`is_negative`). Their
audio comes from the next batch (`pair_with_next_batch`: example i takes the
negative window of stream clip i + B, never a clip of its own batch) or from the
next example of the same batch (`pair_in_batch`). Evaluation pairs every clip
with its own window and with the next clip's (`with_next_negative`,
`avc_halves`).
"""
from __future__ import annotations

import fractions

import tensorflow as tf

from data_pipelines import contract
from data_pipelines.graph import graph_fn

# What a clip lends when it is another example's negative.
NEGATIVE_KEYS = ("neg_audio", "neg_gain", "video_id", "neg_start")


# ----------------------------------------------------------------------------
# Windows on the frame grid
# ----------------------------------------------------------------------------
def window_frame_range(num_frames, num_samples, fps, spec):
  """Frames k whose grid-aligned audio window [k - floor(fps/2), +1 s) fits the clip."""
  half = tf.floor(fps / 2.0)
  duration = tf.cast(num_samples, tf.float32) / spec.sample_rate
  last_start = tf.floor((duration - spec.seconds) * fps + 1e-3)  # in frames
  lo = tf.cast(half, tf.int32)
  hi = tf.minimum(num_frames - 1, tf.cast(last_start + half, tf.int32))
  return lo, hi


def grid_start_sample(k, fps, spec):
  """First sample of the positive audio window for frame k (on the frame grid)."""
  start_s = (tf.cast(k, tf.float32) - tf.floor(fps / 2.0)) / fps
  return tf.cast(tf.round(start_s * spec.sample_rate), tf.int32)


def negative_start_sample(seed, lo, hi, num_samples, fps, spec, *, on_grid: bool):
  """A training negative window's first sample: a grid frame's window in [lo, hi],
  or (the shortcut ablation) any sample."""
  if on_grid:
    j = tf.random.stateless_uniform([], seed, lo, hi + 1, dtype=tf.int32)
    return grid_start_sample(j, fps, spec)
  return tf.random.stateless_uniform([], seed, 0, num_samples - spec.num_samples + 1,
                                     dtype=tf.int32)


def shift_frames(fps, min_shift: float):
  """`min_shift` seconds in whole frames, rounded up."""
  return tf.cast(tf.math.ceil(min_shift * fps - 1e-6), tf.int32)


def shifted_frame(seed, k, lo, hi, fps, min_shift: float):
  """A frame in [lo, hi] at least `min_shift` seconds from frame k: its window is
  k's audio shifted (synchronisation negatives). Drawn uniformly from both
  sides (`seed`), or with seed None the nearest such frame after k, else before.
  The caller guarantees hi - lo >= 2 shift_frames, so one exists."""
  gap = shift_frames(fps, min_shift)
  before = tf.maximum(0, k - gap - lo + 1)   # frames lo .. k - gap
  after = tf.maximum(0, hi - (k + gap) + 1)  # frames k + gap .. hi
  if seed is None:
    return tf.where(after > 0, k + gap, k - gap)
  i = tf.random.stateless_uniform([], seed, 0, tf.maximum(before + after, 1), dtype=tf.int32)
  return tf.where(i < before, lo + i, k + gap + (i - before))


# ----------------------------------------------------------------------------
# Training pairs
# ----------------------------------------------------------------------------
def is_negative(index, negative_fraction: float):
  """Spreads negatives evenly over the stream: exactly round(n*f) in any n in a row, +-1."""
  i = tf.cast(index, tf.float64)
  return tf.floor((i + 1) * negative_fraction) - tf.floor(i * negative_fraction) >= 1


def gives_one_window(negatives: str, batch_size: int, negative_fraction: float) -> bool:
  """Whether every clip's pair needs exactly one of its two windows, the
  negative one exactly when its own example is a negative: with its own clip's
  shifted window ("shifted"), or with stream negatives where B * fraction is
  whole, since then example i + B is a negative exactly when example i is
  (`is_negative`). In is_negative's float64 arithmetic that is guaranteed where
  its products are exact, so the fraction must have few binary digits (0.5,
  0.25, 0.375; not 0.2, whose batches keep both windows). In_batch negatives lend a window to the example before,
  which may be a negative while the lender is not."""
  if negatives == "shifted":
    return True
  fraction = fractions.Fraction(negative_fraction)
  return (negatives == "stream" and fraction.denominator <= 2**20
          and (batch_size * fraction).denominator == 1)


def one_window(clip: dict, negative_fraction: float):
  """The window the pairing will take from this clip where `gives_one_window`:
  its negative window if its own example is a negative, else its positive one.
  A scalar Select passes one of them on without copying it, so a batch then
  carries (and copies) one window per example instead of two."""
  neg = is_negative(clip["index"], negative_fraction)
  return tf.raw_ops.Select(condition=neg, x=clip["neg_audio"], y=clip["pos_audio"])


def mix_pair(anchor: dict, other: dict, neg) -> dict:
  """The pairing rule, for one example or a batch: where `neg`, the audio is
  `other`'s negative window, else `anchor`'s own (each clip's `window` where the
  batch carries one window per clip, `one_window`); the label says only whether
  that audio comes from the frame's video."""
  same_video = tf.equal(anchor["video_id"], other["video_id"])
  own, lent = ((anchor["window"], other["window"]) if "window" in anchor
               else (anchor["pos_audio"], other["neg_audio"]))
  return {
      # Select, not where: a scalar or per-row condition picks whole examples
      # (row copies), cheaper than where's broadcast condition on a batch
      # (benchmarks/pipeline.py measures the reader).
      "audio": tf.raw_ops.Select(condition=neg, x=lent, y=own),
      "gain": tf.where(neg, other["neg_gain"], anchor["pos_gain"]),
      "label": tf.cast(tf.logical_or(tf.logical_not(neg), same_video), tf.int32),
      "video_id": anchor["video_id"],
      "audio_video_id": tf.where(neg, other["video_id"], anchor["video_id"]),
      "audio_start": tf.where(neg, other["neg_start"], anchor["pos_start"]),
      "fps": anchor["fps"],
  }


def pair_batch(anchors: dict, others: dict, *, negative_fraction: float) -> dict:
  """Pairs a batch of clips: where the stream says negative, example i takes the
  negative window of `others`' example i."""
  neg = is_negative(anchors["index"], negative_fraction)
  other = {k: others[k] for k in NEGATIVE_KEYS + ("window",) if k in others}
  return {**{k: anchors[k] for k in contract.FRAME_KEYS + ("labels", "clip_id") if k in anchors},
          **mix_pair(anchors, other, neg)}


def pair_in_batch(batch: dict, *, negative_fraction: float) -> dict:
  """Negatives take the negative window of the next example in the same batch."""
  src = tf.roll(tf.range(tf.shape(batch["index"])[0]), -1, 0)
  return pair_batch(batch, {k: tf.gather(batch[k], src) for k in NEGATIVE_KEYS},
                    negative_fraction=negative_fraction)


def with_next(ds: tf.data.Dataset, combine) -> tf.data.Dataset:
  """combine(element i, element i + 1) for each i, in one pass over `ds`: a scan
  holds one element back (no second iterator re-reading and re-decoding)."""
  def empty(s):
    return tf.fill(s.shape, "") if s.dtype == tf.string else tf.zeros(s.shape, s.dtype)

  initial = tf.nest.map_structure(empty, ds.element_spec)
  return ds.scan(initial, graph_fn(lambda previous, current: (current, combine(previous, current)))).skip(1)


def pair_with_next_batch(batches: tf.data.Dataset, *, negative_fraction: float) -> tf.data.Dataset:
  """Stream negatives: example i takes the negative window of stream clip i + B,
  which sits in the next batch, so a negative's clip is never in its own batch."""
  return with_next(batches, lambda previous, current: pair_batch(
      previous, current, negative_fraction=negative_fraction))


def pair_shifted(batch: dict, *, negative_fraction: float) -> dict:
  """Synchronisation: a negative takes its own clip's shifted window, and the
  label says whether the audio is in sync with the frames (not only whether it
  comes from their video)."""
  neg = is_negative(batch["index"], negative_fraction)
  out = pair_batch(batch, batch, negative_fraction=negative_fraction)
  out["label"] = tf.cast(tf.logical_not(neg), tf.int32)
  out["audio_shift"] = out["audio_start"] - batch["pos_start"]
  return out


def interleave_rows(a, b):
  """[n, ...] and [n, ...] -> [2n, ...]: a[0], b[0], a[1], b[1], ..."""
  return tf.reshape(tf.stack([a, b], axis=1), tf.concat([[-1], tf.shape(a)[1:]], 0))


def pair_both(batch: dict) -> dict:
  """Synchronisation with both examples of each clip (config.data.both_examples):
  B / 2 clips -> B examples, each clip's at rows 2i (its own window, label 1) and
  2i + 1 (its shifted window, label 0). The frame keys keep one row per clip:
  the jitted step repeats them (avjax.step_inputs), so the host neither copies
  nor ships a frame stack twice. A device's share of the rows then holds both
  examples of the clips whose frames it holds."""
  twice = lambda v: tf.repeat(v, 2, axis=0)
  n = tf.shape(batch["index"])[0]
  out = {k: batch[k] for k in contract.FRAME_KEYS if k in batch}
  out.update({k: twice(batch[k]) for k in ("labels", "clip_id", "video_id", "fps") if k in batch})
  out.update(
      audio=interleave_rows(batch["pos_audio"], batch["neg_audio"]),
      gain=interleave_rows(batch["pos_gain"], batch["neg_gain"]),
      label=interleave_rows(tf.ones([n], tf.int32), tf.zeros([n], tf.int32)),
      audio_video_id=twice(batch["video_id"]),
      audio_start=interleave_rows(batch["pos_start"], batch["neg_start"]))
  out["audio_shift"] = out["audio_start"] - twice(batch["pos_start"])
  return out


def pair_batches(batches: tf.data.Dataset, *, negatives: str, negative_fraction: float,
                 both_examples: bool = False) -> tf.data.Dataset:
  """Batches of clips -> batches of pairs, by `negatives` ("stream", "in_batch"
  or "shifted"); `both_examples`: each clip as both its examples (`pair_both`)."""
  if both_examples:
    return batches.map(graph_fn(pair_both), num_parallel_calls=tf.data.AUTOTUNE)
  if negatives == "stream":
    return pair_with_next_batch(batches, negative_fraction=negative_fraction)
  if negatives == "shifted":
    return batches.map(graph_fn(lambda b: pair_shifted(b, negative_fraction=negative_fraction)),
                       num_parallel_calls=tf.data.AUTOTUNE)
  return batches.map(graph_fn(lambda b: pair_in_batch(b, negative_fraction=negative_fraction)),
                     num_parallel_calls=tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------
# Evaluation pairs
# ----------------------------------------------------------------------------
def with_next_negative(clip: dict, following: dict) -> dict:
  """An evaluation clip takes the next clip's window as its negative audio."""
  return {**clip, "neg_audio": following["neg_audio"], "neg_gain": following["neg_gain"],
          "neg_label": tf.cast(tf.equal(clip["video_id"], following["video_id"]), tf.int32)}


def avc_halves(batch: dict, xp, frames: str = "frames", audio: str = "spectrogram") -> dict:
  """An evaluation batch -> 2B pairs for AVC scoring: each clip with its own
  window (label 1), then with the next clip's (`neg_label`). `xp` is the array
  module (numpy, or jax.numpy inside jit); `frames` and `audio` the model's input keys."""
  twice = lambda x: xp.concatenate([x, x])
  return {frames: twice(batch[frames]),
          audio: xp.concatenate([batch[audio], batch["neg_" + audio]]),
          "label": xp.concatenate([xp.ones_like(batch["neg_label"]), batch["neg_label"]]),
          "mask": twice(batch["mask"])}
