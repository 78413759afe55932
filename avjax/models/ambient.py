"""Ambient sound as supervision (Owens, Wu, McDermott, Freeman, Torralba, ECCV 2016).

A frame-only network: the VGG vision subnetwork, max-pooled, then FC-ReLU-FC to
`num_targets` outputs that predict the frame's clip's sound statistics, as a
cluster (softmax, losses.sound_cluster_xent) or as the bits of the paper's
binary code (per-bit sigmoid, losses.sound_bits_xent). The audio is never an
input: it only made the targets (data_pipelines/sound_targets.py).
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from avjax import maths
from avjax.models import vgg


class AmbientSound(vgg.Towers):
  correspondence: ClassVar[str | None] = None  # see models.CORRESPONDENCE
  num_targets: int = 30
  hidden: int = 128

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    del spectrogram  # the sound only made the targets
    if frames is None:
      return {}
    v = self.subnet(self.vision_widths, "vision")(frames, train)
    pooled = vgg.global_max_pool(v)
    h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="sound_fc1")(pooled))
    logits = nn.Dense(self.num_targets, dtype=self.dtype, name="sound_fc2")(h)
    return {"frame_features": pooled.astype(jnp.float32), "frame_embedding": maths.l2_normalize(h.astype(jnp.float32)),
            "sound_logits": logits.astype(jnp.float32)}
