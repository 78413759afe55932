"""Self-supervision from the frame alone: the image pretext tasks that audio-visual
papers compare with, on the same VGG frame tower (`vision_widths`).

Each task makes its inputs in the jitted step from the square crops the reader
ships, so any frames the reader gives serve; its random draws come from the
step's "dropout" key. Evaluation (train=False) runs the tower on the frame
itself: `frame_features` are what the probes read.

- Rotation (Gidaris, Singh & Komodakis, ICLR 2018): each frame at 0, 90, 180
  and 270 degrees, all four in one batch as the paper does; a linear layer on
  the tower's max-pooled features says which (losses.rotation_xent).
- Relative position (Doersch, Gupta & Efros, ICCV 2015): the centre patch of a
  3x3 grid and one of its 8 neighbours, each through the tower; their features,
  concatenated, through two layers say where the neighbour lies
  (losses.relpos_xent). Against the shortcuts the paper names: a gap between
  cells and an independent jitter of each patch (edge continuity), and colour
  dropping: all but one random channel replaced by noise (chromatic aberration).
- Colourization (Zhang, Isola & Efros, ECCV 2016): the tower sees the frame's
  lightness only and predicts, at every location of its last feature map, a
  distribution over the quantised ab bins (avjax/colour.py) of the frame's
  colour there, soft-encoded; classes are rebalanced by the running bin
  distribution, kept as a batch statistic (losses.colour_xent).
- Exemplar networks (Dosovitskiy et al., NeurIPS 2014), in the lecture's form: a
  surrogate-class classifier over a sampled set of exemplars. The first
  `num_exemplars` patches the training stream shows (a random patch of each
  frame, in the reader's shuffled order) fill a bank kept with the batch
  statistics; each step draws exemplars from the bank, transforms them heavily
  (random resized crop, flip, colour distortion) and classifies each into its
  exemplar's class (losses.exemplar_xent).
- SimCLR (Chen et al., ICML 2020): two augmented views of each frame (random
  resized crop, flip, colour distortion: avjax/augment.py), the tower, a 2-layer
  projection head; NT-Xent over the global batch (losses.nt_xent).
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax import augment
from avjax import colour as colour_lib
from avjax import frames as frames_lib
from avjax import maths
from avjax.models import vgg

ROTATIONS = 4


def rotations(frames):
  """[B, H, H, C] -> [4, B, H, H, C]: the frames turned k * 90 degrees
  anticlockwise, k = 0..3 (the rotation label is k)."""
  if frames.shape[1] != frames.shape[2]:
    raise ValueError(f"rotation needs square frames, got {frames.shape[1]}x{frames.shape[2]}")
  return jnp.stack([jnp.rot90(frames, k, axes=(1, 2)) for k in range(ROTATIONS)])


def rotation_labels(batch: int):
  """[4, B] int32: the label of each frame of `rotations`."""
  return jnp.broadcast_to(jnp.arange(ROTATIONS, dtype=jnp.int32)[:, None], (ROTATIONS, batch))


class RotationNet(vgg.Towers):
  correspondence: ClassVar[str | None] = None  # see models.CORRESPONDENCE

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    del spectrogram
    if frames is None:
      return {}
    b = frames.shape[0]
    tower = self.subnet(self.vision_widths, "vision")
    head = nn.Dense(ROTATIONS, dtype=self.dtype, name="rotation_head")
    if not train:  # the upright frames only (the head runs so that init makes it)
      pooled = vgg.global_max_pool(tower(frames, train))
      return {"frame_features": pooled.astype(jnp.float32),
              "rotation_logits": head(pooled)[None].astype(jnp.float32)}
    turned = rotations(frames).reshape(ROTATIONS * b, *frames.shape[1:])
    pooled = vgg.global_max_pool(tower(turned, train))
    logits = head(pooled)
    return {"frame_features": pooled[:b].astype(jnp.float32),  # the upright frames
            "rotation_logits": logits.reshape(ROTATIONS, b, ROTATIONS).astype(jnp.float32)}


# (row, column) of the neighbour's cell relative to the centre's; label k is its index.
RELPOS_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def crop_patches(images, corners, size: int):
  """[B, H, W, C] and top-left corners [B, 2] -> [B, size, size, C]."""
  c = images.shape[-1]
  return jax.vmap(lambda img, yx: jax.lax.dynamic_slice(img, (yx[0], yx[1], 0),
                                                        (size, size, c)))(images, corners)


def grid_origin(size: int, patch: int, gap: int, jitter: int) -> int:
  """Top-left pixel of cell (0, 0) of a 3x3 grid of `patch` cells `gap` apart,
  centred in a `size` frame with room for each patch to move by `jitter`."""
  span = 3 * patch + 2 * gap
  if span + 2 * jitter > size:
    raise ValueError(f"relative position: 3 patches of {patch} px, gaps of {gap} px and a jitter "
                     f"of {jitter} px need {span + 2 * jitter} px; the crop is {size} px")
  return (size - span) // 2


def relpos_patches(key, frames, *, patch: int, gap: int, jitter: int):
  """frames [B, S, S, C] -> (centre patches, neighbour patches [B, p, p, C],
  labels [B]): the neighbour in the cell RELPOS_OFFSETS[label] from the centre,
  each patch moved by its own jitter in [-jitter, jitter] on both axes."""
  b, size = frames.shape[:2]
  origin = grid_origin(size, patch, gap, jitter)
  k_label, k_jitter = jax.random.split(key)
  labels = jax.random.randint(k_label, (b,), 0, len(RELPOS_OFFSETS))
  cell = patch + gap
  centre = jnp.full((b, 2), origin + cell)
  neighbour = origin + (1 + jnp.asarray(RELPOS_OFFSETS)[labels]) * cell
  moves = jax.random.randint(k_jitter, (2, b, 2), -jitter, jitter + 1)
  return (crop_patches(frames, centre + moves[0], patch),
          crop_patches(frames, neighbour + moves[1], patch), labels)


def drop_colours(key, patches, noise: float = 0.01):
  """Doersch et al.'s colour dropping: one random channel of each patch kept,
  the other two replaced by Gaussian noise of std `noise` (in the channel's
  units): chromatic aberration then tells nothing of where a patch was."""
  k_keep, k_noise = jax.random.split(key)
  keep = jax.random.randint(k_keep, (patches.shape[0],), 0, patches.shape[-1])
  mask = jax.nn.one_hot(keep, patches.shape[-1], dtype=patches.dtype)[:, None, None, :]
  return patches * mask + (1 - mask) * noise * jax.random.normal(k_noise, patches.shape)


class RelativePositionNet(vgg.Towers):
  correspondence: ClassVar[str | None] = None
  patch: int = 64
  gap: int = 16
  jitter: int = 7
  colour: str = "drop"  # "drop" (colour dropping), "grey" (luminance only) or "none"
  hidden: int = 512

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    del spectrogram
    if frames is None:
      return {}
    tower = self.subnet(self.vision_widths, "vision")
    fc1 = nn.Dense(self.hidden, dtype=self.dtype, name="fc1")
    fc2 = nn.Dense(len(RELPOS_OFFSETS), dtype=self.dtype, name="fc2")
    if not train:  # whole frames (the head runs on the frame with itself, so that init makes it)
      pooled = vgg.global_max_pool(tower(frames, train))
      fc2(nn.relu(fc1(jnp.concatenate([pooled, pooled], axis=-1))))
      return {"frame_features": pooled.astype(jnp.float32)}
    if self.colour not in ("drop", "grey", "none"):
      raise ValueError(f"config.model.colour: {self.colour!r} is not drop, grey or none")
    k_patch, k_colour = jax.random.split(self.make_rng("dropout"))
    centre, neighbour, labels = relpos_patches(k_patch, frames, patch=self.patch, gap=self.gap,
                                               jitter=self.jitter)
    pair = jnp.concatenate([centre, neighbour])
    if self.colour == "drop":
      pair = drop_colours(k_colour, pair)
    elif self.colour == "grey":
      grey = jnp.einsum("...c,c->...", pair, jnp.asarray(frames_lib.GREY_WEIGHTS))
      pair = jnp.repeat(grey[..., None], 3, axis=-1)
    pooled = vgg.global_max_pool(tower(pair, train))
    b = frames.shape[0]
    x = jnp.concatenate([pooled[:b], pooled[b:]], axis=-1)
    logits = fc2(nn.relu(fc1(x)))
    return {"relpos_logits": logits.astype(jnp.float32), "relpos_labels": labels}


class SimCLRNet(vgg.Towers):
  correspondence: ClassVar[str | None] = None
  projection: Sequence[int] = (512, 128)  # the head's hidden and output widths
  crop_scale: Sequence[float] = (0.08, 1.0)
  colour_strength: float = 1.0

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    del spectrogram
    if frames is None:
      return {}
    tower = self.subnet(self.vision_widths, "vision")
    proj1 = nn.Dense(self.projection[0], dtype=self.dtype, name="proj1")
    proj2 = nn.Dense(self.projection[1], dtype=self.dtype, name="proj2")
    project = lambda x: maths.l2_normalize(proj2(nn.relu(proj1(x))).astype(jnp.float32))
    if not train:  # the frames themselves, and their projection
      pooled = vgg.global_max_pool(tower(frames, train))
      return {"frame_features": pooled.astype(jnp.float32),
              "simclr_projections": project(pooled)[None]}
    keys = jax.random.split(self.make_rng("dropout"))
    views = jnp.concatenate([augment.simclr_view(k, frames, scale=tuple(self.crop_scale),
                                                 strength=self.colour_strength) for k in keys])
    z = project(vgg.global_max_pool(tower(views, train)))
    return {"simclr_projections": z.reshape(2, frames.shape[0], -1)}


def lightness_and_ab(frames):
  """Normalised frames [B, H, W, 3] -> (the lightness as a grey 3-channel image
  on [-1, 1], ab [B, H, W, 2])."""
  lab = colour_lib.rgb_to_lab(jnp.clip(frames_lib.denormalise(frames.astype(jnp.float32)),
                                       0.0, 1.0))
  grey = jnp.repeat(lab[..., :1] / 50.0 - 1.0, 3, axis=-1)
  return grey, lab[..., 1:]


def area_pool(x, out_hw):
  """[B, H, W, C] -> [B, h, w, C]: means over equal cells (H, W multiples of h, w)."""
  b, h, w, c = x.shape
  fh, fw = h // out_hw[0], w // out_hw[1]
  x = x[:, :fh * out_hw[0], :fw * out_hw[1]]
  return x.reshape(b, out_hw[0], fh, out_hw[1], fw, c).mean(axis=(2, 4))


class ColourizationNet(vgg.Towers):
  correspondence: ClassVar[str | None] = None
  prior_momentum: float = 0.99  # of the running ab-bin distribution (class rebalancing)
  rebalance: float = 0.5        # the paper's lambda: mix of the prior with the uniform

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    del spectrogram
    if frames is None:
      return {}
    bins = jnp.asarray(colour_lib.ab_bins())
    q = bins.shape[0]
    grey, ab = lightness_and_ab(frames)
    fmap = self.subnet(self.vision_widths, "vision")(grey, train)
    logits = nn.Dense(q, dtype=self.dtype, name="ab_head")(fmap).astype(jnp.float32)
    prior = self.variable("batch_stats", "ab_prior", lambda: jnp.full((q,), 1.0 / q))
    out = {"frame_features": vgg.global_max_pool(fmap).astype(jnp.float32)}
    if not train:
      return out
    target = colour_lib.soft_encode(area_pool(ab, fmap.shape[1:3]), bins)   # [B, h, w, Q]
    if not self.is_initializing():
      seen = jnp.mean(target, axis=(0, 1, 2))
      prior.value = self.prior_momentum * prior.value + (1 - self.prior_momentum) * seen
    weights = colour_lib.rebalancing_weights(prior.value, self.rebalance)
    out.update(colour_logits=logits, colour_targets=target,
               colour_weights=weights[jnp.argmax(target, axis=-1)])
    return out


def fill_bank(bank, filled, patches):
  """Appends `patches` [B, p, p, 3] (uint8) to the bank [N, p, p, 3] from row
  `filled` on, as far as it has room; -> (bank, new filled count)."""
  n, b = bank.shape[0], patches.shape[0]
  bank = bank.at[filled + jnp.arange(b)].set(patches, mode="drop")  # rows past n: dropped
  return bank, jnp.minimum(filled + b, n)


class ExemplarNet(vgg.Towers):
  correspondence: ClassVar[str | None] = None
  num_exemplars: int = 8000  # the paper's surrogate classes
  patch: int = 32            # the paper's exemplar patches
  crop_scale: Sequence[float] = (0.3, 1.0)
  colour_strength: float = 1.0

  @nn.compact
  def __call__(self, frames, spectrogram, train: bool = False):
    del spectrogram
    if frames is None:
      return {}
    tower = self.subnet(self.vision_widths, "vision")
    head = nn.Dense(self.num_exemplars, dtype=self.dtype, name="exemplar_head")
    shape = (self.num_exemplars, self.patch, self.patch, 3)
    bank = self.variable("batch_stats", "exemplar_bank", lambda: jnp.zeros(shape, jnp.uint8))
    filled = self.variable("batch_stats", "exemplar_filled", lambda: jnp.zeros((), jnp.int32))
    if not train:  # whole frames; the head runs so that init makes it
      pooled = vgg.global_max_pool(tower(frames, train))
      head(pooled)
      return {"frame_features": pooled.astype(jnp.float32)}
    k_crop, k_draw, k_view = jax.random.split(self.make_rng("dropout"), 3)
    b, size = frames.shape[:2]
    corner = jax.random.randint(k_crop, (b, 2), 0, size - self.patch + 1)
    patches = crop_patches(frames, corner, self.patch)
    as_uint8 = jnp.round(jnp.clip(frames_lib.denormalise(patches), 0, 1) * 255).astype(jnp.uint8)
    if not self.is_initializing():
      bank.value, filled.value = fill_bank(bank.value, filled.value, as_uint8)
    ids = jax.random.randint(k_draw, (b,), 0, jnp.maximum(filled.value, 1))
    exemplars = frames_lib.normalise(bank.value[ids].astype(jnp.float32) / 255.0)
    views = augment.simclr_view(k_view, exemplars, scale=tuple(self.crop_scale),
                                strength=self.colour_strength)
    logits = head(vgg.global_max_pool(tower(views, train)))
    return {"exemplar_logits": logits.astype(jnp.float32), "exemplar_ids": ids}
