"""Audio-visual source separation by mix-and-separate (Zhao et al., "The Sound of
Pixels", ECCV 2018; hangzhaomit/Sound-of-Pixels).

Training needs no labels and no stems: the clips of a batch are mixed in the
step (`mix_batch`: each clip's waveform with the next `sources - 1` clips' of
the batch, each scaled by 1 / sources, as the paper's loader does), and the
network must recover each clip's own sound from the mixture, told which by the
clip's frame. Three parts:
  - the audio U-Net on the mixture's log-|STFT| [F, T] gives K sound channels
    at every time-frequency bin (paper: 7 down and 7 up blocks, K = 32);
  - the vision tower (here the VGG frame tower of the other methods; the paper's
    ResNet-18 dilated over 3 frames) gives K channels at every location, through
    |tanh|, max-pooled over space to one vector per frame;
  - the linear synthesiser: mask logit = sum_k scale_k v_k a_k + bias, and a
    sigmoid gives the mask of the frame's sound in the mixture.
The target is the paper's binary mask (the clip's |STFT| at least every other
source's), under a BCE weighted by log(1 + |mixture|) clipped to [1e-3, 10]
(losses.separation_bce). The separated sound is the mask times the mixture's
STFT, inverted with the mixture's phase (`istft`).

In training (train=True) `waveform` holds the clips' own sounds and the model
mixes them; in inference (train=False) `waveform` is a mixture to separate,
and the outputs also give the mask of every location's vector (the "sound of
pixels"), which avjax-separate peaks into objects. The paper's warp of the
spectrogram onto a log-frequency axis is not built: masks are on the STFT's
linear bins.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avjax.models import vgg

LOG_FLOOR = 1e-6  # the log-|STFT|'s floor: below any real signal's bins, above float32's


def hann(n_fft: int) -> np.ndarray:
  """The periodic Hann window (scipy's get_window("hann", n_fft), librosa's default)."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _frame_index(num_frames: int, n_fft: int, hop: int) -> np.ndarray:
  return hop * np.arange(num_frames)[:, None] + np.arange(n_fft)[None]


def stft(x, n_fft: int, hop: int):
  """[..., N] -> complex [..., T, F], T = 1 + N // hop, F = n_fft // 2 + 1: librosa's
  stft(center=True) with its zero padding and periodic Hann window (transposed)."""
  pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
  xp = jnp.pad(x.astype(jnp.float32), pad)
  frames = xp[..., _frame_index(1 + x.shape[-1] // hop, n_fft, hop)] * hann(n_fft)
  return jnp.fft.rfft(frames, axis=-1)


def istft(spec, n_fft: int, hop: int, length: int):
  """complex [..., T, F] -> [..., length]: the inverse of `stft` (weighted
  overlap-add, normalised by the overlapped squared window), as librosa's istft."""
  num_frames = spec.shape[-2]
  window = hann(n_fft)
  frames = jnp.fft.irfft(spec, n=n_fft, axis=-1) * window
  index = _frame_index(num_frames, n_fft, hop)
  total = n_fft + hop * (num_frames - 1)
  out = jnp.zeros(spec.shape[:-2] + (total,), jnp.float32).at[..., index].add(frames)
  norm = np.zeros(total, np.float32)
  np.add.at(norm, index, np.broadcast_to(window ** 2, index.shape))
  out = out / np.where(norm > 1e-10, norm, 1.0)
  out = out[..., n_fft // 2:n_fft // 2 + length]
  short = length - out.shape[-1]
  return jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, short)]) if short > 0 else out


def mix_batch(waveforms, sources: int):
  """Mix-and-separate's inputs from a batch of clips' sounds [B, N]: -> (mixtures
  [B, N], stems [B, sources, N]). Row i mixes clip i with clips i+1 .. i+sources-1
  (cyclically), each scaled by 1 / sources; stem 0 is clip i's own, the sound its
  frame shows. Every clip is stem 0 of exactly one mixture."""
  if waveforms.shape[0] < sources:
    raise ValueError(f"mix-and-separate mixes {sources} clips of a batch; the batch has "
                     f"{waveforms.shape[0]}")
  stems = jnp.stack([jnp.roll(waveforms, -k, axis=0) for k in range(sources)], axis=1) / sources
  return jnp.sum(stems, axis=1), stems


def binary_masks(stem_magnitudes):
  """|STFT| of the stems [B, S, T, F] -> [B, T, F] float32: 1 where stem 0 is at
  least every other stem (the paper's binary target)."""
  return (stem_magnitudes[:, 0] >= jnp.max(stem_magnitudes[:, 1:], axis=1)).astype(jnp.float32)


def loss_weights(mixture_magnitude):
  """The paper's per-bin weights: log(1 + |mixture|), clipped to [1e-3, 10]."""
  return jnp.clip(jnp.log1p(mixture_magnitude), 1e-3, 10.0)


def _pad_to(x, multiple: int):
  """[B, F, T, C] zero-padded at the end of F and T to multiples of `multiple`."""
  pads = [(0, (-x.shape[a]) % multiple) for a in (1, 2)]
  return jnp.pad(x, [(0, 0), *pads, (0, 0)])


def _upsample(x):
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")


class UNet(nn.Module):
  """[B, F, T, 1] -> [B, F, T, channels]: 4x4 stride-2 convolutions down (BN and
  LeakyReLU 0.2), x2 upsampling and 3x3 convolutions up (BN and ReLU), skips
  concatenated; F and T are padded to the depth's multiple and cropped back. A
  `condition` [B, C] is tiled over the bottleneck and concatenated there."""
  widths: Sequence[int] = (64, 128, 256, 512, 512, 512, 512)
  channels: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, condition=None):
    f, t = x.shape[1:3]
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn_in")(x)
    x = _pad_to(x, 2 ** len(self.widths)).astype(self.dtype)
    downs = []
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (4, 4), strides=2, padding="SAME", dtype=self.dtype,
                  name=f"down{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                       name=f"down{i}_bn")(x)
      x = nn.leaky_relu(x, 0.2)
      downs.append(x)
    if condition is not None:
      tiled = jnp.broadcast_to(condition[:, None, None, :].astype(x.dtype),
                               (*x.shape[:3], condition.shape[-1]))
      x = jnp.concatenate([x, tiled], axis=-1)
    for i, skip in enumerate(downs[-2::-1]):  # up to each down block's scale, then its skip
      x = nn.Conv(skip.shape[-1], (3, 3), padding="SAME", dtype=self.dtype,
                  name=f"up{i}")(_upsample(x))
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                               name=f"up{i}_bn")(x))
      x = jnp.concatenate([x, skip], axis=-1)
    # The K sound channels at the input's scale: linear (the paper's "no" sound activation).
    x = nn.Conv(self.channels, (3, 3), padding="SAME", dtype=self.dtype,
                name="sound_channels")(_upsample(x))
    return x[:, :f, :t]


class SeparationNet(vgg.Towers):
  audio_input: ClassVar[str] = "waveform"
  correspondence: ClassVar[str | None] = None  # see models.CORRESPONDENCE
  unet_widths: Sequence[int] = (64, 128, 256, 512, 512, 512, 512)
  channels: int = 32  # K: the sound channels and the frame vector's size
  n_fft: int = 1022  # the paper's: 512 bins
  hop: int = 256
  sources: int = 2  # clips per training mixture
  # How the frame picks its sound: "synthesiser" (the paper's: the frame vector
  # weighs K sound channels) or "bottleneck" (tiled over the U-Net's bottleneck).
  condition: str = "synthesiser"

  @nn.compact
  def __call__(self, frames, waveform, train: bool = False):
    out = {}
    vectors = None
    if frames is not None:
      fmap = self.subnet(self.vision_widths, "vision")(frames, train)
      out["frame_features"] = vgg.global_max_pool(fmap).astype(jnp.float32)
      vectors = jnp.abs(jnp.tanh(nn.Conv(self.channels, (1, 1), dtype=self.dtype,
                                         name="frame_channels")(fmap)))  # [B, h, w, K]
    if waveform is None or vectors is None:
      return out
    if train:
      mixture, stems = mix_batch(waveform.astype(jnp.float32), self.sources)
    else:
      mixture, stems = waveform.astype(jnp.float32), None
    mix_spec = stft(mixture, self.n_fft, self.hop)  # [B, T, F]
    mix_mag = jnp.abs(mix_spec)
    log_mag = jnp.log(mix_mag + LOG_FLOOR).transpose(0, 2, 1)[..., None]  # [B, F, T, 1]
    if self.condition == "synthesiser":
      location_logits, pooled_logits = self._synthesiser(log_mag, vectors, train)
    elif self.condition == "bottleneck":
      location_logits, pooled_logits = self._bottleneck(log_mag, vectors, train)
    else:
      raise ValueError(f"config.model.condition: {self.condition!r}; use synthesiser, bottleneck")
    out["separation_logits"] = pooled_logits()
    if stems is not None:
      stem_mag = jnp.abs(stft(stems, self.n_fft, self.hop))  # [B, S, T, F]
      out["separation_targets"] = binary_masks(stem_mag)
      out["separation_weights"] = loss_weights(mix_mag)
    else:
      out["separation_waveform"] = istft(jax.nn.sigmoid(out["separation_logits"]) * mix_spec,
                                         self.n_fft, self.hop, mixture.shape[-1])
      b, h, w, _ = vectors.shape
      out["separation_location_logits"] = location_logits().reshape(b, h, w, *mix_mag.shape[1:])
    return out

  def _synthesiser(self, log_mag, vectors, train):
    """The paper's: K sound channels from the U-Net, and a mask logit per bin that
    is their sum weighted by a frame vector. -> (every location's logits, thunk;
    the pooled vector's, thunk)."""
    sound = UNet(self.unet_widths, self.channels, dtype=self.dtype, name="unet")(log_mag, train)
    sound = sound.astype(jnp.float32)
    scale = self.param("synth_scale", nn.initializers.ones, (self.channels,))
    bias = self.param("synth_bias", nn.initializers.zeros, ())

    def synthesise(v):  # [B, K] -> mask logits [B, T, F]
      return jnp.einsum("bk,bftk->btf", v.astype(jnp.float32) * scale, sound) + bias

    b, h, w, k = vectors.shape
    return (lambda: jax.vmap(synthesise, in_axes=1, out_axes=1)(vectors.reshape(b, h * w, k)),
            lambda: synthesise(jnp.max(vectors, axis=(1, 2))))

  def _bottleneck(self, log_mag, vectors, train):
    """The frame vector tiled over the U-Net's bottleneck, one mask channel out
    (as later audio-visual separation networks condition). Every location's
    logits take a U-Net pass each, on the same mixture."""
    unet = UNet(self.unet_widths, 1, dtype=self.dtype, name="unet")
    b, h, w, k = vectors.shape

    def logits(x, v):
      return unet(x, train, condition=v)[..., 0].astype(jnp.float32).transpose(0, 2, 1)

    def every_location():
      x = jnp.repeat(log_mag, h * w, axis=0)
      return logits(x, vectors.reshape(b * h * w, k)).reshape(b, h * w, *x.shape[2:0:-1])

    return every_location, lambda: logits(log_mag, jnp.max(vectors, axis=(1, 2)))
