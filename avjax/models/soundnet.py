"""SoundNet (Aytar, Vondrick, Torralba, NeurIPS 2016; cvondrick/soundnet main_train.lua).

An 8-layer 1-D convolutional network on the raw waveform, trained to match the
class posteriors that frozen vision networks (the teachers) give the frames
under its output steps: KL(teacher || student) per step and per teacher
(losses.soundnet_kl; the teachers run outside the model, avjax/teacher.py).
Every conv is followed by BatchNorm and ReLU; conv1, conv2 and conv5 by a max-pool.
conv8 is one head per teacher, without BatchNorm or ReLU: its outputs are logits.

With the paper's settings (22,050 Hz, 20 s windows) conv8 gives 4 output steps;
`features` (pool5, the layer the paper probes) averaged over time are the
`audio_features` that the linear probe reads; windows too short for a conv8
step (the probe's 1 s windows at paper scale) give only those.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

# The paper's layers: channels, kernel, stride, max-pool after (1: none).
PAPER_WIDTHS = (16, 32, 64, 128, 256, 512, 1024)
PAPER_KERNELS = (64, 32, 16, 8, 4, 4, 4)
PAPER_STRIDES = (2, 2, 2, 2, 2, 2, 2)
PAPER_POOLS = (8, 8, 1, 1, 4, 1, 1)
POOL5 = 4  # index of conv5, whose pooled output the paper probes


def output_steps(num_samples: int, *, kernels: Sequence[int], strides: Sequence[int],
                 pools: Sequence[int], head_kernel: int, head_stride: int) -> int:
  """conv8's output length for a waveform of `num_samples`: what the teachers'
  frames are sampled for (the torch original's padding: kernel // 2, pools floor)."""
  n = num_samples
  for k, s, p in zip(kernels, strides, pools):
    n = (n + 2 * (k // 2) - k) // s + 1
    n //= p
  return (n - head_kernel) // head_stride + 1


class SoundNet(nn.Module):
  # The trainer and evaluators feed this model `waveform` [B, samples] as its
  # audio input, not a log-spectrogram (models.audio_input).
  audio_input: ClassVar[str] = "waveform"
  correspondence: ClassVar[str | None] = None  # see models.CORRESPONDENCE
  widths: Sequence[int] = PAPER_WIDTHS
  kernels: Sequence[int] = PAPER_KERNELS
  strides: Sequence[int] = PAPER_STRIDES
  pools: Sequence[int] = PAPER_POOLS
  head_kernel: int = 8
  head_stride: int = 2
  # One conv8 head per teacher, with that teacher's number of classes (paper:
  # 1000 ImageNet objects, 401 Places scenes).
  head_classes: Sequence[int] = (1000, 401)
  dtype: Any = jnp.float32

  def __post_init__(self):
    lengths = {len(self.widths), len(self.kernels), len(self.strides), len(self.pools)}
    if len(lengths) != 1:
      raise ValueError("config.model: widths, kernels, strides and pools must have one entry "
                       f"per layer, got {len(self.widths)}, {len(self.kernels)}, "
                       f"{len(self.strides)}, {len(self.pools)}")
    if len(self.widths) <= POOL5:
      raise ValueError(f"config.model.widths: SoundNet needs at least {POOL5 + 1} layers "
                       f"(pool5 is probed), got {len(self.widths)}")
    super().__post_init__()

  @nn.compact
  def __call__(self, frames, waveform, train: bool = False):
    del frames  # the frames only made the teachers' targets
    if waveform is None:
      return {}
    x = waveform.astype(self.dtype)[..., None]  # [B, samples, 1]
    pool5 = None
    for i, (width, k, s, p) in enumerate(zip(self.widths, self.kernels, self.strides, self.pools)):
      x = nn.Conv(width, (k,), strides=(s,), padding=[(k // 2, k // 2)], use_bias=False,
                  dtype=self.dtype, name=f"conv{i + 1}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                       name=f"bn{i + 1}")(x)
      x = nn.relu(x)
      if p > 1:
        x = nn.max_pool(x, (p,), strides=(p,), padding="VALID")
      if i == POOL5:
        pool5 = x
    out = {"audio_features": jnp.mean(pool5, axis=1).astype(jnp.float32)}
    if x.shape[1] < self.head_kernel:
      # Features of windows shorter than training's (the probes' 1 s windows) have
      # no conv8 step; training on them is an error.
      if train or self.is_initializing():
        raise ValueError(f"a {waveform.shape[1]}-sample waveform leaves {x.shape[1]} steps "
                         f"before conv8 (kernel {self.head_kernel}): lengthen "
                         "config.data.spectrogram.seconds or shrink config.model.pools / head_kernel")
      return out
    out["audio_step_logits"] = [
        nn.Conv(classes, (self.head_kernel,), strides=(self.head_stride,), padding="VALID",
                dtype=self.dtype, name=f"conv8_{t}")(x).astype(jnp.float32)
        for t, classes in enumerate(self.head_classes)]
    return out
