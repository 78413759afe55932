import numpy as np
import pytest
import sklearn.metrics

from avjax import metrics


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("k", [1, 5, 30])
def test_ndcg_equals_sklearn(graded, k):
  r = np.random.default_rng(k)
  labels = (r.uniform(size=(40, 6)) < 0.3).astype(int)
  labels[np.arange(40), r.integers(0, 6, 40)] = 1  # every item has a label
  relevance = metrics.label_relevance(labels[:12], labels, graded=graded)
  scores = r.normal(size=relevance.shape)
  assert metrics.ndcg_at_k(scores, relevance, k) == pytest.approx(
      sklearn.metrics.ndcg_score(relevance, scores, k=k), abs=1e-9)


def test_recall_and_leave_self_out():
  scores = np.array([[5.0, 1.0, 2.0], [0.0, 9.0, 1.0], [3.0, 2.0, 8.0]])
  relevance = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], float)
  assert metrics.recall_at_k(scores, relevance, 1) == 1.0  # each finds itself first
  held_out = metrics.leave_self_out(scores)
  assert metrics.recall_at_k(held_out, relevance, 1) == pytest.approx(2 / 3)


def test_clustering_scores_equal_sklearn_and_hungarian():
  r = np.random.default_rng(0)
  labels = r.integers(0, 5, 200)
  clusters = np.where(r.uniform(size=200) < 0.8, (labels + 2) % 5, r.integers(0, 5, 200))
  s = metrics.clustering_scores(labels, clusters)
  assert s["nmi"] == pytest.approx(sklearn.metrics.normalized_mutual_info_score(labels, clusters))
  assert s["ari"] == pytest.approx(sklearn.metrics.adjusted_rand_score(labels, clusters))
  # A relabelled perfect clustering is perfect; the permutation is found.
  assert metrics.hungarian_accuracy(labels, (labels + 3) % 5) == 1.0
  assert 0.75 < s["accuracy"] < 0.9  # 80% follow the permutation, the rest by chance
