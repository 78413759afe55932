"""Log-magnitude spectrograms with tf.signal, matching librosa's framing.

The STFT runs in float64: the log amplifies absolute FFT error in quiet bins, and
float32 rounding there alone exceeds 1e-4 in the log domain. That costs about a
millisecond per 1 s window at 48 kHz, so `prepare` stores each clip's magnitudes
once (float32 keeps the log within 1e-6) and the reader slices windows out of them
when they start on the STFT's hop grid (see reader.py).
"""
from __future__ import annotations

import dataclasses


# What fixes the |STFT| frames a clip gives: the manifest records these four.
FRAMING = ("sample_rate", "win_length", "hop_length", "n_fft")


@dataclasses.dataclass(frozen=True)
class SpectrogramSpec:
  """Framing of a log-spectrogram. Paper default: 48 kHz, 10 ms Hann, hop 5 ms.

  The one description of the framing: configs give it to the reader and to
  prepare, prepare stores it in each record and the manifest
  (`to_manifest`), and the reader compares the manifest's with its own
  (`framing_mismatch`) before slicing stored |STFT| windows.
  """
  sample_rate: int = 48000
  win_length: int = 480
  hop_length: int = 240
  n_fft: int = 512
  log_offset: float = 1e-5
  seconds: float = 1.0

  @property
  def num_samples(self) -> int:
    return int(round(self.sample_rate * self.seconds))

  @property
  def num_bins(self) -> int:
    return self.n_fft // 2 + 1

  @property
  def num_frames(self) -> int:
    return 1 + (self.num_samples - self.win_length) // self.hop_length

  @property
  def shape(self) -> tuple[int, int]:
    """(frequency bins, time frames): 257 x 199 at paper scale."""
    return (self.num_bins, self.num_frames)

  @property
  def framing(self) -> tuple[int, int, int, int]:
    return tuple(getattr(self, k) for k in FRAMING)

  def to_manifest(self) -> dict:
    return dict(zip(FRAMING, self.framing))

  @classmethod
  def from_manifest(cls, stored: dict | None) -> "SpectrogramSpec | None":
    """A manifest's `spectrogram` entry -> the spec it describes (None: none stored)."""
    return cls(**{k: int(stored[k]) for k in FRAMING}) if stored else None

  @classmethod
  def parse_stft(cls, text: str, sample_rate: int) -> "SpectrogramSpec":
    """"win_length,hop_length,n_fft" (prepare's --stft) at `sample_rate`."""
    try:
      win, hop, n_fft = (int(v) for v in text.split(","))
    except ValueError:
      raise ValueError(f"{text!r}: expected three integers win_length,hop_length,n_fft") from None
    try:
      return cls(sample_rate=sample_rate, win_length=win, hop_length=hop, n_fft=n_fft)
    except ValueError as e:
      raise ValueError(f"{text!r}: {e}") from None

  def __post_init__(self):
    if self.win_length > self.n_fft:
      raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
    if self.num_samples < self.win_length:
      raise ValueError(f"{self.seconds}s at {self.sample_rate} Hz is shorter than one window")


def stft_magnitude(waveform, spec: SpectrogramSpec, dtype=None):
  """[..., samples] float waveform -> [..., frames, bins] float64 |STFT| (or
  `dtype`'s: float32 where float64 cannot run, as in TFLite).

  Frame i covers samples [i*hop, i*hop + win) under a periodic Hann window,
  zero-padded to n_fft. Magnitudes equal librosa.stft(np.pad(y, pad), n_fft,
  hop, win, center=False) with pad = (n_fft - win) // 2 on both sides, since
  librosa centres the window inside n_fft and |FFT| is shift invariant.
  """
  import tensorflow as tf  # here, not at import: SpectrogramSpec alone needs no TF
  x = tf.cast(waveform, dtype or tf.float64)
  stft = tf.signal.stft(
      x, frame_length=spec.win_length, frame_step=spec.hop_length,
      fft_length=spec.n_fft,
      window_fn=lambda n, dtype: tf.signal.hann_window(n, periodic=True, dtype=dtype))
  return tf.abs(stft)


def log_of_magnitude(magnitude, spec: SpectrogramSpec, xp=None):
  """[..., frames, bins] |STFT| -> [..., bins, frames] float32 log(|STFT| + offset).

  TensorFlow by default; `xp` (jax.numpy, numpy) for the same in that library:
  the jitted training step takes its log there (avjax/step_inputs.py).
  """
  if xp is not None:
    logmag = xp.log(magnitude + xp.asarray(spec.log_offset, magnitude.dtype))
    return xp.swapaxes(logmag, -1, -2).astype(xp.float32)
  import tensorflow as tf
  logmag = tf.math.log(magnitude + tf.cast(spec.log_offset, magnitude.dtype))
  return tf.cast(tf.linalg.matrix_transpose(logmag), tf.float32)


def log_of_gained_magnitude(magnitude, gain, spec: SpectrogramSpec, xp=None):
  """|STFT| [B, frames, bins] times gains [B] -> [B, bins, frames] float32 log, in
  TensorFlow (the evaluation reader) or `xp` (the training step, jax.numpy)."""
  if xp is None:
    import tensorflow as tf
    gain = tf.cast(gain, magnitude.dtype)
  else:
    gain = gain.astype(magnitude.dtype)
  return log_of_magnitude(magnitude * gain[:, None, None], spec, xp)


def log_spectrogram(waveform, spec: SpectrogramSpec, dtype=None):
  """[..., samples] float waveform -> [..., bins, frames] float32 log|STFT|
  (computed in float64, or `dtype`)."""
  return log_of_magnitude(stft_magnitude(waveform, spec, dtype), spec)


def stft_magnitude_numpy(waveform, spec: SpectrogramSpec):
  """`stft_magnitude` in numpy float64, for host code that must not load
  TensorFlow (prepare workers, avjax-embed on audio: TF alone is ~700 MB of a
  process's memory). Equal to the TF version to float64 rounding."""
  import numpy as np
  x = np.asarray(waveform, np.float64)
  n = max(0, 1 + (x.shape[-1] - spec.win_length) // spec.hop_length)
  index = np.arange(spec.win_length)[None, :] + spec.hop_length * np.arange(n)[:, None]
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(spec.win_length) / spec.win_length)
  return np.abs(np.fft.rfft(x[..., index] * window, n=spec.n_fft))  # [..., frames, bins]


def log_spectrogram_numpy(waveform, spec: SpectrogramSpec):
  """`log_spectrogram` in numpy (see stft_magnitude_numpy); equal to the TF
  version to float32 rounding (tests/test_spectrogram.py)."""
  import numpy as np
  magnitude = stft_magnitude_numpy(waveform, spec)
  return np.swapaxes(np.log(magnitude + spec.log_offset), -1, -2).astype(np.float32)


def framing_mismatch(stored: SpectrogramSpec | None, wanted: SpectrogramSpec) -> str | None:
  """Why |STFT| stored with `stored` framing cannot serve `wanted`, or None if it can."""
  if stored is None:
    return "the shards store no |STFT|"
  if stored.framing != wanted.framing:
    pairs = ", ".join(f"{k} {a} vs {b}" for k, a, b in zip(FRAMING, stored.framing, wanted.framing)
                      if a != b)
    return f"the shards' |STFT| framing differs from the config's ({pairs})"
  return None
