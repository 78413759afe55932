"""AVOL-Net (Arandjelovic & Zisserman, "Objects that Sound", ECCV 2018).

The 14x14 grid of visual embeddings is dotted with the audio embedding; a 1x1
conv (a scalar affine map) calibrates the scores, a sigmoid makes a localisation
map, and max-pooling over the map gives the correspondence score (multiple
instance learning: the clip corresponds if some location makes the sound).
`pooling` softens that max (see maths.pool_map), so that more of the object than its
single best cell is trained to light up.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from avjax import maths
from avjax.models import vgg


class AVOLNet(vgg.Towers):
  correspondence: ClassVar[str | None] = "sigmoid"  # see models.CORRESPONDENCE
  embed_dim: int = 128
  calibration: str = "default"   # "default" or "distance": positive slope, see ave.py
  calibration_scale: float = 10.0
  pooling: str = "max"              # see maths.pool_map
  pooling_temperature: float = 1.0  # "lse"
  pooling_topk: float = 0.1         # "topk": the fraction of map cells averaged
  vision_last_kernel: int = 3       # see vgg.VGGSubnet.last_kernel

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    """Either input may be None: then only the other modality's outputs are returned."""
    out = {}
    if frames is not None:
      v = self.subnet(self.vision_widths, "vision", last_kernel=self.vision_last_kernel)(frames, train)
      x = nn.relu(nn.Conv(self.embed_dim, (1, 1), dtype=self.dtype, name="vision_conv1")(v))
      v_grid = maths.l2_normalize(nn.Conv(self.embed_dim, (1, 1), dtype=self.dtype,
                                        name="vision_conv2")(x))       # [B, h, w, D]
      out.update(frame_embedding_map=v_grid,
                 frame_embedding=maths.l2_normalize(jnp.max(v_grid, axis=(1, 2))),
                 frame_features=vgg.global_max_pool(v).astype(jnp.float32),
                 frame_feature_map=v)
    if spectrogram is not None:
      out.update(vgg.audio_embedding_branch(self, spectrogram, train=train))
    if frames is None or spectrogram is None:
      return out
    scores = jnp.einsum("bhwd,bd->bhw", out["frame_embedding_map"], out["audio_embedding"])
    if self.calibration == "distance":
      scale, bias = self.calibration_scale, -self.calibration_scale * 0.5
      w = self.param("calibration_scale", lambda k: jnp.array(scale, jnp.float32))
      b = self.param("calibration_bias", lambda k: jnp.array(bias, jnp.float32))
    elif self.calibration == "default":
      w = self.param("calibration_scale", nn.initializers.normal(1.0), ())
      b = self.param("calibration_bias", nn.initializers.zeros, ())
    else:
      raise ValueError(f"config.model.calibration: unknown {self.calibration!r}")
    logit_map = w * scores + b
    return {**out,
            # Pooled logits (for max, the same as max-pooling the sigmoid map).
            "logits": maths.pool_map(logit_map, self.pooling, self.pooling_temperature,
                                     self.pooling_topk),
            "heatmap": nn.sigmoid(logit_map)}
