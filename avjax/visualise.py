"""PNG pictures for the evaluate command: localisation overlays and retrieval grids."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from avjax import metrics
from data_pipelines import fs


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")  # files only: no display on training machines
  import matplotlib.pyplot as plt
  return plt


def _box_patch(plt, box, shape, colour):
  h, w = shape
  ymin, xmin, ymax, xmax = box
  return plt.Rectangle((xmin * w - 0.5, ymin * h - 0.5), (xmax - xmin) * w, (ymax - ymin) * h,
                       fill=False, edgecolor=colour, linewidth=2)


def heatmap_overlays(frames: np.ndarray, maps: np.ndarray, boxes: np.ndarray, path: str,
                     titles: Sequence[str] = ()) -> str:
  """One row per clip: the frame with its box, then the map over the frame and
  the map's maximum (the pointing-game guess) marked. frames uint8 [N,H,W,3],
  maps [N,H,W] at frame resolution, boxes [N,4] normalised (ymin,xmin,ymax,xmax)."""
  plt = _pyplot()
  n = len(frames)
  fig, axes = plt.subplots(n, 2, figsize=(5, 2.5 * n), squeeze=False)
  for i in range(n):
    shape = frames[i].shape[:2]
    axes[i, 0].imshow(frames[i])
    axes[i, 0].add_patch(_box_patch(plt, boxes[i], shape, "lime"))
    axes[i, 1].imshow(frames[i])
    axes[i, 1].imshow(maps[i], cmap="jet", alpha=0.5)
    axes[i, 1].add_patch(_box_patch(plt, boxes[i], shape, "lime"))
    y, x = metrics.peak_points(maps[i:i + 1])[0]
    axes[i, 1].plot([x], [y], marker="+", color="white", markersize=14, markeredgewidth=3)
    if i < len(titles):
      axes[i, 1].set_title(titles[i], fontsize=8)
    for ax in axes[i]:
      ax.axis("off")
  return _save(fig, plt, path)


def retrieval_grid(query: np.ndarray, results: np.ndarray, relevant: Sequence[bool], path: str,
                   title: str = "") -> str:
  """The query (a uint8 frame [H,W,3] or a spectrogram [F,T]) then its top-k frames,
  each framed green if it shares a label with the query, else red."""
  plt = _pyplot()
  k = len(results)
  fig, axes = plt.subplots(1, k + 1, figsize=(1.6 * (k + 1), 1.9), squeeze=False)
  axes = axes[0]
  if query.ndim == 2:
    axes[0].imshow(query, origin="lower", aspect="auto", cmap="magma")
  else:
    axes[0].imshow(query)
  axes[0].set_title("query", fontsize=8)
  for j in range(k):
    axes[j + 1].imshow(results[j])
    h, w = results[j].shape[:2]
    colour = "lime" if relevant[j] else "red"
    axes[j + 1].add_patch(plt.Rectangle((0, 0), w - 1, h - 1, fill=False, edgecolor=colour,
                                        linewidth=3))
    axes[j + 1].set_title(f"#{j + 1}", fontsize=8)
  for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
  if title:
    fig.suptitle(title, fontsize=9)
  return _save(fig, plt, path)


def _save(fig, plt, path: str) -> str:
  """Writes the PNG to `path`, local or a bucket URL."""
  fs.makedirs(fs.dirname(fs.absolute(path)))
  fig.tight_layout()
  with fs.open(path, "wb") as f:
    fig.savefig(f, dpi=100, format="png")
  plt.close(fig)
  return path
