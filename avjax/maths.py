"""Array maths that models, losses and evaluators share."""
from __future__ import annotations

import jax.numpy as jnp


def l2_normalize(x, axis=-1, eps=1e-12):
  x = x.astype(jnp.float32)
  return x / jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True) + eps)


def cosine_map(grid, vector):
  """Cosine similarity of each location of `grid` [B, H, W, D] with `vector` [B, D]."""
  return jnp.einsum("bhwd,bd->bhw", l2_normalize(grid), l2_normalize(vector))
