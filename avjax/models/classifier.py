"""A supervised frame classifier: the VGG vision subnetwork, max-pooled, then a
linear layer to the data's classes (losses.frame_class_xent).

It is a teacher for SoundNet (models/soundnet.py), as the paper's ImageNet and
Places CNNs were: class labels train the teacher only, never the sound network.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from avjax.models import vgg


class FrameClassifier(vgg.Towers):
  correspondence: ClassVar[str | None] = None  # see models.CORRESPONDENCE
  classifier_classes: int = 0

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    del spectrogram
    if frames is None:
      return {}
    if self.classifier_classes < 1:
      raise ValueError("config.model.classifier_classes must be the data's number of classes")
    v = self.subnet(self.vision_widths, "vision")(frames, train)
    pooled = vgg.global_max_pool(v)
    logits = nn.Dense(self.classifier_classes, dtype=self.dtype, name="classifier")(pooled)
    return {"frame_features": pooled.astype(jnp.float32),
            "frame_class_logits": logits.astype(jnp.float32)}
