"""AVE-Net (Arandjelovic & Zisserman, "Objects that Sound", ECCV 2018).

Correspondence through the Euclidean distance between two L2-normalised 128-D
embeddings, calibrated by a 1->2 fully connected layer; the embeddings serve
cross-modal retrieval.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import vgg


def calibration_init(scale: float, offset: float):
  """Initialises the 1->2 calibration so that logit(match) - logit(mismatch) =
  scale * (offset - distance): small distances start out as "match".

  With Flax's default init the sign of that slope is random, and on half of the
  seeds the network first has to undo it (one cause of the 50% plateau).
  """
  def kernel(key, shape, dtype=jnp.float32):
    del key
    return jnp.array([[scale / 2, -scale / 2]], dtype).reshape(shape)

  def bias(key, shape, dtype=jnp.float32):
    del key
    return jnp.array([-scale * offset / 2, scale * offset / 2], dtype).reshape(shape)

  return kernel, bias


class AVENet(nn.Module):
  vision_widths: Sequence[int] = (64, 128, 256, 512)
  audio_widths: Sequence[int] = (64, 128, 256, 512)
  embed_dim: int = 128
  calibration: str = "default"   # "default" (Flax init) or "distance" (see calibration_init)
  calibration_scale: float = 5.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    v = vgg.VGGSubnet(self.vision_widths, dtype=self.dtype, name="vision")(frames, train)
    a = vgg.VGGSubnet(self.audio_widths, dtype=self.dtype, name="audio")(spectrogram, train)
    v_emb = vgg.EmbeddingHead(self.embed_dim, self.embed_dim, dtype=self.dtype,
                              name="vision_head")(vgg.global_max_pool(v))
    a_emb = vgg.EmbeddingHead(self.embed_dim, self.embed_dim, dtype=self.dtype,
                              name="audio_head")(vgg.global_max_pool(a))
    distance = jnp.sqrt(jnp.sum((v_emb - a_emb) ** 2, axis=-1, keepdims=True) + 1e-12)
    if self.calibration == "distance":
      # Unit embeddings lie at distance 0..2; random pairs sit near sqrt(2).
      k_init, b_init = calibration_init(self.calibration_scale, jnp.sqrt(2.0))
      dense = nn.Dense(2, kernel_init=k_init, bias_init=b_init, name="calibration")
    elif self.calibration == "default":
      dense = nn.Dense(2, name="calibration")
    else:
      raise ValueError(f"config.model.calibration: unknown {self.calibration!r}")
    logits = dense(distance)
    return {"logits": logits, "distance": distance[:, 0], "frame_embedding": v_emb,
            "audio_embedding": a_emb, "frame_feature_map": v}
