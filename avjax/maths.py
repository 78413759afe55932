"""Array maths that models, losses and evaluators share."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x, axis=-1, eps=1e-12):
  x = x.astype(jnp.float32)
  return x / jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True) + eps)


def cosine_map(grid, vector):
  """Cosine similarity of each location of `grid` [B, H, W, D] with `vector` [B, D]."""
  return jnp.einsum("bhwd,bd->bhw", l2_normalize(grid), l2_normalize(vector))


POOLINGS = ("max", "lse", "topk", "mean")


def pool_map(logit_map, pooling: str, temperature: float = 1.0, topk: float = 0.1, *,
             key: str = "config.model.pooling"):
  """[..., h, w] map -> [...]: a map of locations pooled into one score (a
  correspondence logit, a pair's similarity). `key` names the setting in errors.

  "max": the paper's. "lse": temperature * log(mean(exp(map / temperature))),
  a smooth max that tends to max as temperature -> 0 and to the mean as it
  grows. "topk": the mean of the `topk` fraction of highest cells (at least one).
  "mean": global average pooling (the CAM papers', where every cell counts).
  """
  flat = logit_map.reshape(*logit_map.shape[:-2], -1)
  if pooling == "max":
    return jnp.max(flat, axis=-1)
  if pooling == "lse":
    return temperature * (jax.nn.logsumexp(flat / temperature, axis=-1) - jnp.log(flat.shape[-1]))
  if pooling == "topk":
    k = max(1, int(round(topk * flat.shape[-1])))
    return jnp.mean(jax.lax.top_k(flat, k)[0], axis=-1)
  if pooling == "mean":
    return jnp.mean(flat, axis=-1)
  raise ValueError(f"{key}: unknown {pooling!r} (one of {', '.join(POOLINGS)})")
