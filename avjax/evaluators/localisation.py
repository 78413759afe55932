"""Sound-source localisation against boxes: pointing game, cIoU / AP50 / AUC.

`map` (config.evals.localisation.map) chooses what is scored:
- "similarity" (default): the cosine of each location's frame embedding with the
  clip's audio embedding (AVOL-Net, AVE-Net, L3-Net with contrastive heads), as
  Chen et al. 2021 and Mo & Morgado 2022 score it; for AVOL-Net this is its
  logit map up to the calibration's positive affine map, which the min-max
  normalisation of cIoU removes. The sync network has no embeddings: its CAM
  (a logit map too) is scored.
- "heatmap": the model's `heatmap` output as it is (AVOL-Net's sigmoid, the
  paper's picture). The sigmoid squashes the background to 0 and the object's
  shoulders towards it, so under the fixed threshold (half the peak) it keeps
  only the peak's core: pointing is the same, cIoU is not.
Maps are upsampled bilinearly to the frame and scored on the clips that carry a box.
cIoU is reported under both thresholding protocols (see metrics.binarise):
`*_fixed` thresholds the min-max normalised map at 0.5, `*_median` at its median.
A model with a class activation map over time (`cam`, the sync network) also
gets its audio-visual objects per frame scored against the box (object_scores).

`scales` (config.evals.localisation.scales, e.g. "1,2") runs the model on the
frame enlarged by each factor as well (an image pyramid) and keeps, per pixel,
the largest map value over scales (`fusion` "max"), or their mean ("mean"): an
object smaller than any seen in training is met at a size the model knows,
without changing the model or its training. The max keeps the widest response
of any scale; the mean keeps what the scales agree on, a tighter foreground.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from avjax import maths
from avjax import metrics
from avjax import visualise
from avjax.evaluators import base
from data_pipelines import fs


MAPS = ("similarity", "heatmap")
FUSIONS = {"max": jnp.max, "mean": jnp.mean}


def localisation_map(outputs: dict, size: int, kind: str = "similarity") -> jax.Array:
  """A model's outputs -> [B, size, size] map, larger where the sound comes from.
  `kind`: see the module's docstring."""
  grid = outputs.get("frame_embedding_map", outputs.get("frame_location_embeddings"))
  if kind == "similarity" and grid is not None and "audio_embedding" in outputs:
    m = maths.cosine_map(grid, outputs["audio_embedding"])
  elif kind in MAPS and "heatmap" in outputs:
    m = outputs["heatmap"]
  elif kind not in MAPS:
    raise ValueError(f"config.evals.localisation.map: unknown {kind!r} (one of "
                     f"{', '.join(MAPS)})")
  else:
    raise ValueError(f"config.evals.localisation.map={kind!r} needs spatial frame embeddings "
                     f"and an audio embedding, or a heatmap; the model gives {sorted(outputs)}")
  m = m.astype(jnp.float32)
  return jax.image.resize(m, (m.shape[0], size, size), "bilinear")


def object_scores(cams: np.ndarray, boxes: np.ndarray) -> dict:
  """The audio-visual objects (metrics.map_objects) of every time step of every
  clip's CAM [N, t, h, w] against its sounding object's box: objects per frame,
  the share of them inside the box, and of frames whose strongest one is."""
  counts, inside, top = [], [], []
  for cam, (y0, x0, y1, x1) in zip(cams, boxes):
    for m in cam:
      objs = metrics.map_objects(m)
      hit = (objs[:, 0] >= y0) & (objs[:, 0] <= y1) & (objs[:, 1] >= x0) & (objs[:, 1] <= x1)
      counts.append(len(objs))
      inside.extend(hit.tolist())
      top.append(bool(hit[0]) if len(hit) else False)
  return {"localisation_objects_per_frame": float(np.mean(counts)),
          "localisation_objects_in_box": float(np.mean(inside)) if inside else 0.0,
          "localisation_top_object_in_box": float(np.mean(top))}


def parse_scales(value: str) -> tuple[float, ...]:
  """config.evals.localisation.scales "1,2" -> (1.0, 2.0); every factor >= 1."""
  try:
    scales = tuple(float(v) for v in str(value).split(",") if v.strip())
  except ValueError:
    scales = ()
  if not scales or min(scales) < 1.0:
    raise ValueError(f"config.evals.localisation.scales: {value!r}; use factors >= 1 "
                     "separated by commas, e.g. 1,2")
  return scales


def fusion_fn(name: str):
  """config.evals.localisation.fusion -> how the pyramid's maps combine per pixel."""
  if name not in FUSIONS:
    raise ValueError(f"config.evals.localisation.fusion: unknown {name!r} (one of "
                     f"{', '.join(FUSIONS)})")
  return FUSIONS[name]


def enlarge(frames: jax.Array, scale: float) -> jax.Array:
  """uint8 frames [..., H, W, 3] -> the same enlarged bilinearly by `scale`, still
  uint8, so that the model's own input path (normalisation) is unchanged."""
  if scale == 1.0:
    return frames
  h, w = frames.shape[-3:-1]
  shape = (*frames.shape[:-3], round(h * scale), round(w * scale), frames.shape[-1])
  big = jax.image.resize(frames.astype(jnp.float32), shape, "bilinear")
  return jnp.clip(jnp.round(big), 0, 255).astype(jnp.uint8)


class Localisation(base.Evaluator):
  def setup(self):
    size = self.spec.crop
    scales = parse_scales(self.config.scales)
    kind = self.config.map
    fuse = fusion_fn(self.config.fusion)
    key = self.fns.frame_input

    @jax.jit
    def maps(variables, batch):
      outs = [self.apply(variables, {**batch, key: enlarge(batch[key], s)}) for s in scales]
      m = fuse(jnp.stack([localisation_map(o, size, kind) for o in outs]), axis=0)
      cam = {"cam": outs[0]["cam"].astype(jnp.float32)} if "cam" in outs[0] else {}
      return {"map": m, **cam}

    self._maps = maps

  def boxed(self, variables, *, host_keys: dict | None = None, limit: int | None = None):
    g = self.gather(self._maps, variables, host_keys={"box": None, **(host_keys or {})},
                    limit=limit)
    has_box = g["box"][:, 0] >= 0
    if not has_box.any():
      raise ValueError(f"config.evals.localisation: split {self.split!r} has no boxes "
                       "(prepare it with --boxes)")
    return {k: v[has_box] for k, v in g.items()}

  def run(self, variables) -> dict:
    g = self.boxed(variables)
    scores = metrics.localisation_scores(g["map"], g["box"])
    # What a map that says nothing scores: its peak is the frame's centre. A map
    # below it on pointing is a defect, not a weak result.
    uniform = metrics.pointing_hits(np.zeros_like(g["map"]), g["box"]).mean()
    out = {**{f"localisation_{k}": v for k, v in scores.items()},
           "localisation_pointing_uniform": float(uniform),
           "localisation_examples": int(len(g["box"]))}
    if "cam" in g:
      out.update(object_scores(g["cam"], g["box"]))
    return out

  def pictures(self, variables, out_dir: str) -> list[str]:
    n = self.config.pictures
    g = self.boxed(variables, host_keys={"frames": None}, limit=n)  # uint8 crops
    hits = metrics.pointing_hits(g["map"], g["box"])
    titles = [("hit" if h else "miss") for h in hits]
    return [visualise.heatmap_overlays(g["frames"][:n], g["map"][:n], g["box"][:n],
                                       fs.join(out_dir, "localisation.png"), titles)]
