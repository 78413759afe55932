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


def test_box_masks_and_pointing():
  boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.25, 1.0, 1.0]])
  m = metrics.box_masks(boxes, (4, 4))
  assert m[0].sum() == 4 and m[0][:2, :2].all()
  assert m[1].sum() == 6 and m[1][2:, 1:].all()
  maps = np.zeros((2, 4, 4))
  maps[0, 0, 1] = 1.0   # inside box 0
  maps[1, 0, 3] = 1.0   # outside box 1
  np.testing.assert_array_equal(metrics.pointing_hits(maps, boxes), [True, False])


def test_an_upsampled_edge_peak_points_inside_its_cell_not_at_the_border():
  """A 4x4 map peaking in the left column's second cell, upsampled bilinearly to
  64 px: the maximum is a plateau from the border to the cell's centre (x 0-7,
  y 24). argmax would point at x = 0; the plateau's middle is in the cell."""
  import jax
  coarse = np.zeros((1, 4, 4), np.float32)
  coarse[0, 1, 0], coarse[0, 2, 0] = 1.0, 0.3
  fine = np.asarray(jax.image.resize(coarse, (1, 64, 64), "bilinear"))
  assert np.unravel_index(fine[0].argmax(), (64, 64)) == (24, 0)
  np.testing.assert_array_equal(metrics.peak_points(fine), [[24, 3]])  # x 3.5, the first
  box = np.array([[0.25, 1 / 32, 0.5, 0.25]])  # the cell, less the border column
  assert metrics.pointing_hits(fine, box).tolist() == [True]
  sharp = np.zeros((1, 8, 8))
  sharp[0, 5, 6], sharp[0, 2, 2] = 1.0, 0.999  # a unique maximum is kept as it is
  np.testing.assert_array_equal(metrics.peak_points(sharp), [[5, 6]])


def test_ciou_and_protocols_by_hand():
  gt = np.zeros((1, 4, 4), bool)
  gt[0, :2, :2] = True                          # 4 pixels
  pred = np.zeros((1, 4, 4), bool)
  pred[0, :2, :3] = True                        # 4 inside, 2 outside
  assert metrics.ciou(pred, gt)[0] == pytest.approx(4 / (4 + 2))
  ramp = np.arange(16, dtype=float).reshape(1, 4, 4)   # normalised: k / 15
  assert metrics.binarise(ramp, "fixed").sum() == 8    # k >= 7.5
  assert metrics.binarise(ramp, "median").sum() == 7   # k > sorted[8] = 8
  with pytest.raises(ValueError, match="protocol"):
    metrics.binarise(ramp, "mean")


def test_success_auc_matches_a_direct_integral():
  # cIoU of 0.32 for every map: success rate 1 up to t=0.3, then 0; trapezoids
  # over the 0.05 grid give 0.3 + half a step.
  assert metrics.success_auc(np.full(10, 0.32)) == pytest.approx(0.325)
  assert metrics.success_auc(np.ones(3)) == pytest.approx(1.0)


def test_localisation_scores_perfect_and_inverted_maps():
  boxes = np.array([[0.25, 0.25, 0.75, 0.75]] * 3)
  gt = metrics.box_masks(boxes, (8, 8)).astype(float)
  good = metrics.localisation_scores(gt + 0.01 * np.random.default_rng(0).random(gt.shape), boxes)
  assert good["pointing"] == 1.0 and good["ciou_fixed"] == pytest.approx(1.0)
  assert good["ap50_fixed"] == 1.0
  bad = metrics.localisation_scores(1.0 - gt, boxes)
  assert bad["pointing"] == 0.0 and bad["ciou_fixed"] == 0.0 and bad["ap50_median"] == 0.0


def test_map_objects_are_separated_peaks_strongest_first():
  m = np.zeros((8, 8))
  m[1, 1], m[1, 2] = 1.0, 0.9   # a peak and its shoulder: one object
  m[6, 5] = 0.8                  # a second object
  m[4, 0] = 0.2                  # below half of the range: not an object
  objs = metrics.map_objects(m, max_objects=3, min_distance=2)
  np.testing.assert_allclose(objs, [[1.5 / 8, 1.5 / 8, 1.0], [6.5 / 8, 5.5 / 8, 0.8]])
  assert len(metrics.map_objects(m, max_objects=1)) == 1
  assert len(metrics.map_objects(m, min_distance=1)) == 3  # no suppression: the shoulder too
