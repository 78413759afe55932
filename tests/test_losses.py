import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses


def test_softmax_xent_matches_numpy_and_respects_mask():
  logits = np.array([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]], np.float32)
  label = np.array([0, 1, 1], np.int32)
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  per = -np.log(p[np.arange(3), label])
  out = losses.avc_softmax_xent(outputs={"logits": logits}, batch={"label": label})
  np.testing.assert_allclose(out, per.mean(), rtol=1e-5)
  masked = losses.avc_softmax_xent(outputs={"logits": logits},
                                   batch={"label": label, "mask": np.array([1, 0, 1.0])})
  np.testing.assert_allclose(masked, per[[0, 2]].mean(), rtol=1e-5)
  np.testing.assert_allclose(losses.avc_softmax_xent(outputs={"logits": logits},
                                                     batch={"label": label}, reduction=False),
                             per, rtol=1e-5)


def test_sigmoid_xent_matches_numpy():
  logits = np.array([3.0, -2.0, 0.1], np.float32)
  label = np.array([1, 0, 0], np.int32)
  p = 1 / (1 + np.exp(-logits))
  ref = -(label * np.log(p) + (1 - label) * np.log(1 - p)).mean()
  np.testing.assert_allclose(losses.avc_sigmoid_xent(outputs={"logits": logits},
                                                     batch={"label": label}), ref, rtol=1e-5)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_infonce_matches_numpy_on_positives_only():
  r = np.random.default_rng(0)
  v, a = _unit(r.normal(size=(5, 4))), _unit(r.normal(size=(5, 4)))
  label = np.array([1, 1, 0, 1, 1])
  t = 0.2
  keep = np.flatnonzero(label)
  s = (v[keep] @ a[keep].T) / t
  v2a = -np.diag(s - np.log(np.exp(s).sum(1, keepdims=True)))
  a2v = -np.diag(s - np.log(np.exp(s).sum(0, keepdims=True)))
  ref = (0.5 * (v2a + a2v)).mean()
  out = losses.infonce(outputs={"frame_embedding": v, "audio_embedding": a},
                       batch={"label": label}, temperature=t)
  np.testing.assert_allclose(out, ref, rtol=1e-5)


def test_infonce_is_low_when_pairs_match():
  e = _unit(np.eye(4, 8))
  batch = {"label": np.ones(4, np.int32)}
  good = losses.infonce(outputs={"frame_embedding": e, "audio_embedding": e}, batch=batch)
  bad = losses.infonce(outputs={"frame_embedding": e, "audio_embedding": e[::-1]}, batch=batch)
  assert good < 0.01 < 1.0 < bad


def test_infonce_on_maps_uses_best_location():
  a = _unit(np.eye(3, 4))
  vmap = np.zeros((3, 2, 2, 4))
  vmap[:, 0, 0] = _unit(np.ones((3, 4)))  # a distractor shared by all
  vmap[np.arange(3), 1, 1] = a           # the matching location
  sims = losses.pair_similarities({"frame_embedding_map": vmap, "audio_embedding": a})
  np.testing.assert_allclose(np.diag(sims), 1.0, rtol=1e-5)
  assert np.all(sims[~np.eye(3, dtype=bool)] < 0.6)


def test_unknown_loss_is_named():
  with pytest.raises(ValueError, match="infonse"):
    losses.get("infonse")
