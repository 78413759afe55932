"""Audio-visual synchronisation (Owens & Efros, "Audio-Visual Scene Analysis with
Self-Supervised Multisensory Features", ECCV 2018; andrewowens/multisensory
src/shift_net.py).

Early fusion: a 3-D conv net over a stack of frames and a 1-D conv net over the
mu-law-compressed waveform under them. The sound features are max-pooled to the
video's time steps, convolved over time, tiled over space and concatenated with
the video features mid-network; residual 3-D blocks follow. The logit says
whether the sound is in sync with the frames (sigmoid cross-entropy against
`label`, negatives being the clip's own audio shifted: data_pipelines/pairs.py).
The logit layer applied at every location of the last conv layer is the class
activation map (`cam`), whose mean over time is the localisation `heatmap`.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax import maths
from avjax.models import vgg


def mu_law(x, mu: float = 255.0):
  """sign(x) log(1 + mu |x|) / log(1 + mu): the paper's waveform compression."""
  return jnp.sign(x) * jnp.log1p(mu * jnp.abs(x)) / math.log1p(mu)


def pool_to_steps(x, steps: int):
  """[B, N, C] -> [B, steps, C]: max over `steps` equal segments of the N axis
  (the paper's fractional max-pool, without its randomness)."""
  n = x.shape[1]
  bounds = [(math.floor(t * n / steps), max(math.ceil((t + 1) * n / steps), math.floor(t * n / steps) + 1))
            for t in range(steps)]
  return jnp.stack([jnp.max(x[:, a:b], axis=1) for a, b in bounds], axis=1)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """XLA's SAME padding of one axis: (low, high)."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def conv3d_by_taps(x, kernel, strides):
  """A SAME 3-D convolution [B, T, H, W, C] * [kt, kh, kw, C, F] as the sum over
  the kt temporal taps of 2-D convolutions of the frames (T folded into the
  batch): the same sums, which XLA:CPU runs faster than its 3-D convolution at
  these sizes, gradients included (measured when chosen, commit e5fe6dc)."""
  b, t, h, w, c = x.shape
  kt, st = kernel.shape[0], strides[0]
  lo, hi = same_padding(t, kt, st)
  x = jnp.pad(x, ((0, 0), (lo, hi), (0, 0), (0, 0), (0, 0)))
  out_t = -(-t // st)
  y = 0.0
  for dt in range(kt):
    frames = x[:, dt:dt + (out_t - 1) * st + 1:st].reshape(b * out_t, h, w, c)
    tap = jax.lax.conv_general_dilated(frames, kernel[dt], strides[1:], "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y + tap.reshape(b, out_t, *tap.shape[1:])
  return y


class Conv3D(nn.Module):
  """A 3-D convolution, SAME padding, no bias: lowered for a CPU as
  conv3d_by_taps, elsewhere as XLA's own 3-D convolution. Both are lax's, with
  one parameter layout; the choice is made when the program is lowered
  (platform_dependent), so an export for an accelerator holds the 3-D one."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1, 1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    strides = tuple(self.strides)
    return jax.lax.platform_dependent(
        x, kernel, cpu=lambda x, k: conv3d_by_taps(x, k, strides),
        default=lambda x, k: jax.lax.conv_general_dilated(
            x, k, strides, "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC")))


def _bn(train: bool, dtype, name: str):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=dtype, name=name)


class ResBlock(nn.Module):
  """conv-BN-ReLU, conv, plus the shortcut, BN-ReLU (shift_net's block2 / block3),
  in 1-D or 3-D by the kernel's length."""
  features: int
  kernel: Sequence[int]
  strides: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    def conv(f, k, s, name):
      if len(k) == 3:
        return Conv3D(f, tuple(k), tuple(s), dtype=self.dtype, name=name)
      return nn.Conv(f, tuple(k), strides=tuple(s), padding="SAME", use_bias=False,
                     dtype=self.dtype, name=name)
    ones = (1,) * len(self.kernel)
    short = x
    if tuple(self.strides) != ones or x.shape[-1] != self.features:
      short = conv(self.features, ones, self.strides, "short")(x)
    y = nn.relu(_bn(train, self.dtype, "bn1")(conv(self.features, self.kernel, self.strides,
                                                   "conv1")(x)))
    y = conv(self.features, self.kernel, ones, "conv2")(y)
    return nn.relu(_bn(train, self.dtype, "bn")(y + short))


class SyncNet(nn.Module):
  frame_input: ClassVar[str] = "frame_stack"   # [B, T, H, W, 3]
  audio_input: ClassVar[str] = "waveform"      # [B, samples]
  correspondence: ClassVar[str | None] = "sigmoid"  # see models.CORRESPONDENCE
  # Video: stem conv (kernel, strides), a (1, 3, 3) max-pool with spatial stride 2,
  # then residual blocks before the fusion.
  stem_width: int = 64
  stem_kernel: Sequence[int] = (5, 7, 7)
  stem_strides: Sequence[int] = (2, 2, 2)
  video_widths: Sequence[int] = (64, 64)
  video_strides: Sequence[Sequence[int]] = ((1, 1, 1), (2, 2, 2))
  # Sound: stem conv (kernel 65, stride 4) and a max-pool of 4, then residual
  # blocks of kernel 15, stride 4; `sound_fuse_width`: the conv over time at the fusion.
  sound_stem_width: int = 64
  sound_widths: Sequence[int] = (128, 128, 256)
  sound_fuse_width: int = 128
  # Fusion: 1x1x1 convs to `merge_hidden` then `merge_width` channels, plus a
  # shortcut of the first merge_width / 2 video and last merge_width / 2 sound ones.
  merge_hidden: int = 512
  merge_width: int = 128
  fused_widths: Sequence[int] = (128, 128, 256, 256, 512, 512)
  fused_strides: Sequence[Sequence[int]] = ((1, 1, 1), (1, 1, 1), (2, 2, 2), (1, 1, 1),
                                            (1, 1, 1), (1, 1, 1))
  mu: float = 255.0
  # How the logit map (averaged over time) becomes the clip's logit, see
  # maths.pool_map: "mean" is the paper's global average pooling; "topk"/"lse"/"max"
  # let the sounding object alone carry the decision.
  pooling: str = "mean"
  pooling_temperature: float = 1.0
  pooling_topk: float = 0.1
  dtype: Any = jnp.float32
  remat: bool = False  # config.model.remat: the residual blocks recompute their activations

  @nn.compact
  def __call__(self, frames, waveform, train: bool = False):
    block = vgg.remat_if(ResBlock, self.remat)
    if frames is None or waveform is None:
      raise ValueError("SyncNet fuses the two modalities early: it needs both frames and audio")
    d = self.dtype
    v = Conv3D(self.stem_width, tuple(self.stem_kernel), tuple(self.stem_strides), dtype=d,
               name="video_stem")(frames)
    v = nn.relu(_bn(train, d, "video_stem_bn")(v))
    v = nn.max_pool(v, (1, 3, 3), strides=(1, 2, 2), padding="SAME")
    for i, (w, s) in enumerate(zip(self.video_widths, self.video_strides)):
      v = block(w, (3, 3, 3), s, dtype=d, name=f"video_block{i}")(v, train)

    a = mu_law(waveform.astype(jnp.float32), self.mu).astype(d)[..., None]
    a = nn.Conv(self.sound_stem_width, (65,), strides=(4,), padding="SAME", use_bias=False,
                dtype=d, name="audio_stem")(a)
    a = nn.relu(_bn(train, d, "audio_stem_bn")(a))
    a = nn.max_pool(a, (4,), strides=(4,), padding="SAME")
    for i, w in enumerate(self.sound_widths):
      a = block(w, (15,), (4,), dtype=d, name=f"audio_block{i}")(a, train)
    steps, h, wd = v.shape[1:4]
    a = pool_to_steps(a, steps)
    a = nn.relu(_bn(train, d, "sound_bn")(nn.Conv(self.sound_fuse_width, (3,), padding="SAME",
                                                  use_bias=False, dtype=d, name="sound_conv")(a)))
    a = jnp.broadcast_to(a[:, :, None, None, :], (*a.shape[:2], h, wd, a.shape[-1]))

    x = jnp.concatenate([v, a], axis=-1)
    half = self.merge_width // 2
    short = jnp.concatenate([v[..., :half], a[..., -half:]], axis=-1)
    x = nn.relu(_bn(train, d, "merge1_bn")(Conv3D(self.merge_hidden, (1, 1, 1), dtype=d,
                                                  name="merge1")(x)))
    x = nn.Conv(self.merge_width, (1, 1, 1), dtype=d, name="merge2")(x)
    x = nn.relu(_bn(train, d, "merge_bn")(x + short))
    for i, (w, s) in enumerate(zip(self.fused_widths, self.fused_strides)):
      x = block(w, (3, 3, 3), s, dtype=d, name=f"fused_block{i}")(x, train)

    # The logit layer on every location: the CAM. Being linear, its mean over the
    # map equals the layer on the mean-pooled features (the paper's logit).
    cam = nn.Dense(1, dtype=d, name="logits")(x)[..., 0].astype(jnp.float32)  # [B, t, h, w]
    heatmap = jnp.mean(cam, axis=1)
    logits = maths.pool_map(heatmap, self.pooling, self.pooling_temperature, self.pooling_topk)
    return {"logits": logits, "cam": cam, "heatmap": heatmap,
            "fused_features": jnp.mean(x, axis=(1, 2, 3)).astype(jnp.float32)}
