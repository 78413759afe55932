"""Per-clip operations of the reader, each usable alone or inside tf.data: the
audio windows of a parsed clip, frame crops and their augmentation draws, boxes
in crop coordinates, and log-spectrograms of waveforms or stored |STFT| slices.

Every random draw is stateless, keyed by the seeds passed in, so an op gives
the same result eagerly and traced (tests/test_reader.py).
"""
from __future__ import annotations

import tensorflow as tf

from data_pipelines import pairs
from data_pipelines import spectrogram as spectrogram_lib
from data_pipelines.reader_spec import ReaderSpec


# Rows of a decoded |STFT| are padded to a multiple of this many float32 (64 bytes).
ROW_ALIGN_FLOATS = 16


def decoded_magnitude(magnitude_bytes, spec: spectrogram_lib.SpectrogramSpec):
  """A clip's stored |STFT| decoded whole: [frames, bins padded to ROW_ALIGN_FLOATS].

  A record that gives several windows decodes it once. Padded, every row range
  starts on a 64-byte boundary, so the windows are views of it, and tf.data
  passes them on (the interleave's slices of a record's stacked windows) without
  copying them: 257 float32 bins make 1028-byte rows, whose ranges it copies.
  The batch ships the padding (zeros), and the step drops it (`add_spectrograms`).
  """
  bins = spec.num_bins
  rows = tf.reshape(tf.io.decode_raw(magnitude_bytes, tf.float32, little_endian=True), [-1, bins])
  return tf.pad(rows, [[0, 0], [0, padded_bins(bins) - bins]])


def padded_bins(bins: int) -> int:
  """`bins` rounded up to whole 64-byte rows of float32 (`decoded_magnitude`)."""
  return -(-bins // ROW_ALIGN_FLOATS) * ROW_ALIGN_FLOATS


def magnitude_window(magnitude, start_sample, spec: spectrogram_lib.SpectrogramSpec):
  """The stored whole-clip |STFT| frames of the window starting at `start_sample`
  (a multiple of the hop): [frames, bins] float32 from the stored bytes, decoding
  only the window's, or a row range of `decoded_magnitude` (its padded bins kept)."""
  first = start_sample // spec.hop_length
  if magnitude.dtype != tf.string:
    return magnitude[first:first + spec.num_frames]
  row = spec.num_bins * 4
  raw = tf.strings.substr(magnitude, tf.cast(first, tf.int32) * row, spec.num_frames * row)
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
  that the jitted step applies (avjax/step_inputs.py; contract.AUGMENT_KEYS)."""
  seeds = tf.random.experimental.stateless_split(seed, 5)
  j = spec.colour_jitter
  out = {
      "crop_seed": seeds[0],
      "aug_flip": tf.logical_and(spec.flip, tf.random.stateless_uniform([], seeds[1]) < 0.5),
      "aug_brightness": tf.random.stateless_uniform([], seeds[2], -j * 0.5, j * 0.5),
      "aug_contrast": tf.random.stateless_uniform([], seeds[3], 1 - j, 1 + j),
      "aug_saturation": tf.random.stateless_uniform([], seeds[4], 1 - j, 1 + j),
  }
  if spec.zoom_out > 0:
    # Its own stream (folded in), so that turning it on leaves the other draws as they were.
    zoom_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    u = tf.random.stateless_uniform([3], zoom_seed)
    out["aug_zoom"] = tf.concat([1.0 - spec.zoom_out * u[:1], u[1:]], 0)
  return out


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


def clip_id(filename, start_us):
  """int32 hash of data_pipelines.sound_targets.clip_key(filename, start_us)."""
  key = tf.strings.join([filename, "@", tf.strings.as_string(start_us)])
  return tf.cast(tf.strings.to_hash_bucket_fast(key, 2**31 - 1), tf.int32)


def has_room(lo, hi, fps, spec: ReaderSpec):
  """Whether window frames [lo, hi] (pairs.window_frame_range) leave room for the
  reader's windows: the audio window at some frame and, with shifted negatives,
  that window plus twice `min_shift` (every frame's window then has a shifted
  partner on one side or the other)."""
  if spec.negatives == "shifted":
    return hi - lo >= 2 * pairs.shift_frames(fps, spec.min_shift)
  return lo <= hi


def holds_windows(clip, spec: ReaderSpec):
  """`has_room` for a parsed clip. The reader leaves out clips that do not
  (reader.short_clips)."""
  lo, hi = pairs.window_frame_range(clip["num_frames"], clip["num_samples"], clip["fps"],
                                    spec.spectrogram)
  return has_room(lo, hi, clip["fps"], spec)


def clip_windows(clip: dict, index, seed, *, spec: ReaderSpec, train: bool, frame=None,
                 audio_offset=None) -> dict:
  """Chooses the frame and the audio windows of one parsed clip.

  Returns the chosen JPEG, the positive window (centred on that frame) and a
  negative candidate window (used when this clip is another clip's negative),
  placed by the pair sampler's rules (data_pipelines/pairs.py). `frame`
  (evaluation) names the frame instead of the box's or the middle one;
  `audio_offset` (evaluation, frames) moves the positive window that many frames
  from the frames' own, within the clip (`audio_offset` in the result: seconds,
  after clipping to the clip).
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
  lo, hi = pairs.window_frame_range(n_frames, n_samples, fps, aspec)
  # The reader leaves such clips out (reader.short_clips); this guards other callers.
  long_enough = tf.debugging.Assert(has_room(lo, hi, fps, spec), [
      f"a clip is too short for a window shifted by config.data.min_shift={spec.min_shift}s "
      "beside its own: it needs the window plus twice the shift"
      if spec.negatives == "shifted" else
      f"a clip is shorter than the {aspec.seconds}s audio window"])
  with tf.control_dependencies([long_enough]):
    lo, hi = tf.identity(lo), tf.identity(hi)
  if train:
    k = tf.random.stateless_uniform([], seeds[0], lo, hi + 1, dtype=tf.int32)
  elif frame is not None:
    k = tf.cast(frame, tf.int32)
  else:
    # The frame the first box refers to, else the middle frame.
    box_t = tf.cast(tf.concat([clip["box_times_us"], [-1]], 0)[0], tf.float32) / 1e6
    k = tf.where(box_t >= 0, tf.cast(tf.round(box_t * fps), tf.int32), n_frames // 2)
  frame_k = tf.clip_by_value(k, 0, n_frames - 1)
  frames_start = pairs.grid_start_sample(tf.clip_by_value(k, lo, hi), fps, aspec)
  audio_k = tf.clip_by_value(k + (0 if audio_offset is None else audio_offset), lo, hi)
  pos_start = pairs.grid_start_sample(audio_k, fps, aspec)
  if spec.negatives == "shifted":
    j = pairs.shifted_frame(seeds[1] if train else None, tf.clip_by_value(k, lo, hi), lo, hi,
                            fps, spec.min_shift)
    neg_start = pairs.grid_start_sample(j, fps, aspec)
  elif train:
    neg_start = pairs.negative_start_sample(seeds[1], lo, hi, n_samples, fps, aspec,
                                            on_grid=spec.negatives_on_grid)
  elif spec.negatives_on_grid:  # deterministic: the middle grid window
    neg_start = pairs.grid_start_sample((lo + hi) // 2, fps, aspec)
  else:  # scoring the shortcut: a window anywhere, drawn from (0, index) as always in evaluation
    neg_start = pairs.negative_start_sample(seeds[1], lo, hi, n_samples, fps, aspec, on_grid=False)
  if spec.stored_spectrogram:
    magnitude = clip["magnitude"] if "magnitude" in clip else clip["magnitude_bytes"]
    window = lambda s: magnitude_window(magnitude, s, aspec)
    shape = [aspec.num_frames, aspec.num_bins if magnitude.dtype == tf.string else magnitude.shape[1]]
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
      "clip_id": clip_id(clip["filename"], clip["clip_start_us"]),
      "filename": clip["filename"],
      "fps": fps,
      "label_index": clip["label_index"],
      "boxes": clip["boxes"],
      "audio_offset": tf.cast(audio_k - tf.clip_by_value(k, lo, hi), tf.float32) / fps,
  }
  out["jpeg"] = clip["jpeg_frames"][frame_k]
  if spec.frame_stack:
    out["jpeg_stack"] = tf.gather(clip["jpeg_frames"], stack_frames(
        frames_start, n_frames, fps, aspec, spec.frame_stack))
  return out


def window_frames(clip: dict, *, spec: ReaderSpec, hop_seconds: float):
  """The frames whose windows tile an evaluation clip every `hop_seconds` (at least
  one; frame grid as in pairs.window_frame_range)."""
  fps = clip["fps"]
  lo, hi = pairs.window_frame_range(clip["num_frames"], clip["num_samples"], fps,
                                    spec.spectrogram)
  hop = tf.maximum(1, tf.cast(tf.round(hop_seconds * fps), tf.int32))
  return tf.range(lo, tf.maximum(hi, lo) + 1, hop)


TIE = 1e-6  # frames: far above float64's error here, far below any real offset


def stack_frames(start_sample, num_frames, fps, aspec, n: int):
  """Indices of the frames nearest the centres of n equal segments of the audio
  window starting at `start_sample` (frame k shows time k / fps), halves rounded
  up: a window on the frame grid with one segment per frame puts every centre
  half-way between two frames, where rounding half to even took every other
  frame twice. TIE lifts float error off those halves, so that all go one way."""
  centres = (tf.cast(start_sample, tf.float64) / aspec.sample_rate
             + (tf.range(n, dtype=tf.float64) + 0.5) * (aspec.seconds / n))
  nearest = tf.floor(centres * tf.cast(fps, tf.float64) + 0.5 + TIE)
  return tf.clip_by_value(tf.cast(nearest, tf.int32), 0, num_frames - 1)


def decode_for_batch(clip: dict, *, spec: ReaderSpec, train: bool) -> dict:
  """The chosen frame as a uint8 crop, plus (training) its augmentation draws."""
  params = frame_augment_params(clip["frame_seed"], spec=spec)
  crop_seed = params.pop("crop_seed")
  out = {"frames": decode_crop(clip["jpeg"], crop_seed, spec=spec, train=train)}
  if "jpeg_stack" in clip:  # one crop window for the whole stack
    out["frame_stack"] = tf.stack([decode_crop(clip["jpeg_stack"][i], crop_seed, spec=spec,
                                               train=train) for i in range(spec.frame_stack)])
  if train:
    out.update(params)
  return out


def add_spectrograms(batch: dict, spec: ReaderSpec,
                     keys=(("audio", "gain", "spectrogram"),), *, log_on_device: bool = False) -> dict:
  """Replaces batched waveforms [B, N] (or stored |STFT| windows [B, T, F]) and
  their gains [B] by log-spectrograms [B, F, T, 1]; with spec.audio="waveform",
  by the waveforms times their gains, under "waveform" for "spectrogram".

  `log_on_device` (training): float32 |STFT| [B, T, F'] under "stft_magnitude"
  and the gains under "aug_gain" instead, for the jitted step to take the log
  (avjax/step_inputs.py); one key triple only. F' is F, or with
  `decoded_magnitude`'s windows its padded width: the step drops the padding
  inside the log's one pass, where a slice here copied every window again (5%
  of the paper-scale reader's CPU time).
  """
  if log_on_device and len(keys) != 1:
    raise ValueError(f"log_on_device ships one |STFT| per example under 'stft_magnitude'; "
                     f"got {len(keys)} audio keys {keys}")
  batch = dict(batch)
  for audio_key, gain_key, spec_key in keys:
    audio, gain = batch.pop(audio_key), batch.pop(gain_key)
    if spec.audio == "waveform":
      batch[spec_key.replace("spectrogram", "waveform")] = audio * gain[:, None]
      continue
    if spec.stored_spectrogram:
      # decoded_magnitude's padding: shipped to the step, else dropped here.
      magnitude = audio if log_on_device else audio[..., :spec.spectrogram.num_bins]
    else:
      magnitude = spectrogram_lib.stft_magnitude(audio, spec.spectrogram)
    if log_on_device:
      batch["stft_magnitude"], batch["aug_gain"] = tf.cast(magnitude, tf.float32), gain
      continue
    batch[spec_key] = spectrogram_lib.log_of_gained_magnitude(magnitude, gain,
                                                              spec.spectrogram)[..., None]
  return batch
