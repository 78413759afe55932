"""Sound-source localisation against boxes: pointing game, cIoU / AP50 / AUC.

The map is AVOL-Net's sigmoid heatmap, or, for models that only expose spatial
frame embeddings (AVE-Net, L3-Net with contrastive heads), the cosine similarity
of each location's embedding with the clip's audio embedding. Maps are
upsampled bilinearly to the frame and scored on the clips that carry a box.
cIoU is reported under both thresholding protocols (see metrics.binarise):
`*_fixed` thresholds the min-max normalised map at 0.5, `*_median` at its median.
A model with a class activation map over time (`cam`, the sync network) also
gets its audio-visual objects per frame scored against the box (object_scores).
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


def localisation_map(outputs: dict, size: int) -> jax.Array:
  """A model's outputs -> [B, size, size] map, larger where the sound comes from."""
  if "heatmap" in outputs:
    m = outputs["heatmap"]
  else:
    grid = outputs.get("frame_embedding_map", outputs.get("frame_location_embeddings"))
    if grid is None or "audio_embedding" not in outputs:
      raise ValueError("localisation needs a heatmap, or spatial frame embeddings and an audio "
                       f"embedding; the model gives {sorted(outputs)}")
    m = maths.cosine_map(grid, outputs["audio_embedding"])
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


class Localisation(base.Evaluator):
  def setup(self):
    size = self.data_config.crop

    @jax.jit
    def maps(variables, batch):
      out = self.apply(variables, batch)
      cam = {"cam": out["cam"].astype(jnp.float32)} if "cam" in out else {}
      return {"map": localisation_map(out, size), **cam}

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
