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


def test_infonce_topk_pools_the_best_locations():
  """pooling="topk" makes a pair's similarity the mean of its best locations, so
  a frame whose audio matches one cell of four scores 1/2 at topk 0.5 (max: 1)."""
  a = _unit(np.eye(3, 4))
  vmap = np.tile(_unit(np.eye(4)[3]), (3, 2, 2, 1))  # orthogonal to every audio
  vmap[np.arange(3), 1, 1] = a
  out = {"frame_embedding_map": vmap, "audio_embedding": a}
  np.testing.assert_allclose(np.diag(losses.pair_similarities(out, "topk", 0.5)), 0.5, rtol=1e-5)
  np.testing.assert_allclose(np.diag(losses.pair_similarities(out, "max")), 1.0, rtol=1e-5)
  batch = {"label": np.ones(3, np.int32), "mask": np.ones(3)}
  assert losses.infonce(outputs=out, batch=batch, pooling="topk", topk=0.5) > \
      losses.infonce(outputs=out, batch=batch)
  with pytest.raises(ValueError, match="config.loss_kwargs.infonce.pooling: unknown 'median'"):
    losses.pair_similarities(out, "median")


def _object_maps(background_like_object: bool):
  """3 frames of 4x4 unit embeddings: a 2x2 object matching its audio (basis
  vector i), and a background orthogonal to every audio, or the object again."""
  a = np.eye(3, 4)
  vmap = np.tile(np.eye(4)[3], (3, 4, 4, 1))
  if background_like_object:
    vmap[:] = a[:, None, None, :]
  vmap[:, 1:3, 1:3] = a[:, None, None, :]
  return {"frame_embedding_map": jnp.asarray(vmap), "audio_embedding": jnp.asarray(a)}


def test_hard_negatives_punish_a_map_that_covers_the_background():
  """Same positives and easy negatives; only the own frame's background differs."""
  batch = {"label": np.ones(3, np.int32)}
  sharp = losses.hard_negatives(outputs=_object_maps(False), batch=batch)
  flat = losses.hard_negatives(outputs=_object_maps(True), batch=batch)
  assert sharp < 0.01 and flat > np.log(2.0) - 0.01  # the background ties the positive
  grads = jax.grad(lambda o: losses.hard_negatives(outputs=o, batch=batch))(_object_maps(True))
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_hard_negatives_use_corresponding_rows_only():
  outputs = _object_maps(False)
  outputs["audio_embedding"] = outputs["audio_embedding"].at[2].set(outputs["audio_embedding"][0])
  per = losses.hard_negatives(outputs=outputs, batch={"label": np.array([1, 1, 0])},
                              reduction=False)
  assert per[2] == 0.0 and np.all(np.asarray(per[:2]) < 0.01)  # row 2 is no negative of row 0
  with pytest.raises(ValueError, match="losses.hard_negatives"):
    losses.hard_negatives(outputs={"frame_embedding": outputs["audio_embedding"],
                                   "audio_embedding": outputs["audio_embedding"]},
                          batch={"label": np.ones(3, np.int32)})


def test_unknown_loss_is_named():
  with pytest.raises(ValueError, match="infonse"):
    losses.get("infonse")


def test_sinkhorn_equipartitions_the_weighted_rows():
  r = np.random.default_rng(0)
  scores = jnp.asarray(3 * r.normal(size=(2, 40, 5)), jnp.float32)  # [heads, B, K]
  weights = jnp.asarray((r.uniform(size=40) > 0.25).astype(np.float32))
  q = np.asarray(losses.sinkhorn(scores, weights=weights, iterations=200))
  np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-5)
  columns = np.einsum("hbk,b->hk", q, np.asarray(weights))
  np.testing.assert_allclose(columns, float(weights.sum()) / 5, rtol=1e-3)
  # Scaling rows and columns keeps each example's preference order among clusters
  # that the same column factors apply to: the ratio q_bk / exp(s_bk) is b-free
  # up to the row factor.
  ratio = q / np.exp(np.asarray(scores))
  ratio = ratio / ratio[:, :, :1]
  np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-3)
  # Three iterations (the default) already come close to equal shares.
  q3 = np.asarray(losses.sinkhorn(scores, weights=weights))
  shares = np.einsum("hbk,b->hk", q3, np.asarray(weights)) / float(weights.sum())
  assert np.abs(shares - 0.2).max() < 0.05
  # A batch without a single valid row stays finite.
  assert np.all(np.isfinite(losses.sinkhorn(scores, weights=jnp.zeros(40))))


def _selavi_outputs(r, b=12, heads=3, k=4, keep=None):
  return {"frame_head_logits": jnp.asarray(r.normal(size=(heads, b, k)), jnp.float32),
          "audio_head_logits": jnp.asarray(r.normal(size=(heads, b, k)), jnp.float32),
          "modality_keep": jnp.ones((b, 2)) if keep is None else jnp.asarray(keep, jnp.float32)}


def test_selavi_gradient_treats_the_labels_as_constants():
  """d loss / d logits = (softmax - q) / (2 * heads * valid rows): no gradient
  flows through the Sinkhorn labels q."""
  r = np.random.default_rng(1)
  out = _selavi_outputs(r)
  batch = {"label": np.array([1] * 10 + [0] * 2, np.int32)}
  grads = jax.grad(lambda o: losses.selavi(outputs=o, batch=batch))(out)
  valid = np.asarray(batch["label"], np.float32)
  log_p = {m: jax.nn.log_softmax(out[f"{m}_head_logits"]) for m in ("frame", "audio")}
  q = losses.sinkhorn(2.0 * (log_p["frame"] + log_p["audio"]), weights=jnp.asarray(valid))
  for m in ("frame", "audio"):
    want = (np.exp(log_p[m]) - q) * valid[None, :, None] / (2 * 3 * valid.sum())
    np.testing.assert_allclose(grads[f"{m}_head_logits"], want, atol=1e-6, err_msg=m)


def test_selavi_modality_dropout_labels_from_the_kept_modality():
  r = np.random.default_rng(2)
  frame_only = _selavi_outputs(r, keep=[[1, 0]] * 12)
  changed = {**frame_only, "audio_head_logits": frame_only["audio_head_logits"] * 5 + 1}
  batch = {"label": np.ones(12, np.int32)}
  # With the audio dropped from the labelling, the labels depend on the frames
  # only: the frame heads' gradient ignores what the audio heads say.
  g = [jax.grad(lambda o: losses.selavi(outputs=o, batch=batch))(o)["frame_head_logits"]
       for o in (frame_only, changed)]
  np.testing.assert_allclose(g[0], g[1], atol=1e-7)
  both = {**frame_only, "modality_keep": jnp.ones((12, 2))}
  g_both = jax.grad(lambda o: losses.selavi(outputs=o, batch=batch))(both)["frame_head_logits"]
  assert not np.allclose(g[0], g_both, atol=1e-4)


def _column_shares(q, weights):
  return np.einsum("...bk,b->...k", np.asarray(q), np.asarray(weights)) / float(np.sum(weights))


@pytest.mark.parametrize("kind", ["gauss", "zipf"])
def test_sinkhorn_labels_follow_the_chosen_marginal_largest_to_largest(kind):
  """Column totals equal the prior's shares, the largest share going to the
  cluster that held the most mass (the direction SeLaVi's released code inverts),
  and hard labels are counted in about those proportions."""
  from avjax.models import selavi as selavi_lib
  r = np.random.default_rng(5)
  k, b = 6, 3000
  prior = selavi_lib.cluster_prior(kind, k, sd=0.4, exponent=1.0)
  assert np.all(np.diff(prior) <= 0) and prior[0] > prior[-1] * 1.5
  bias = np.array([0.0, 0.8, -0.5, 0.3, 1.2, -1.0])  # cluster 4 starts largest, 5 smallest
  # Sharp scores (as SeLaVi's sharpness makes them), so that hard labels are near q.
  scores = jnp.asarray(4.0 * (r.normal(size=(b, k)) + bias), jnp.float32)
  weights = jnp.ones(b)
  log_marginal = losses.marginal_to_masses(jnp.asarray(prior), scores, weights)
  want = np.exp(np.asarray(log_marginal))[0]
  np.testing.assert_allclose(want.sum(), 1.0, rtol=1e-5)
  assert np.argmax(want) == 4 and np.argmin(want) == 5
  assert np.allclose(np.sort(want)[::-1], prior / prior.sum(), rtol=1e-5)
  q = losses.sinkhorn(scores, weights=weights, iterations=200, log_marginal=log_marginal)
  np.testing.assert_allclose(_column_shares(q, weights), want, atol=2e-3)
  counts = np.bincount(np.argmax(np.asarray(q), axis=-1), minlength=k) / b
  assert np.abs(counts - want).max() < 0.02, (counts, want)
  # The default is the equipartition.
  q_uniform = losses.sinkhorn(scores, weights=weights, iterations=200)
  np.testing.assert_allclose(_column_shares(q_uniform, weights), 1 / k, atol=2e-3)


def test_selavi_model_gives_its_prior_and_refuses_unknown_marginals():
  from avjax import models, predict
  from configs import selavi
  c = selavi.get_config("tiny")
  c.model.marginals = "zipf"
  model = models.build(c.model)
  frames, spec = jnp.zeros((2, 32, 32, 3)), jnp.zeros((2, 129, 49, 1))
  variables = predict.jit_once(model.init)({"params": jax.random.PRNGKey(0),
                                            "dropout": jax.random.PRNGKey(1)}, frames, spec)
  out = model.apply(variables, frames, spec)
  np.testing.assert_allclose(out["cluster_prior"], 1 / np.arange(1, 13), rtol=1e-6)
  c.model.marginals = "uniform"
  assert "cluster_prior" not in models.build(c.model).apply(variables, frames, spec)
  c.model.marginals = "pareto"
  with pytest.raises(ValueError, match=r"config.model.marginals='pareto'"):
    models.build(c.model)


def test_cosine_embedding_equals_the_hand_computed_value():
  """3 labelled pairs and a negative: clips 0 and 1 share label 0, clip 2 has
  label 1; only (0, 2) and (1, 2) are non-pairs, in both directions."""
  v = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 1.0]])
  a = np.array([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
  labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.int32)
  batch = {"label": np.array([1, 1, 1, 0], np.int32), "labels": labels}
  out = {"frame_embedding": jnp.asarray(v * 3.0), "audio_embedding": jnp.asarray(a)}
  m = 0.2
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  cos = unit(v) @ unit(a).T
  h = lambda c: max(0.0, c - m) / (1 - m)
  want = [
      (1 - cos[0, 0]) + 0.5 * (h(cos[0, 2]) + h(cos[2, 0])),
      (1 - cos[1, 1]) + 0.5 * (h(cos[1, 2]) + h(cos[2, 1])),
      (1 - cos[2, 2]) + 0.5 * ((h(cos[2, 0]) + h(cos[2, 1])) / 2 + (h(cos[0, 2]) + h(cos[1, 2])) / 2),
  ]
  per = losses.cosine_embedding(outputs=out, batch=batch, margin=m, reduction=False)
  np.testing.assert_allclose(per[:3], want, rtol=1e-5)
  assert per[3] == 0.0  # the negative pair takes no part
  np.testing.assert_allclose(losses.cosine_embedding(outputs=out, batch=batch, margin=m),
                             np.mean(want), rtol=1e-5)


def test_shared_classifier_is_the_mean_sigmoid_xent_of_both_modalities():
  logits_v = np.array([[2.0, -1.0], [0.5, 0.5]])
  logits_a = np.array([[1.0, 0.0], [-2.0, 3.0]])
  labels = np.array([[1, 0], [0, 1]], np.int32)
  batch = {"label": np.array([1, 1], np.int32), "labels": labels}
  out = {"frame_class_logits": jnp.asarray(logits_v), "audio_class_logits": jnp.asarray(logits_a)}
  xent = lambda z, y: np.log1p(np.exp(-z)) * y + np.log1p(np.exp(z)) * (1 - y)
  want = 0.5 * (xent(logits_v, labels).mean(-1) + xent(logits_a, labels).mean(-1))
  np.testing.assert_allclose(losses.shared_classifier(outputs=out, batch=batch, reduction=False),
                             want, rtol=1e-5)
