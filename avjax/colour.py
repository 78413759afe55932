"""CIE Lab and the quantised ab space of colourization (Zhang, Isola & Efros,
"Colorful Image Colorization", ECCV 2016): pure functions, sRGB under D65.

The ab plane is cut into bins of side 10; the bins whose cell meets the sRGB
gamut at some lightness are the classes (`ab_bins`). A target colour is
soft-encoded over its 5 nearest bins with a Gaussian of sigma 5, and classes are
rebalanced by the inverse of the empirical bin distribution mixed with the
uniform one (lambda = 1/2), as in the paper.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# sRGB (linear) <-> XYZ under D65, and D65's white point.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE = np.array([0.95047, 1.0, 1.08883])
BIN_SIZE = 10.0


def _linear(c, xp):
  return xp.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def rgb_to_lab(rgb, xp=jnp):
  """[..., 3] sRGB on [0, 1] -> [..., 3] (L in [0, 100], a, b)."""
  xyz = _linear(rgb, xp) @ xp.asarray(_RGB_TO_XYZ.T, dtype=rgb.dtype) / xp.asarray(
      _WHITE, dtype=rgb.dtype)
  delta = 6 / 29
  f = xp.where(xyz > delta ** 3, xp.cbrt(xyz), xyz / (3 * delta ** 2) + 4 / 29)
  return xp.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                   200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_linear_rgb(lab):
  """[..., 3] Lab -> linear sRGB (numpy; out of [0, 1] where out of gamut)."""
  fy = (lab[..., 0] + 16) / 116
  f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
  delta = 6 / 29
  xyz = np.where(f > delta, f ** 3, 3 * delta ** 2 * (f - 4 / 29)) * _WHITE
  return xyz @ np.linalg.inv(_RGB_TO_XYZ).T


@functools.lru_cache(maxsize=None)
def ab_bins() -> np.ndarray:
  """[Q, 2] centres of the ab bins whose cell meets the sRGB gamut at some L."""
  centres = np.arange(-110, 111, BIN_SIZE)
  a, b = (v.ravel() for v in np.meshgrid(centres, centres, indexing="ij"))
  lightness = np.linspace(0, 100, 201)[:, None]
  inside = np.zeros(a.shape, bool)
  for da in np.linspace(-BIN_SIZE / 2, BIN_SIZE / 2, 6):
    for db in np.linspace(-BIN_SIZE / 2, BIN_SIZE / 2, 6):
      lab = np.stack(np.broadcast_arrays(lightness, a + da, b + db), axis=-1)
      rgb = lab_to_linear_rgb(lab)
      inside |= np.all((rgb >= 0) & (rgb <= 1), axis=-1).any(axis=0)
  return np.stack([a[inside], b[inside]], axis=-1).astype(np.float32)


def soft_encode(ab, bins, *, neighbours: int = 5, sigma: float = 5.0):
  """[..., 2] ab -> [..., Q]: Gaussian weights on the `neighbours` nearest bins."""
  d2 = jnp.sum((ab[..., None, :] - bins) ** 2, axis=-1)          # [..., Q]
  neg, idx = jax.lax.top_k(-d2, neighbours)
  w = jax.nn.softmax(neg / (2 * sigma ** 2), axis=-1)
  return jnp.sum(jax.nn.one_hot(idx, bins.shape[0], dtype=ab.dtype) * w[..., None], axis=-2)


def rebalancing_weights(prior, mix: float = 0.5):
  """[Q] empirical bin distribution -> [Q] class weights prop. to
  1 / ((1 - mix) prior + mix / Q), normalised to expectation 1 under the prior."""
  w = 1.0 / ((1 - mix) * prior + mix / prior.shape[0])
  return w / jnp.sum(prior * w)
