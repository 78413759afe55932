"""Pure, keyword-only losses over (model outputs, batch), chosen by name.

Each returns per-example values with `reduction=False`, else the mean over the
examples that `batch["mask"]` keeps (all, when there is no mask).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _mask(batch, n):
  return batch.get("mask", jnp.ones((n,), jnp.float32)).astype(jnp.float32)


def _reduce(per_example, weights, reduction):
  if not reduction:
    return per_example
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def avc_softmax_xent(*, outputs, batch, reduction=True):
  """2-way softmax cross-entropy on `logits` [B, 2] against `label` (L3, AVE)."""
  logits = outputs["logits"].astype(jnp.float32)
  per = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def avc_sigmoid_xent(*, outputs, batch, reduction=True):
  """Binary cross-entropy on the max-pooled correspondence logit [B] (AVOL)."""
  logits = outputs["logits"].astype(jnp.float32)
  per = optax.sigmoid_binary_cross_entropy(logits, batch["label"].astype(jnp.float32))
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def pair_similarities(outputs):
  """[B, B] similarity of frame i with audio j from a model's embeddings.

  With an embedding map (AVOL), the similarity is the best location's score,
  the same multiple-instance rule the model uses for its own output.
  """
  a = outputs["audio_embedding"].astype(jnp.float32)
  if "frame_embedding_map" in outputs:
    v = outputs["frame_embedding_map"].astype(jnp.float32)
    return jnp.max(jnp.einsum("ihwd,jd->ijhw", v, a), axis=(2, 3))
  return outputs["frame_embedding"].astype(jnp.float32) @ a.T


def infonce(*, outputs, batch, temperature=0.1, reduction=True):
  """Bidirectional InfoNCE over the corresponding pairs of the batch.

  Rows with `label` 1 are positives; every other corresponding pair's audio (or
  frame) serves as a negative, so one batch gives B-1 negatives per positive.
  """
  sim = pair_similarities(outputs) / temperature
  n = sim.shape[0]
  valid = (batch["label"] == 1).astype(jnp.float32) * _mask(batch, n)
  big_neg = jnp.finfo(jnp.float32).min / 4
  sim = jnp.where(valid[None, :] > 0, sim, big_neg)
  diag = jnp.diagonal(sim)
  v2a = jax.nn.logsumexp(sim, axis=1) - diag
  a2v = jax.nn.logsumexp(jnp.where(valid[:, None] > 0, sim, big_neg), axis=0) - diag
  per = 0.5 * (v2a + a2v)
  per = jnp.where(valid > 0, per, 0.0)
  return _reduce(per, valid, reduction)


LOSSES = {
    "avc_softmax_xent": avc_softmax_xent,
    "avc_sigmoid_xent": avc_sigmoid_xent,
    "infonce": infonce,
}


def get(name):
  if name not in LOSSES:
    raise ValueError(f"config.losses: unknown loss {name!r}; known: {sorted(LOSSES)}")
  return LOSSES[name]


def avc_predictions(outputs):
  """Predicted correspondence (1/0) from either head type."""
  logits = outputs["logits"]
  if logits.ndim == 2:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return (logits > 0).astype(jnp.int32)
