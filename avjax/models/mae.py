"""Masked autoencoders (He, Chen, Xie, Li, Dollár & Girshick, "Masked Autoencoders
Are Scalable Vision Learners", CVPR 2022): an image pretext baseline on a small ViT
(avjax/models/vit.py) instead of the VGG tower.

A frame is cut into patches; the encoder sees a random 25% of them (with their
position embeddings), a light decoder gets the encoded tokens back in place,
mask tokens elsewhere, and reconstructs every patch's pixels. The loss is the
mean squared error on the masked patches only, against each patch's pixels
normalised by its own mean and variance (losses.mae_pixels; `norm_pixels`). The probe reads the
encoder's tokens of the whole, unmasked frame, mean-pooled (`frame_features`).
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import vit


def patchify(images, patch: int):
  """[B, H, W, C] -> [B, (H / p) * (W / p), p * p * C], patches in row-major order."""
  b, h, w, c = images.shape
  if h % patch or w % patch:
    raise ValueError(f"MAE: a {h}x{w} frame is not whole {patch} px patches")
  x = images.reshape(b, h // patch, patch, w // patch, patch, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def random_masking(key, batch: int, num_patches: int, mask_ratio: float):
  """-> (kept [B, K] patch indices, hidden [B, N - K], restore [B, N]): each row a
  uniformly random split of the patches, K = round(N (1 - mask_ratio)); `restore`
  puts the concatenation kept ++ hidden back in patch order."""
  keep = int(round(num_patches * (1.0 - mask_ratio)))
  if not 0 < keep < num_patches:
    raise ValueError(f"MAE: mask ratio {mask_ratio} of {num_patches} patches keeps {keep}")
  order = jnp.argsort(jax.random.uniform(key, (batch, num_patches)), axis=1)
  return order[:, :keep], order[:, keep:], jnp.argsort(order, axis=1)


def normalised_patches(patches, eps: float = 1e-6):
  """Each patch's pixels less their mean, over their standard deviation (the paper's
  normalised-pixel target)."""
  mean = jnp.mean(patches, axis=-1, keepdims=True)
  var = jnp.var(patches, axis=-1, keepdims=True)
  return (patches - mean) / jnp.sqrt(var + eps)


class MAE(nn.Module):
  correspondence: ClassVar[str | None] = None
  patch: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  decoder_width: int = 512
  decoder_depth: int = 8
  decoder_heads: int = 16
  mask_ratio: float = 0.75
  # The paper's target: each patch's pixels normalised by its own mean and
  # variance; False: the pixels as they are (where flat patches hold only noise,
  # normalising turns that noise into the target).
  norm_pixels: bool = True
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    del spectrogram
    if frames is None:
      return {}
    tokens, (h, w) = vit.PatchEmbed(self.patch, self.width, dtype=self.dtype,
                                    name="patch_embed")(frames)
    encoder = vit.Encoder(self.depth, self.num_heads, self.mlp_dim, dtype=self.dtype,
                          remat=self.remat, name="encoder")
    if not train:  # the whole frame; the decoder runs so that init makes it
      encoded = encoder(tokens)
      self.decode(encoded, jnp.broadcast_to(jnp.arange(h * w), encoded.shape[:2]), (h, w))
      return {"frame_features": jnp.mean(encoded, axis=1).astype(jnp.float32)}
    b, n = tokens.shape[:2]
    kept, hidden, restore = random_masking(self.make_rng("dropout"), b, n, self.mask_ratio)
    encoded = encoder(jnp.take_along_axis(tokens, kept[..., None], axis=1))
    predicted = self.decode(encoded, restore, (h, w))                      # [B, N, p*p*3]
    target = patchify(frames.astype(jnp.float32), self.patch)
    if self.norm_pixels:
      target = normalised_patches(target)
    masked = jnp.zeros((b, n), jnp.float32).at[jnp.arange(b)[:, None], hidden].set(1.0)
    return {"mae_predictions": predicted.astype(jnp.float32), "mae_targets": target,
            "mae_mask": masked}

  @nn.compact
  def decode(self, encoded, restore, hw):
    """Encoded visible tokens [B, K, D] -> pixel predictions of all N patches."""
    b, k = encoded.shape[:2]
    n = restore.shape[1]
    x = nn.Dense(self.decoder_width, dtype=self.dtype, name="decoder_embed")(encoded)
    mask_token = self.param("mask_token", nn.initializers.normal(0.02),
                            (1, 1, self.decoder_width), jnp.float32)
    x = jnp.concatenate([x, jnp.broadcast_to(mask_token.astype(x.dtype),
                                             (b, n - k, self.decoder_width))], axis=1)
    x = jnp.take_along_axis(x, restore[..., None], axis=1)                 # patch order
    x = x + vit.posemb_sincos_2d(*hw, self.decoder_width).astype(x.dtype)
    x = vit.Encoder(self.decoder_depth, self.decoder_heads, 4 * self.decoder_width,
                    dtype=self.dtype, name="decoder")(x)
    return nn.Dense(self.patch * self.patch * 3, dtype=self.dtype, name="decoder_pred")(x)
