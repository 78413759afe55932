"""Evaluation metrics as pure numpy functions (the evaluators' building blocks).

Each is checked against scikit-learn in tests/test_metrics.py.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize
import sklearn.metrics


def label_relevance(query_labels: np.ndarray, db_labels: np.ndarray, graded: bool = False):
  """Multi-hot [Q, C] x [N, C] -> relevance [Q, N]: shares a label (binary) or how many."""
  shared = query_labels.astype(np.float64) @ db_labels.astype(np.float64).T
  return shared if graded else (shared > 0).astype(np.float64)


def ndcg_at_k(scores: np.ndarray, relevance: np.ndarray, k: int) -> float:
  """Mean nDCG@k over queries (rows), ranking each row's items by `scores`.

  Gains are the relevance values themselves (linear gains, log2 discount), as
  sklearn.metrics.ndcg_score computes them; queries with no relevant item score 0.
  """
  order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  discount = 1.0 / np.log2(np.arange(2, order.shape[1] + 2))
  dcg = (np.take_along_axis(relevance, order, axis=1) * discount).sum(1)
  ideal = (-np.sort(-relevance, axis=1)[:, :k] * discount).sum(1)
  return float(np.mean(np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1), 0.0)))


def recall_at_k(scores: np.ndarray, relevance: np.ndarray, k: int) -> float:
  """Fraction of queries with at least one relevant item in their top k."""
  order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return float(np.mean(np.take_along_axis(relevance, order, axis=1).max(1) > 0))


def leave_self_out(scores: np.ndarray) -> np.ndarray:
  """Square query x database scores with each query removed from its own database."""
  out = scores.astype(np.float64).copy()
  np.fill_diagonal(out, -np.inf)
  return out


def hungarian_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
  """Accuracy under the best one-to-one map from clusters to labels."""
  labels, clusters = np.asarray(labels), np.asarray(clusters)
  _, li = np.unique(labels, return_inverse=True)
  _, ci = np.unique(clusters, return_inverse=True)
  counts = np.zeros((ci.max() + 1, li.max() + 1))
  np.add.at(counts, (ci, li), 1)
  rows, cols = scipy.optimize.linear_sum_assignment(-counts)
  return float(counts[rows, cols].sum() / len(labels))


def clustering_scores(labels: np.ndarray, clusters: np.ndarray) -> dict:
  return {
      "nmi": float(sklearn.metrics.normalized_mutual_info_score(labels, clusters)),
      "ari": float(sklearn.metrics.adjusted_rand_score(labels, clusters)),
      "accuracy": hungarian_accuracy(labels, clusters),
  }


# ----------------------------------------------------------------------------
# Sound-source localisation: maps [N, H, W] against boxes [N, 4] (ymin, xmin,
# ymax, xmax in 0..1 of the map's frame).
# ----------------------------------------------------------------------------
CIOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)  # 0, 0.05, ..., 1 as in Senocak et al. / LVS


def box_masks(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """[N, 4] normalised boxes -> [N, H, W] bool: pixels whose centre lies in the box."""
  h, w = shape
  ys = (np.arange(h) + 0.5) / h
  xs = (np.arange(w) + 0.5) / w
  b = np.asarray(boxes, np.float64)[:, :, None]
  in_y = (ys[None] >= b[:, 0]) & (ys[None] <= b[:, 2])
  in_x = (xs[None] >= b[:, 1]) & (xs[None] <= b[:, 3])
  return in_y[:, :, None] & in_x[:, None, :]


def peak_points(maps: np.ndarray) -> np.ndarray:
  """Each map's maximum as (row, column) -> [N, 2] int. Upsampling a coarse map
  leaves a plateau of equal maxima between an edge cell's centre and the frame's
  border; argmax would take the plateau's first pixel, on the top or left border
  whatever the map says. The plateau pixel nearest its centroid is taken instead
  (ties within 1e-6 of the map's range)."""
  maps = np.asarray(maps, np.float64)
  out = np.zeros((len(maps), 2), np.int64)
  for i, m in enumerate(maps):
    top = m.max()
    ys, xs = np.nonzero(m >= top - 1e-6 * (top - m.min()))
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    out[i] = ys[k], xs[k]
  return out


def pointing_hits(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Pointing game: whether each map's maximum (peak_points) falls inside its box. -> [N] bool."""
  maps = np.asarray(maps)
  peaks = peak_points(maps)
  return box_masks(boxes, maps.shape[1:])[np.arange(len(maps)), peaks[:, 0], peaks[:, 1]]


def map_objects(m: np.ndarray, *, max_objects: int = 3, min_distance: int = 2,
                min_fraction: float = 0.5) -> np.ndarray:
  """Audio-visual objects of one [h, w] map (a sync network's CAM at one time
  step; Afouras et al., ECCV 2020): its peaks, strongest first, each at least
  `min_distance` cells (Chebyshev) from a stronger one kept (non-maximum
  suppression) and above `min_fraction` of the way from the map's minimum to
  its maximum. -> [n, 3] rows (y, x, value), y and x cell centres in 0..1."""
  h, w = m.shape
  lo, hi = float(m.min()), float(m.max())
  floor = lo + min_fraction * (hi - lo)
  kept: list[tuple[int, int]] = []
  for flat in np.argsort(-m, axis=None, kind="stable"):
    y, x = divmod(int(flat), w)
    if m[y, x] < floor or len(kept) == max_objects:
      break
    if all(max(abs(y - ky), abs(x - kx)) >= min_distance for ky, kx in kept):
      kept.append((y, x))
  return np.array([((y + 0.5) / h, (x + 0.5) / w, m[y, x]) for y, x in kept],
                  np.float64).reshape(-1, 3)


def object_cells(objects: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """map_objects' rows (y, x cell centres in 0..1, value) on an [h, w] map -> the
  cells [n, 2] int (row, column) they are the centres of."""
  h, w = shape
  return np.stack([np.floor(objects[:, 0] * h), np.floor(objects[:, 1] * w)], 1).astype(np.int32)


def min_max_normalise(maps: np.ndarray) -> np.ndarray:
  maps = np.asarray(maps, np.float64)
  lo = maps.min(axis=(1, 2), keepdims=True)
  span = maps.max(axis=(1, 2), keepdims=True) - lo
  return (maps - lo) / np.where(span > 0, span, 1.0)


def binarise(maps: np.ndarray, protocol: str) -> np.ndarray:
  """The two thresholding protocols of the literature, on min-max normalised maps.

  "fixed":  map >= 0.5 (Senocak et al., CVPR 2018, and most work after it).
  "median": map > its own median, so about half the frame is foreground
            (Chen et al., "Localizing Visual Sounds the Hard Way", CVPR 2021).
  """
  norm = min_max_normalise(maps)
  if protocol == "fixed":
    return norm >= 0.5
  if protocol == "median":
    flat = np.sort(norm.reshape(len(norm), -1), axis=1)
    return norm > flat[:, flat.shape[1] // 2][:, None, None]
  raise ValueError(f"unknown thresholding protocol {protocol!r} (fixed, median)")


def ciou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """Consensus IoU per map: |pred & gt| / (|gt| + |pred & ~gt|). -> [N]."""
  pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
  inter = (pred & gt).sum(axis=(1, 2))
  return inter / np.maximum(gt.sum(axis=(1, 2)) + (pred & ~gt).sum(axis=(1, 2)), 1)


def success_auc(cious: np.ndarray, thresholds: np.ndarray = CIOU_THRESHOLDS) -> float:
  """Area under the curve of the fraction of maps with cIoU >= t, t in 0..1."""
  rates = [(np.asarray(cious) >= t).mean() for t in thresholds]
  return float(sklearn.metrics.auc(thresholds, rates))


def localisation_scores(maps: np.ndarray, boxes: np.ndarray) -> dict:
  """Pointing accuracy, and cIoU / AP50 / AUC under both thresholding protocols."""
  gt = box_masks(boxes, maps.shape[1:])
  out = {"pointing": float(pointing_hits(maps, boxes).mean())}
  for protocol in ("fixed", "median"):
    c = ciou(binarise(maps, protocol), gt)
    out[f"ciou_{protocol}"] = float(c.mean())
    out[f"ap50_{protocol}"] = float((c >= 0.5).mean())
    out[f"auc_{protocol}"] = success_auc(c)
  return out


def si_sdr(estimates: np.ndarray, references: np.ndarray) -> np.ndarray:
  """Scale-invariant SDR in dB (Le Roux et al., ICASSP 2019) of each row [N, samples]:
  the reference scaled to its projection of the estimate, against the residual."""
  est = np.asarray(estimates, np.float64)
  ref = np.asarray(references, np.float64)
  ref_energy = np.sum(ref ** 2, axis=-1, keepdims=True) + 1e-12
  target = np.sum(est * ref, axis=-1, keepdims=True) / ref_energy * ref
  noise = est - target
  return 10 * np.log10((np.sum(target ** 2, -1) + 1e-12) / (np.sum(noise ** 2, -1) + 1e-12))


def bss_eval(references: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, ...]:
  """BSS Eval v3's (SDR, SIR, SAR), each [sources], of one mixture's estimates
  [sources, samples] against its stems, in the given order (no permutation):
  mir_eval.separation.bss_eval_sources itself, the field's reference."""
  import warnings  # pylint: disable=g-import-not-at-top
  import mir_eval  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # 0.8 deprecates it for museval's v4
    sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(
        np.asarray(references, np.float64), np.asarray(estimates, np.float64),
        compute_permutation=False)
  return sdr, sir, sar


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
  """Non-interpolated average precision: the mean, over the positives, of the
  precision among the items ranked at or above each (ties in input order), as
  sklearn.metrics.average_precision_score without ties. NaN without positives."""
  labels = np.asarray(labels, bool)
  if not labels.any():
    return float("nan")
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  hits = labels[order]
  precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(precision[hits].mean())
