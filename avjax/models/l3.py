"""L3-Net (Arandjelovic & Zisserman, "Look, Listen and Learn", ICCV 2017).

Both subnetworks are max-pooled to a vector, concatenated, and two FC layers
decide whether the frame and the sound correspond.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from avjax import maths
from avjax.models import vgg


class L3Net(vgg.Towers):
  correspondence: ClassVar[str | None] = "softmax"  # see models.CORRESPONDENCE
  fusion_hidden: int = 128
  # > 0 adds linear heads to L2-normalised embeddings of this size, used only by
  # the InfoNCE term (config.losses.infonce): L3 itself has no embedding space.
  contrastive_dim: int = 0

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    """Either input may be None: then only the other modality's outputs are returned."""
    out = {}
    if frames is not None:
      v = self.subnet(self.vision_widths, "vision")(frames, train)
      out.update(frame_features=vgg.global_max_pool(v).astype(jnp.float32), frame_feature_map=v)
      if self.contrastive_dim:
        proj = nn.Dense(self.contrastive_dim, dtype=self.dtype, name="vision_proj")
        out["frame_embedding"] = maths.l2_normalize(proj(vgg.global_max_pool(v)))
        out["frame_location_embeddings"] = maths.l2_normalize(proj(v))
    if spectrogram is not None:
      a = self.subnet(self.audio_widths, "audio")(spectrogram, train)
      out["audio_features"] = vgg.global_max_pool(a).astype(jnp.float32)
      if self.contrastive_dim:
        out["audio_embedding"] = maths.l2_normalize(
            nn.Dense(self.contrastive_dim, dtype=self.dtype, name="audio_proj")(
                vgg.global_max_pool(a)))
    if frames is None or spectrogram is None:
      return out
    x = jnp.concatenate([out["frame_features"], out["audio_features"]], axis=-1).astype(self.dtype)
    x = nn.relu(nn.Dense(self.fusion_hidden, dtype=self.dtype, name="fusion_fc1")(x))
    out["logits"] = nn.Dense(2, dtype=self.dtype, name="fusion_fc2")(x).astype(jnp.float32)
    return out
