"""The VGG-style audio and vision subnetworks of L3-Net and "Objects that Sound".

Four blocks of [conv3x3-BN-ReLU, conv3x3-BN-ReLU, maxpool2], the first conv with
stride 2 and the last block without pooling: a 224x224 frame becomes 14x14x512,
a 257x199 log-spectrogram 16x12x512.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from avjax import maths
from avjax.models import conv as conv_lib


def remat_if(module_class, remat: bool):
  """`module_class`, or its rematerialised form (nn.remat: activations recomputed
  in the backward pass instead of stored) when `remat`. Its __call__ must be
  (x, train): `train` is static. Parameter names do not change."""
  return nn.remat(module_class, static_argnums=(2,)) if remat else module_class


class ConvBNReLU(nn.Module):
  features: int
  strides: int = 1
  kernel: int = 3
  dtype: Any = jnp.float32
  conv: str = "xla"  # config.model.conv: which kernels (avjax/models/conv.py)

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.strides, padding="SAME",
                use_bias=False, dtype=self.dtype, kernel_init=nn.initializers.kaiming_normal(),
                conv_general_dilated=conv_lib.ops(self.conv)[0])(x)
    # Statistics over the whole (global) batch: under jit on a mesh the mean is
    # taken over the sharded batch axis, so every device sees the same numbers.
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
    return nn.relu(x)


class VGGSubnet(nn.Module):
  """[B, H, W, C] -> [B, H', W', widths[-1]] feature map."""
  widths: Sequence[int] = (64, 128, 256, 512)
  first_stride: int = 2
  # The last block's kernel: 1 keeps its width and depth but stops it widening
  # what each output location sees (at a 64 px frame with three blocks, 29 px
  # instead of 61 px), so a localisation map spills less past the object.
  last_kernel: int = 3
  dtype: Any = jnp.float32
  conv: str = "xla"
  remat: bool = False  # config.model.remat: recompute each layer's activations in the backward

  @nn.compact
  def __call__(self, x, train: bool):
    x = x.astype(self.dtype)
    layer = remat_if(ConvBNReLU, self.remat)
    for i, width in enumerate(self.widths):
      kernel = self.last_kernel if i == len(self.widths) - 1 else 3
      x = layer(width, strides=self.first_stride if i == 0 else 1, kernel=kernel,
                dtype=self.dtype, conv=self.conv, name=f"block{i}_conv0")(x, train)
      x = layer(width, kernel=kernel, dtype=self.dtype, conv=self.conv,
                name=f"block{i}_conv1")(x, train)
      if i < len(self.widths) - 1:
        x = conv_lib.ops(self.conv)[1](x)
    return x


class Towers(nn.Module):
  """The fields every two-tower model shares: the VGG widths of each subnetwork
  the compute dtype (parameters stay float32), the convolutions' kernels
  (config.model.conv) and rematerialisation (config.model.remat)."""
  vision_widths: Sequence[int] = (64, 128, 256, 512)
  audio_widths: Sequence[int] = (64, 128, 256, 512)
  dtype: Any = jnp.float32
  conv: str = "xla"
  remat: bool = False

  def subnet(self, widths: Sequence[int], name: str, **kwargs) -> VGGSubnet:
    """A VGG subnetwork of this model, with its compute dtype, convolutions and remat."""
    return VGGSubnet(widths, dtype=self.dtype, conv=self.conv, remat=self.remat, name=name,
                     **kwargs)


def global_max_pool(x):
  return jnp.max(x, axis=(1, 2))


class EmbeddingHead(nn.Module):
  """max-pooled features -> FC-ReLU-FC -> L2-normalised embedding (AVE/AVOL)."""
  hidden: int = 128
  dim: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled):
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(pooled))
    return maths.l2_normalize(nn.Dense(self.dim, dtype=self.dtype, name="fc2")(x))


def audio_embedding_branch(model: Towers, spectrogram, *, train: bool):
  """AVE-Net's, AVOL-Net's and SeLaVi's audio side, called inside their compact __call__ (the
  submodules are theirs, named `audio` and `audio_head`): -> audio_embedding and
  the max-pooled audio_features."""
  pooled = global_max_pool(model.subnet(model.audio_widths, "audio")(spectrogram, train))
  head = EmbeddingHead(model.embed_dim, model.embed_dim, dtype=model.dtype, name="audio_head")
  return {"audio_embedding": head(pooled), "audio_features": pooled.astype(jnp.float32)}
