"""Random image augmentations inside the jitted step, for the pretext tasks that
make their own views of a frame (SimCLR's and the exemplars' views). Pure
functions of a key and a batch of normalised frames [B, H, W, 3]
(avjax/frames.py's normalisation, flip and colour jitter); each example draws
its own.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from avjax import frames as frames_lib


def crop_box(key, batch: int, *, scale: tuple[float, float], ratio: tuple[float, float]):
  """Random boxes of `scale` of the area and aspect `ratio` (log-uniform), as
  fractions (y0, x0, h, w) of the frame: Inception's random resized crop, clipped
  to the frame."""
  ks = jax.random.split(key, 4)
  area = jax.random.uniform(ks[0], (batch,), minval=scale[0], maxval=scale[1])
  log_r = jax.random.uniform(ks[1], (batch,), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
  h = jnp.clip(jnp.sqrt(area / jnp.exp(log_r)), 0.0, 1.0)
  w = jnp.clip(jnp.sqrt(area * jnp.exp(log_r)), 0.0, 1.0)
  y0 = jax.random.uniform(ks[2], (batch,)) * (1.0 - h)
  x0 = jax.random.uniform(ks[3], (batch,)) * (1.0 - w)
  return y0, x0, h, w


def resized_crop(x, y0, x0, h, w):
  """[B, S, S, C] and boxes -> each box bilinearly resampled to S x S."""
  size = x.shape[1]

  def one(img, y0, x0, h, w):
    scale = jnp.stack([1.0 / h, 1.0 / w])
    translate = -jnp.stack([y0, x0]) * size * scale
    return jax.image.scale_and_translate(img, img.shape, (0, 1), scale, translate, "linear",
                                         antialias=False)

  return jax.vmap(one)(x, y0, x0, h, w)


def colour_distort(key, x, *, strength: float, p_jitter: float = 0.8, p_grey: float = 0.2):
  """SimCLR's colour distortion on normalised frames: brightness, contrast and
  saturation jitter of `strength` with probability p_jitter, then grey with
  probability p_grey. (SimCLR's hue jitter is left out: no hue rotation here.)"""
  b = x.shape[0]
  ks = jax.random.split(key, 5)
  s = 0.8 * strength
  u = lambda k: jax.random.uniform(k, (b,), minval=1 - s, maxval=1 + s)
  jitter = jax.random.uniform(ks[3], (b,)) < p_jitter
  one = jnp.ones((b,))
  brightness = jnp.where(jitter, u(ks[0]) - 1.0, 0.0)
  contrast = jnp.where(jitter, u(ks[1]), one)
  saturation = jnp.where(jitter, u(ks[2]), one)
  saturation = jnp.where(jax.random.uniform(ks[4], (b,)) < p_grey, 0.0, saturation)
  unit = frames_lib.jitter_colours(frames_lib.denormalise(x), brightness, contrast, saturation)
  return frames_lib.normalise(unit)


def random_flip(key, x):
  return frames_lib.flip_where(x, jax.random.uniform(key, (x.shape[0],)) < 0.5)


def simclr_view(key, x, *, scale: tuple[float, float], strength: float):
  """One SimCLR view of each frame: random resized crop (aspect 3/4..4/3), flip,
  colour distortion."""
  ks = jax.random.split(key, 3)
  x = resized_crop(x, *crop_box(ks[0], x.shape[0], scale=scale, ratio=(3 / 4, 4 / 3)))
  return colour_distort(ks[2], random_flip(ks[1], x), strength=strength)
