"""The JAX linear probe against scikit-learn, and its folds."""
import numpy as np
import pytest
import sklearn.linear_model

from avjax.evaluators import linear_probe


def blobs(seed, n=400, d=24, k=5, noise=2.5):
  r = np.random.default_rng(seed)
  centres = r.normal(size=(k, d))
  y = r.integers(0, k, n)
  x = centres[y] + noise * r.normal(size=(n, d)) + 10.0  # offset: standardisation matters
  return x, y


@pytest.mark.parametrize("seed,C", [(0, 1.0), (1, 0.05)])
def test_probe_is_within_a_point_of_sklearn(seed, C):
  x, y = blobs(seed)
  xtr, xte, ytr, yte = x[:300], x[300:], y[:300], y[300:]
  ours = linear_probe.probe_accuracy(xtr, ytr, xte, yte, num_classes=5, C=C, max_iter=1000)
  str_, ste = linear_probe.standardise(xtr, xte)
  ref = sklearn.linear_model.LogisticRegression(C=C, max_iter=5000).fit(str_, ytr)
  reference = ref.score(ste, yte)
  assert 0.3 < reference < 0.95  # a task where the fit matters
  assert abs(ours - reference) <= 0.01


def test_fit_matches_sklearn_coefficients():
  x, y = blobs(2, n=200, d=6, k=3, noise=1.5)
  xs, _ = linear_probe.standardise(x, x)
  w, b = linear_probe.fit_logistic_regression(xs.astype(np.float32), y, num_classes=3, C=0.5)
  ref = sklearn.linear_model.LogisticRegression(C=0.5, tol=1e-8, max_iter=5000).fit(xs, y)
  # Softmax parameters are defined up to a shift shared by the classes.
  w, b = np.asarray(w), np.asarray(b)
  np.testing.assert_allclose(w - w.mean(1, keepdims=True), ref.coef_.T - ref.coef_.T.mean(1, keepdims=True),
                             atol=2e-3)
  np.testing.assert_allclose(b - b.mean(), ref.intercept_ - ref.intercept_.mean(), atol=2e-3)


def test_cross_validation_uses_every_fold_once():
  x, y = blobs(3, n=120)
  folds = np.repeat(np.arange(4), 30)
  accs = linear_probe.cross_validate(x, y, folds, num_classes=5, C=1.0, max_iter=500)
  assert len(accs) == 4 and all(0.0 <= a <= 1.0 for a in accs)


def test_folds_from_csv(tmp_path):
  meta = tmp_path / "esc50.csv"
  meta.write_text("filename,fold,target\na.wav,1,0\nb.wav,2,3\nc.wav,1,1\n")
  folds = linear_probe.folds_from_csv(str(meta), [b"sub/a.wav", b"c.wav", b"b.wav"],
                                      file_column="filename", fold_column="fold")
  np.testing.assert_array_equal(folds, ["1", "1", "2"])
  with pytest.raises(ValueError, match=r"esc50.csv: no 'fold' for 1 clip file\(s\), e.g. \['d.wav'\]"):
    linear_probe.folds_from_csv(str(meta), ["d.wav"], file_column="filename", fold_column="fold")
  with pytest.raises(ValueError, match="no column 'split'"):
    linear_probe.folds_from_csv(str(meta), ["a.wav"], file_column="filename", fold_column="split")


def test_clip_accuracy_averages_decision_values_over_a_clips_windows():
  # Clip 0's two windows disagree; their mean favours class 1 (its label).
  # Clip 1's single window says class 0 against its label 2.
  d = np.array([[2.0, 1.0, 0.0], [0.0, 3.5, 0.0], [1.0, 0.0, 0.5]])
  y = np.array([1, 1, 2])
  clips = np.array([7, 7, 3])
  assert linear_probe.clip_accuracy(d, y, clips) == 0.5
  assert linear_probe.clip_accuracy(d[:1], y[:1], clips[:1]) == 0.0  # window 0 alone is wrong


def test_evaluation_windows_tile_each_clip(data_dir):
  """window_hop: every window of a clip, in time order, sharing its clip_index;
  the one-window reader's window is among them."""
  from avjax import input as input_lib
  from tests.conftest import tiny_config
  config = tiny_config("avenet", data_dir)
  reader = input_lib.make_reader(config.data, "validation", global_batch=8, seed=0)
  one = [b for b in reader.eval_iterator()]
  many = [b for b in reader.eval_iterator(window_hop=0.1)]
  cat = lambda bs, k: np.concatenate([b[k][b["mask"] > 0] for b in bs])
  clips, starts = cat(many, "clip_index"), cat(many, "audio_start")
  # 1.4 s clips at 25 fps, 1 s windows on the frame grid: centre frames 12..22, every 2nd.
  assert np.bincount(clips).tolist() == [6] * 10
  for c in range(10):
    s = starts[clips == c]
    np.testing.assert_allclose(np.diff(s), 0.08, atol=1e-6)
    assert cat(one, "audio_start")[c] in s
