"""Frames from the reader's uint8 crops to the models' float32 input, on device.

The reader ships uint8 crops and each frame's random draws (`aug_*` keys); the
jitted step (avjax/step_inputs.py) flips, colour-jitters and normalises them
with these functions, where XLA fuses the per-pixel arithmetic into one pass.
In tf.data these unfused float ops cost as much as decoding the JPEG, and
shipping uint8 moves a quarter of the bytes to the accelerator. Frames that are
already float pass through unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # tf.image.rgb_to_grayscale's


def colour_matrix(brightness, contrast, saturation, channel_mean):
  """The jitter as one affine map x -> x @ M + o on [0, 1] RGB.

  brightness adds a constant; contrast scales around the image's per-channel
  mean (as tf.image.adjust_contrast); saturation blends with the grey image (as
  PIL's ImageEnhance.Color). Composed, they are linear. Scalars (and a mean [3])
  give M [3, 3] and o [3]; leading batch dimensions carry through.
  """
  brightness, contrast, saturation = (jnp.asarray(v, jnp.float32)
                                      for v in (brightness, contrast, saturation))
  s = saturation[..., None, None]
  sat = s * jnp.eye(3) + (1.0 - s) * jnp.asarray(GREY_WEIGHTS)[None, :]   # out x in
  # contrast: c * (x + b - (m + b)) + (m + b) = c * x + (1 - c) * m + b
  offset = (1.0 - contrast[..., None]) * channel_mean + brightness[..., None]
  m = jnp.swapaxes(sat, -1, -2) * contrast[..., None, None]               # x_row @ m
  return m, jnp.einsum("...ij,...j->...i", sat, offset)


def zoom_out(x, zoom):
  """[B, H, W, 3] on [0, 1], zoom [B, 3] = (scale s, y, x in [0, 1]) -> each frame
  shrunk by s (antialiased) and placed s-sized at (y, x) of the room left, on a
  canvas of its mean colour: objects as they would look from further away."""
  h, w = x.shape[1:3]

  def one(img, z):
    s, room = z[0], 1.0 - z[0]
    scale = jnp.stack([s, s])
    shift = jnp.stack([z[1] * room * h, z[2] * room * w])
    shrunk = jax.image.scale_and_translate(img, img.shape, (0, 1), scale, shift, "linear")
    cover = jax.image.scale_and_translate(jnp.ones((h, w, 1), img.dtype), (h, w, 1), (0, 1),
                                          scale, shift, "linear")
    return shrunk + (1.0 - cover) * jnp.mean(img, axis=(0, 1))

  return jax.vmap(one)(x, zoom)


def normalise(x):
  """[0, 1] RGB -> ImageNet-normalised."""
  return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def denormalise(x):
  """ImageNet-normalised -> [0, 1] RGB (not clipped)."""
  return x * jnp.asarray(IMAGENET_STD) + jnp.asarray(IMAGENET_MEAN)


def flip_where(x, flip):
  """[B, H, W, C], flip [B] bool -> each frame mirrored left-right where flip."""
  return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


def jitter_colours(x, brightness, contrast, saturation):
  """[B, H, W, 3] on [0, 1] and per-frame factors [B] -> colour_matrix's jitter
  of each frame (about its own mean), clipped to [0, 1]."""
  m, o = colour_matrix(brightness, contrast, saturation, jnp.mean(x, axis=(1, 2)))
  return jnp.clip(jnp.einsum("bhwc,bcd->bhwd", x, m) + o[:, None, None, :], 0.0, 1.0)


def to_model_frames(frames, augment: dict | None = None):
  """uint8 [B, H, W, 3] -> float32 normalised, with `augment` (aug_* arrays [B])
  applied: horizontal flip, zoom-out (when drawn), then brightness / contrast /
  saturation, clipped to [0, 1] before normalising."""
  if frames.dtype != jnp.uint8:
    return frames
  x = frames.astype(jnp.float32) * (1.0 / 255.0)
  if augment:
    x = flip_where(x, augment["aug_flip"])
    if "aug_zoom" in augment:
      x = zoom_out(x, augment["aug_zoom"])
    x = jitter_colours(x, augment["aug_brightness"], augment["aug_contrast"],
                       augment["aug_saturation"])
  return normalise(x)


def stack_to_model_frames(stack, augment: dict | None = None):
  """uint8 [B, T, H, W, 3] -> float32 normalised: each example's draws applied to
  every frame of its stack (to_model_frames)."""
  if stack.dtype != jnp.uint8:
    return stack
  b, t = stack.shape[:2]
  repeat = {k: jnp.repeat(v, t, axis=0) for k, v in (augment or {}).items()}
  flat = to_model_frames(stack.reshape(b * t, *stack.shape[2:]), repeat or None)
  return flat.reshape(b, t, *flat.shape[1:])
