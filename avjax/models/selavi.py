"""SeLaVi (Asano et al., "Labelling unlabelled videos from scratch with multi-modal
self-supervision", NeurIPS 2020) on the VGG subnetworks.

Each modality's max-pooled features go through an embedding head and then
`num_heads` linear cluster heads of `num_clusters` clusters. Both modalities of a
clip must predict one pseudo-label per head, the Sinkhorn-Knopp equipartition of
their joint log-probabilities (`avjax.losses.selavi`); equipartition is what keeps
the clusters from collapsing into one. This is the online form of the method: the
labelling runs on each global batch (as in SwAV) instead of over the whole
dataset between epochs, so it needs no label store and resumes exactly.

Modality drop-out: while training, each example's labelling scores come from one
modality alone with probability `modality_dropout` (either one, equally often),
so that each modality's heads must be able to label a clip by themselves.
"""
from __future__ import annotations

import statistics
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avjax import maths
from avjax.models import vgg


class ClusterHeads(nn.Module):
  """Unit embedding [B, D] -> logits [heads, B, clusters]: cosine similarity to each
  head's unit-norm prototypes over `temperature`. Unit prototypes and no bias
  keep the logits bounded, so no cluster can win every example by growing its
  weights or bias (which an unconstrained Dense head learned, and the labelling
  then followed it into one cluster)."""
  num_heads: int
  num_clusters: int
  temperature: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, embedding):
    d = embedding.shape[-1]
    prototypes = self.param("prototypes", nn.initializers.normal(1.0),
                            (self.num_heads, d, self.num_clusters), jnp.float32)
    prototypes = maths.l2_normalize(prototypes, axis=1)
    logits = jnp.einsum("bd,hdk->hbk", embedding.astype(jnp.float32), prototypes)
    return logits / self.temperature


def modality_keep(rng, n: int, dropout: float):
  """[n, 2] float (frame, audio): 1 = the modality labels this example. With
  probability `dropout` one of the two (either, equally often) is dropped."""
  drop_rng, which_rng = jax.random.split(rng)
  drop = jax.random.uniform(drop_rng, (n,)) < dropout
  audio_only = jax.random.uniform(which_rng, (n,)) < 0.5
  frame = jnp.where(drop & audio_only, 0.0, 1.0)
  audio = jnp.where(drop & ~audio_only, 0.0, 1.0)
  return jnp.stack([frame, audio], axis=-1)


MARGINALS = ("uniform", "gauss", "zipf")


def cluster_prior(kind: str, k: int, *, sd: float, exponent: float) -> np.ndarray:
  """Relative cluster sizes [k], largest first, that the labelling aims at.

  gauss: SeLaVi's released option, sizes ~ N(1, sd); here its k quantiles
  rather than one random draw, so every seed and resume aims at the same
  sizes. zipf: size of the i-th largest proportional to i^-exponent.
  """
  if kind == "uniform":
    return np.ones(k)
  if kind == "gauss":
    q = [statistics.NormalDist(1.0, sd).inv_cdf((i + 0.5) / k) for i in range(k)]
    return np.maximum(np.sort(q)[::-1], 1e-3)  # sizes stay positive for a wide sd
  if kind == "zipf":
    return np.arange(1, k + 1, dtype=np.float64) ** -exponent
  raise ValueError(f"config.model.marginals={kind!r}: must be one of {MARGINALS}")


class SeLaVi(vgg.Towers):
  correspondence: ClassVar[str | None] = None  # no AVC head; see models.CORRESPONDENCE
  embed_dim: int = 128
  num_heads: int = 10
  num_clusters: int = 400
  temperature: float = 0.1
  modality_dropout: float = 0.5
  # The cluster sizes the Sinkhorn labelling aims at (cluster_prior).
  marginals: str = "uniform"
  marginal_sd: float = 0.1
  zipf_exponent: float = 1.0

  def __post_init__(self):
    cluster_prior(self.marginals, self.num_clusters, sd=self.marginal_sd,
                  exponent=self.zipf_exponent)  # a bad setting fails when the model is built
    super().__post_init__()

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    """Either input may be None (one-modality outputs, for embedding extraction).

    `<modality>_cluster_logits` is head 0 (the clustering evaluator's
    assignments); `<modality>_head_logits` [heads, B, clusters] holds them all.
    """
    out = {}
    heads = lambda name: ClusterHeads(self.num_heads, self.num_clusters, self.temperature,
                                      dtype=self.dtype, name=name)
    if frames is not None:
      pooled = vgg.global_max_pool(
          self.subnet(self.vision_widths, "vision")(frames, train))
      emb = vgg.EmbeddingHead(self.embed_dim, self.embed_dim, dtype=self.dtype,
                              name="vision_head")(pooled)
      out.update(frame_embedding=emb, frame_features=pooled.astype(jnp.float32),
                 frame_head_logits=heads("vision_clusters")(emb))
    if spectrogram is not None:
      out.update(vgg.audio_embedding_branch(self, spectrogram, train=train))
      out["audio_head_logits"] = heads("audio_clusters")(out["audio_embedding"])
    for m in ("frame", "audio"):
      if f"{m}_head_logits" in out:
        out[f"{m}_cluster_logits"] = out[f"{m}_head_logits"][0]
    if self.marginals != "uniform":
      out["cluster_prior"] = jnp.asarray(cluster_prior(
          self.marginals, self.num_clusters, sd=self.marginal_sd, exponent=self.zipf_exponent),
          jnp.float32)
    if frames is not None and spectrogram is not None:
      n = frames.shape[0]
      out["modality_keep"] = (modality_keep(self.make_rng("dropout"), n, self.modality_dropout)
                              if train and self.modality_dropout > 0 else jnp.ones((n, 2)))
    return out
