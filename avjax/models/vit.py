"""A small Vision Transformer, shaped like big_vision's models/vit.py: patch
embedding by a strided convolution, fixed 2-D sin-cos position embeddings, pre-LN
encoder blocks (multi-head self-attention, then a GELU MLP), a final LayerNorm.
No class token: what pools the tokens is the caller's (MAE mean-pools them).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
  """[1, h * w, width] fixed position embeddings (big_vision's posemb_sincos_2d)."""
  if width % 4:
    raise ValueError(f"ViT width {width} must be a multiple of 4 for sin-cos embeddings")
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
  y = y.reshape(-1)[:, None] * omega[None]
  x = x.reshape(-1)[:, None] * omega[None]
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)[None].astype(
      np.float32)


class MlpBlock(nn.Module):
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    x = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x))
    return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


class EncoderBlock(nn.Module):
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(dtype=self.dtype, name="ln1")(x)
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype,
                                        name="attention")(y, y)
    x = x + y
    y = nn.LayerNorm(dtype=self.dtype, name="ln2")(x)
    return x + MlpBlock(self.mlp_dim, dtype=self.dtype, name="mlp")(y)


class Encoder(nn.Module):
  """[B, N, D] tokens -> [B, N, D]: `depth` blocks, then a LayerNorm."""
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x):
    block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
    for i in range(self.depth):
      x = block(self.num_heads, self.mlp_dim, dtype=self.dtype, name=f"block{i}")(x)
    return nn.LayerNorm(dtype=self.dtype, name="ln")(x)


class PatchEmbed(nn.Module):
  """[B, H, W, C] -> ([B, h * w, width] tokens with position embeddings, (h, w))."""
  patch: int
  width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images):
    x = nn.Conv(self.width, (self.patch, self.patch), strides=(self.patch, self.patch),
                padding="VALID", dtype=self.dtype, name="embedding")(images)
    b, h, w, c = x.shape
    return x.reshape(b, h * w, c) + posemb_sincos_2d(h, w, c).astype(x.dtype), (h, w)
