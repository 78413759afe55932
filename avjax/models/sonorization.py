"""Sonorization: the sound predicted from the video (Owens, Isola, McDermott,
Torralba, Adelson & Freeman, "Visually Indicated Sounds", CVPR 2016).

For every frame of a stack, two CNN streams see the RGB frame and its spacetime
image (the grey previous, current and next frames as three channels: where
things move); their pooled features, concatenated, feed an LSTM over the frames,
which regresses `steps_per_frame` steps of the sound's features per frame (the
paper: 3 steps of a 90 Hz cochleagram per frame at 30 fps).

The target is computed in the step from the window's waveform, so the reader
carries only frames and sound:
  - "cochleagram" (the paper's): the compressed subband envelopes of
    data_pipelines/texture.py's ERB bank with 40 bands (`cochleagram`, its
    envelopes resampled by FFT to the step rate);
  - "log_mel": a log-mel spectrogram (speech from silent video, Ephrat et al.
    2017), for Griffin-Lim inversion.
The loss is the paper's robust regression, log(eps + ||s - s_hat||^2) per step
(losses.sonorization_robust). Not the paper's: the VGG streams instead of
ImageNet-trained AlexNets, and the features are not PCA-whitened.
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from avjax.models import separation
from avjax.models import vgg
from data_pipelines import texture

TARGETS = ("cochleagram", "log_mel")
MEL_FLOOR = 1e-6  # the log-mel's floor: below any real signal's bands


def spacetime_images(stacks):
  """[B, T, H, W, 3] -> [B, T, H, W, 3]: per frame, the grey previous, current and
  next frames (the ends repeat their neighbour)."""
  grey = jnp.mean(stacks, axis=-1)
  prev = jnp.concatenate([grey[:, :1], grey[:, :-1]], axis=1)
  nxt = jnp.concatenate([grey[:, 1:], grey[:, -1:]], axis=1)
  return jnp.stack([prev, grey, nxt], axis=-1)


def _analytic_magnitude(spectrum, n: int):
  """One-sided spectra [..., n // 2 + 1, C] -> |analytic signal| [..., n, C]: the
  negative frequencies zeroed and the positive doubled (scipy.signal.hilbert)."""
  h = np.zeros(n // 2 + 1, np.float32)
  h[0] = 1.0
  h[1:(n + 1) // 2] = 2.0
  if n % 2 == 0:
    h[n // 2] = 1.0
  full = jnp.zeros(spectrum.shape[:-2] + (n, spectrum.shape[-1]), spectrum.dtype)
  full = full.at[..., :n // 2 + 1, :].set(spectrum * h[:, None])
  return jnp.abs(jnp.fft.ifft(full, axis=-2))


def resample_steps(x, steps: int):
  """[..., n, C] -> [..., steps, C] by truncating the spectrum (scipy.signal.resample)."""
  n = x.shape[-2]
  spec = jnp.fft.rfft(x, axis=-2)[..., :steps // 2 + 1, :]
  return jnp.fft.irfft(spec, n=steps, axis=-2) * (steps / n)


def cochleagram(waveform, sample_rate: int, steps: int,
                spec: texture.TextureSpec = texture.COCHLEAGRAM):
  """[B, N] -> [B, steps, channels]: texture.cochleagram in jnp, at the waveform's
  own rate (the bank stops at its Nyquist frequency either way), the envelopes
  resampled to `steps` over the window."""
  n = waveform.shape[-1]
  filts = texture.erb_filters(n, sample_rate, texture.heard_bank(spec, sample_rate))
  sub = jnp.fft.rfft(waveform.astype(jnp.float32), axis=-1)[..., None] * filts.astype(np.float32)
  env = _analytic_magnitude(sub, n) ** spec.compression
  return jnp.maximum(resample_steps(env, steps), 0.0)


def mel_framing(samples: int, steps: int) -> tuple[int, int]:
  """The log-mel target's (n_fft, hop) for `steps` frames over a window of `samples`:
  a hop that puts them there, a Hann window of two hops."""
  hop = samples // steps
  return 2 * hop, hop


def log_mel(waveform, sample_rate: int, steps: int, n_mels: int):
  """[B, N] -> [B, steps, n_mels]: log of a mel spectrogram framed by `mel_framing`."""
  import librosa
  n_fft, hop = mel_framing(waveform.shape[-1], steps)
  mag = jnp.abs(separation.stft(waveform, n_fft, hop))[..., :steps, :]  # [B, steps, F]
  mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float32)
  return jnp.log(jnp.einsum("btf,mf->btm", mag ** 2, mel) + MEL_FLOOR)


class SonorizationNet(vgg.Towers):
  frame_input: ClassVar[str] = "frame_stack"
  audio_input: ClassVar[str] = "waveform"
  correspondence: ClassVar[str | None] = None  # see models.CORRESPONDENCE
  spacetime_widths: Sequence[int] = (64, 128, 256, 512)
  lstm_size: int = 256
  steps_per_frame: int = 3
  target: str = "cochleagram"  # one of TARGETS
  sample_rate: int = 22050     # the waveform's (config.data.sample_rate)
  n_mels: int = 64             # target "log_mel"

  def __post_init__(self):
    if self.target not in TARGETS:  # at build, so that the config check catches it
      raise ValueError(f"config.model.target: {self.target!r} is not one of {', '.join(TARGETS)}")
    super().__post_init__()

  def target_features(self, waveform, steps: int):
    """The window's sound features [B, steps, D] that the network regresses."""
    if self.target == "log_mel":
      return log_mel(waveform, self.sample_rate, steps, self.n_mels)
    return cochleagram(waveform, self.sample_rate, steps)

  @property
  def feature_size(self) -> int:
    if self.target == "log_mel":
      return self.n_mels
    return texture.heard_bank(texture.COCHLEAGRAM, self.sample_rate).num_channels

  @nn.compact
  def __call__(self, stacks, waveform, train: bool = False):
    out = {}
    if stacks is not None:
      b, t = stacks.shape[:2]
      flat = lambda x: x.reshape(b * t, *x.shape[2:])
      rgb = vgg.global_max_pool(self.subnet(self.vision_widths, "vision")(flat(stacks), train))
      motion = vgg.global_max_pool(self.subnet(self.spacetime_widths, "spacetime")(
          flat(spacetime_images(stacks)), train))
      per_frame = jnp.concatenate([rgb, motion], axis=-1).reshape(b, t, -1).astype(jnp.float32)
      out["frame_features"] = jnp.mean(per_frame, axis=1)
      hidden = nn.RNN(nn.OptimizedLSTMCell(self.lstm_size, name="lstm"))(per_frame)
      pred = nn.Dense(self.steps_per_frame * self.feature_size, name="sound_head")(hidden)
      out["sonorization_predictions"] = pred.reshape(b, t * self.steps_per_frame,
                                                     self.feature_size)
    if waveform is not None and stacks is not None:  # the target's steps are the frames'
      out["sonorization_targets"] = self.target_features(waveform, stacks.shape[1] *
                                                         self.steps_per_frame)
    return out
