"""Log-magnitude spectrograms with tf.signal, matching librosa's framing.

The STFT runs in float64: the log amplifies absolute FFT error in quiet bins, and
float32 rounding there alone exceeds 1e-4 in the log domain. That costs about a
millisecond per 1 s window at 48 kHz, so `prepare` stores each clip's magnitudes
once (float32 keeps the log within 1e-6) and the reader slices windows out of them
when they start on the STFT's hop grid (see reader.py).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class SpectrogramSpec:
  """Framing of a log-spectrogram. Paper default: 48 kHz, 10 ms Hann, hop 5 ms."""
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

  def __post_init__(self):
    if self.win_length > self.n_fft:
      raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
    if self.num_samples < self.win_length:
      raise ValueError(f"{self.seconds}s at {self.sample_rate} Hz is shorter than one window")


def stft_magnitude(waveform: tf.Tensor, spec: SpectrogramSpec) -> tf.Tensor:
  """[..., samples] float waveform -> [..., frames, bins] float64 |STFT|.

  Frame i covers samples [i*hop, i*hop + win) under a periodic Hann window,
  zero-padded to n_fft. Magnitudes equal librosa.stft(np.pad(y, pad), n_fft,
  hop, win, center=False) with pad = (n_fft - win) // 2 on both sides, since
  librosa centres the window inside n_fft and |FFT| is shift invariant.
  """
  x = tf.cast(waveform, tf.float64)
  stft = tf.signal.stft(
      x, frame_length=spec.win_length, frame_step=spec.hop_length,
      fft_length=spec.n_fft,
      window_fn=lambda n, dtype: tf.signal.hann_window(n, periodic=True, dtype=dtype))
  return tf.abs(stft)


def log_of_magnitude(magnitude: tf.Tensor, spec: SpectrogramSpec) -> tf.Tensor:
  """[..., frames, bins] |STFT| -> [..., bins, frames] float32 log(|STFT| + offset)."""
  logmag = tf.math.log(magnitude + tf.cast(spec.log_offset, magnitude.dtype))
  return tf.cast(tf.linalg.matrix_transpose(logmag), tf.float32)


def log_spectrogram(waveform: tf.Tensor, spec: SpectrogramSpec) -> tf.Tensor:
  """[..., samples] float waveform -> [..., bins, frames] float32 log|STFT|."""
  return log_of_magnitude(stft_magnitude(waveform, spec), spec)
