"""AVE-Net (Arandjelovic & Zisserman, "Objects that Sound", ECCV 2018).

Correspondence through the Euclidean distance between two L2-normalised 128-D
embeddings, calibrated by a 1->2 fully connected layer; the embeddings serve
cross-modal retrieval.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
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


class AVENet(vgg.Towers):
  correspondence: ClassVar[str | None] = "softmax"  # see models.CORRESPONDENCE
  embed_dim: int = 128
  calibration: str = "default"   # "default" (Flax init) or "distance" (see calibration_init)
  calibration_scale: float = 5.0
  # > 0: one linear classifier shared by both embeddings (`<modality>_class_logits`),
  # for the labelled cosine-embedding baseline's classification term.
  classifier_classes: int = 0

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    """Either input may be None: then only the other modality's outputs are returned
    (embedding extraction), and the correspondence outputs are left out."""
    out = {}
    if frames is not None:
      v = self.subnet(self.vision_widths, "vision")(frames, train)
      head = vgg.EmbeddingHead(self.embed_dim, self.embed_dim, dtype=self.dtype, name="vision_head")
      out.update(frame_embedding=head(vgg.global_max_pool(v)),
                 frame_features=vgg.global_max_pool(v).astype(jnp.float32),
                 frame_feature_map=v,
                 # The head at every location: a similarity map for localisation.
                 frame_location_embeddings=head(v))
    if spectrogram is not None:
      out.update(vgg.audio_embedding_branch(self, spectrogram, train=train))
    if self.classifier_classes:
      classifier = nn.Dense(self.classifier_classes, name="shared_classifier")
      for m in ("frame", "audio"):
        if f"{m}_embedding" in out:
          out[f"{m}_class_logits"] = classifier(out[f"{m}_embedding"]).astype(jnp.float32)
    if frames is None or spectrogram is None:
      return out
    v_emb, a_emb = out["frame_embedding"], out["audio_embedding"]
    distance = jnp.sqrt(jnp.sum((v_emb - a_emb) ** 2, axis=-1, keepdims=True) + 1e-12)
    if self.calibration == "distance":
      # Unit embeddings lie at distance 0..2; random pairs sit near sqrt(2).
      k_init, b_init = calibration_init(self.calibration_scale, jnp.sqrt(2.0))
      dense = nn.Dense(2, kernel_init=k_init, bias_init=b_init, name="calibration")
    elif self.calibration == "default":
      dense = nn.Dense(2, name="calibration")
    else:
      raise ValueError(f"config.model.calibration: unknown {self.calibration!r}")
    return {**out, "logits": dense(distance), "distance": distance[:, 0]}
