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
