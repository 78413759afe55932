"""The frame-only pretext tasks: labels and geometry against hand-computed values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses
from avjax.models import pretext


def test_rotations_turn_anticlockwise_with_label_k():
  image = jnp.array([[1, 2], [3, 4]], jnp.float32)[None, :, :, None]  # [1, 2, 2, 1]
  turned = pretext.rotations(image)[:, 0, :, :, 0]
  np.testing.assert_array_equal(turned[0], [[1, 2], [3, 4]])
  np.testing.assert_array_equal(turned[1], [[2, 4], [1, 3]])   # 90 degrees anticlockwise
  np.testing.assert_array_equal(turned[2], [[4, 3], [2, 1]])
  np.testing.assert_array_equal(turned[3], [[3, 1], [4, 2]])
  np.testing.assert_array_equal(pretext.rotation_labels(3), [[0] * 3, [1] * 3, [2] * 3, [3] * 3])
  with pytest.raises(ValueError, match="square"):
    pretext.rotations(jnp.zeros((1, 2, 3, 1)))


def test_rotation_xent_against_hand_values():
  b = 3
  right = 20.0 * jax.nn.one_hot(pretext.rotation_labels(b), 4)  # [4, B, 4]
  assert float(losses.rotation_xent(outputs={"rotation_logits": right}, batch={})) < 1e-6
  flat = jnp.zeros((4, b, 4))
  np.testing.assert_allclose(losses.rotation_xent(outputs={"rotation_logits": flat}, batch={}),
                             np.log(4.0), rtol=1e-6)
  # Every rotation of example 0 wrong by one place, the others right; example 2 masked out.
  wrong = right.at[:, 0].set(jnp.roll(right[:, 0], 1, axis=-1))
  per = losses.rotation_xent(outputs={"rotation_logits": wrong}, batch={}, reduction=False)
  np.testing.assert_allclose(per, [20.0, 0.0, 0.0], atol=1e-5)
  masked = losses.rotation_xent(outputs={"rotation_logits": wrong},
                                batch={"mask": jnp.array([0.0, 1.0, 1.0])})
  assert float(masked) < 1e-6


def test_rotation_net_sees_four_turns_and_probes_the_upright_frame():
  model = pretext.RotationNet(vision_widths=(4, 8))
  frames = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(1), frames, None)
  out, _ = model.apply(variables, frames, None, train=True, mutable=["batch_stats"])
  assert out["rotation_logits"].shape == (4, 2, 4)
  # Evaluation runs the tower once, on the upright frame.
  evaluated = model.apply(variables, frames, None)
  assert evaluated["frame_features"].shape == (2, 8)
  assert evaluated["rotation_logits"].shape == (1, 2, 4)


def test_relative_position_patches_come_from_the_labelled_cell():
  """Without jitter each patch is exactly its grid cell: a frame whose pixels
  hold their own (row, column) shows where every patch was cut."""
  size, patch, gap = 20, 4, 2
  rows, cols = jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing="ij")
  frame = jnp.stack([rows, cols, rows * 0], -1).astype(jnp.float32)
  frames = jnp.broadcast_to(frame, (64, size, size, 3))
  centre, neighbour, labels = pretext.relpos_patches(jax.random.PRNGKey(0), frames, patch=patch,
                                                     gap=gap, jitter=0)
  origin = pretext.grid_origin(size, patch, gap, 0)
  assert origin == 2  # (20 - (3 * 4 + 2 * 2)) // 2
  np.testing.assert_array_equal(centre[:, 0, 0, :2], np.full((64, 2), origin + patch + gap))
  for k, (dy, dx) in enumerate(pretext.RELPOS_OFFSETS):
    at = np.asarray(neighbour[labels == k][:, 0, 0, :2])
    np.testing.assert_array_equal(at, np.broadcast_to([origin + (1 + dy) * 6, origin + (1 + dx) * 6],
                                                      at.shape))
  assert set(np.asarray(labels).tolist()) == set(range(8))  # 64 draws reach every cell
  # With jitter, a patch moves by at most `jitter` pixels on each axis.
  c, n, labels = pretext.relpos_patches(jax.random.PRNGKey(1), jnp.broadcast_to(
      frame, (64, size, size, 3)), patch=patch, gap=gap - 1, jitter=1)
  moved = np.asarray(c[:, 0, 0, :2]) - (pretext.grid_origin(size, patch, gap - 1, 1) + patch + gap - 1)
  assert np.abs(moved).max() == 1
  with pytest.raises(ValueError, match="need 28 px; the crop is 20 px"):
    pretext.grid_origin(size, 6, 4, 1)


def test_colour_dropping_keeps_one_channel():
  patches = jnp.ones((8, 3, 3, 3))
  out = np.asarray(pretext.drop_colours(jax.random.PRNGKey(0), patches))
  kept = np.isclose(out, 1.0).all(axis=(1, 2))
  assert (kept.sum(axis=1) == 1).all()
  assert np.abs(out[~np.broadcast_to(kept[:, None, None, :], out.shape)]).max() < 0.1


def _nt_xent_numpy(z, temperature):
  two_b = z.shape[0] * z.shape[1]
  z = z.reshape(two_b, -1)
  b = two_b // 2
  sim = z @ z.T / temperature
  out = []
  for i in range(two_b):
    j = (i + b) % two_b
    others = [sim[i, k] for k in range(two_b) if k != i]
    out.append(np.log(np.sum(np.exp(others))) - sim[i, j])
  return np.mean(out)


def test_nt_xent_matches_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(2, 5, 4)).astype(np.float32)
  z /= np.linalg.norm(z, axis=-1, keepdims=True)
  got = losses.nt_xent(outputs={"simclr_projections": jnp.asarray(z)}, batch={}, temperature=0.5)
  np.testing.assert_allclose(got, _nt_xent_numpy(z, 0.5), rtol=1e-5)


def test_arrow_of_time_reverses_what_it_labels_backwards():
  from avjax.models import pretext_video
  stacks = jnp.broadcast_to(jnp.arange(5.0)[None, :, None, None, None], (32, 5, 1, 1, 1))
  shown, labels = pretext_video.reverse_some(jax.random.PRNGKey(0), stacks)
  first = np.asarray(shown[:, 0, 0, 0, 0])
  np.testing.assert_array_equal(first, np.where(np.asarray(labels) == 1, 0.0, 4.0))
  assert 0 < int(labels.sum()) < 32


def test_shuffle_and_learn_triplets_are_labelled_by_their_order():
  from avjax.models import pretext_video
  idx, labels = pretext_video.shuffle_and_learn_indices(jax.random.PRNGKey(0), 256, 8)
  idx, labels = np.asarray(idx), np.asarray(labels)
  ordered = (idx[:, 0] < idx[:, 1]) & (idx[:, 1] < idx[:, 2])
  np.testing.assert_array_equal(ordered, labels == 1)
  # A negative's middle frame lies outside (b, d): before b or after d.
  neg = labels == 0
  assert ((idx[neg, 1] < idx[neg, 0]) | (idx[neg, 1] > idx[neg, 2])).all()
  assert 0.35 < labels.mean() < 0.65 and idx.min() >= 0 and idx.max() < 8
  weights = pretext_video.above_median(jnp.array([0.1, 0.5, 0.2, 0.9]))
  np.testing.assert_array_equal(weights, [0, 1, 0, 1])


def test_odd_one_out_marks_the_one_shuffled_sub_sequence():
  from avjax.models import pretext_video
  seqs, odd = pretext_video.odd_one_out_indices(jax.random.PRNGKey(0), 64, 10, 6, 4)
  seqs, odd = np.asarray(seqs), np.asarray(odd)
  in_order = np.all(np.diff(seqs, axis=-1) > 0, axis=-1)      # [B, N]
  assert (in_order.sum(axis=1) == 5).all()                    # exactly one is not
  np.testing.assert_array_equal(np.argmin(in_order, axis=1), odd)
  assert len(set(odd.tolist())) == 6                          # every position gets used
  assert all(len(set(s)) == 4 for s in seqs.reshape(-1, 4))  # distinct frames


def test_odd_one_out_encodes_a_sub_sequence_by_its_ends():
  """The paper's sum of consecutive feature differences, from the two ends alone."""
  from avjax.models import pretext_video
  seqs, _ = pretext_video.odd_one_out_indices(jax.random.PRNGKey(3), 8, 10, 6, 4)
  ends = np.asarray(pretext_video.sequence_ends(seqs))
  np.testing.assert_array_equal(ends, np.asarray(seqs)[..., [0, 3]])
  f = np.random.default_rng(0).normal(size=(8, 6, 4, 5)).astype(np.float32)  # [B, N, L, C]
  want = np.sum(f[:, :, 1:] - f[:, :, :-1], axis=2)
  got = pretext_video.sum_of_differences(jnp.asarray(f[:, :, [0, 3]]))
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("task", ["arrow_of_time", "shuffle_and_learn", "odd_one_out"])
def test_frame_order_net_trains_and_probes_the_middle_frame(task):
  from avjax.models import pretext_video
  model = pretext_video.FrameOrderNet(vision_widths=(4, 8), task=task, hidden=8)
  stacks = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(1), stacks, None)
  out, _ = model.apply(variables, stacks, None, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.PRNGKey(2)})
  classes = 6 if task == "odd_one_out" else 2
  assert out["order_logits"].shape == (4, classes)
  assert np.isfinite(float(losses.order_xent(outputs=out, batch={})))
  assert model.apply(variables, stacks, None)["frame_features"].shape == (4, 8)


def test_frame_only_models_retrieve_by_their_features(data_dir, tmp_path):
  """Image-image retrieval of a frame-only model, on its pooled tower features
  (config.evals.retrieval.features="features"); its embeddings are a one-line error."""
  from avjax.evaluators import runner
  from tests.conftest import tiny_config
  config = tiny_config("rotation", data_dir, train_split="train")
  config.evals.retrieval.update(batch_size=8, k=5, features="features")
  record = runner.evaluate(config, str(tmp_path), evals=["retrieval"], random_init=True,
                           pictures=True)
  assert set(record["metrics"]) == {"retrieval_im_im_ndcg@5", "retrieval_im_im_recall@5"}
  assert 0.0 < record["metrics"]["retrieval_im_im_ndcg@5"] <= 1.0
  config.evals.retrieval.features = "embedding"
  with pytest.raises(ValueError, match="frame-only models: config.evals.retrieval.features"):
    runner.evaluate(config, str(tmp_path), evals=["retrieval"], random_init=True, pictures=False)


NT_XENT_ON_DEVICES = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from avjax import losses
z = np.load(sys.argv[1])
mesh = Mesh(np.array(jax.devices()), ("data",))
sharded = jax.device_put(jnp.asarray(z), NamedSharding(mesh, P(None, "data")))
assert len(sharded.sharding.device_set) == 4
loss = jax.jit(lambda z: losses.nt_xent(outputs={"simclr_projections": z}, batch={},
                                        temperature=0.5))(sharded)
print(float(loss))
"""


def test_nt_xent_over_a_mesh_takes_negatives_from_every_device(tmp_path):
  """The batch split over 4 devices: each view's negatives are all 2B - 2 other
  views, the other devices' included, as in numpy over the whole batch."""
  from tests.conftest import ROOT, run_python
  rng = np.random.default_rng(1)
  z = rng.normal(size=(2, 8, 4)).astype(np.float32)
  z /= np.linalg.norm(z, axis=-1, keepdims=True)
  np.save(tmp_path / "z.npy", z)
  r = run_python(["-c", NT_XENT_ON_DEVICES, str(tmp_path / "z.npy")], cwd=ROOT)
  assert r.returncode == 0, r.stderr[-2000:]
  np.testing.assert_allclose(float(r.stdout.strip().splitlines()[-1]), _nt_xent_numpy(z, 0.5),
                             rtol=1e-5)
  # Negatives from one device's shard alone would give another value.
  local = np.mean([_nt_xent_numpy(z[:, 2 * i:2 * i + 2], 0.5) for i in range(4)])
  assert abs(local - _nt_xent_numpy(z, 0.5)) > 0.1


def test_lab_against_a_hand_table_and_back():
  from avjax import colour
  rgb = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0],
                   [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
  # CIE Lab (D65) of the sRGB primaries, white, black and mid grey, as colour-science
  # tables give them.
  want = [[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86],
          [100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.39, 0.0, 0.0]]
  np.testing.assert_allclose(colour.rgb_to_lab(rgb), want, atol=0.02)
  lab = np.asarray(colour.rgb_to_lab(rgb), np.float64)
  linear = np.where(np.asarray(rgb) <= 0.04045, np.asarray(rgb) / 12.92,
                    ((np.asarray(rgb) + 0.055) / 1.055) ** 2.4)
  np.testing.assert_allclose(colour.lab_to_linear_rgb(lab), linear, atol=1e-4)


def test_ab_quantisation_soft_encoding_and_rebalancing():
  from avjax import colour
  bins = colour.ab_bins()
  assert bins.shape[1] == 2 and 200 < len(bins) < 330
  assert np.all(np.mod(bins, 10) == 0) and [0, 0] in bins.tolist()
  # Every sRGB colour's ab lies within a bin's cell: its nearest bin is at most
  # half a diagonal away.
  rgb = np.random.default_rng(0).uniform(size=(2000, 3)).astype(np.float32)
  ab = np.asarray(colour.rgb_to_lab(jnp.asarray(rgb)))[:, 1:]
  nearest = np.min(np.linalg.norm(ab[:, None] - bins[None], axis=-1), axis=1)
  assert nearest.max() <= 5 * np.sqrt(2) + 1e-3
  # A colour at a bin's centre: most mass there, the rest on its 4 neighbours.
  code = np.asarray(colour.soft_encode(jnp.asarray([[0.0, 0.0]]), jnp.asarray(bins)))[0]
  assert np.isclose(code.sum(), 1.0) and (code > 0).sum() == 5
  centre = bins.tolist().index([0.0, 0.0])
  side = np.exp(-100 / 50)  # a neighbour at distance 10, sigma 5
  np.testing.assert_allclose(code[centre], 1 / (1 + 4 * side), rtol=1e-5)
  # Rebalancing: rare bins weigh more, and the weights average 1 under the prior.
  prior = jnp.asarray([0.7, 0.2, 0.1])
  w = np.asarray(colour.rebalancing_weights(prior))
  assert w[0] < w[1] < w[2] and np.isclose(float(prior @ w), 1.0)
  np.testing.assert_allclose(w / w[0], (0.35 + 1 / 6) / (np.array([0.35, 0.1, 0.05]) + 1 / 6),
                             rtol=1e-6)


def test_mae_masking_hides_exactly_three_quarters_disjointly_and_deterministically():
  from avjax.models import mae
  key = jax.random.PRNGKey(3)
  kept, hidden, restore = mae.random_masking(key, 8, 16, 0.75)
  assert kept.shape == (8, 4) and hidden.shape == (8, 12)
  for k, h in zip(np.asarray(kept), np.asarray(hidden)):
    assert not set(k) & set(h) and sorted(set(k) | set(h)) == list(range(16))
  again = mae.random_masking(key, 8, 16, 0.75)
  np.testing.assert_array_equal(again[0], kept)
  assert not np.array_equal(mae.random_masking(jax.random.PRNGKey(4), 8, 16, 0.75)[0], kept)
  # restore puts kept ++ hidden back in patch order.
  both = np.concatenate([kept, hidden], axis=1)
  np.testing.assert_array_equal(np.take_along_axis(both, np.asarray(restore), axis=1),
                                np.broadcast_to(np.arange(16), (8, 16)))
  # Every patch is hidden about 3/4 of the time.
  _, many, _ = mae.random_masking(key, 4000, 16, 0.75)
  share = np.bincount(np.asarray(many).ravel(), minlength=16) / 4000
  assert np.abs(share - 0.75).max() < 0.04


def test_mae_patches_and_loss_on_masked_patches_only():
  from avjax.models import mae
  images = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  patches = mae.patchify(images, 2)
  assert patches.shape == (2, 4, 12)
  np.testing.assert_array_equal(patches[0, 1], np.asarray(images[0, 0:2, 2:4]).reshape(-1))
  target = jnp.zeros((1, 4, 12))
  pred = jnp.stack([jnp.full((12,), v) for v in (1.0, 2.0, 3.0, 4.0)])[None]
  mask = jnp.array([[0.0, 1.0, 0.0, 1.0]])
  loss = losses.mae_pixels(outputs={"mae_predictions": pred, "mae_targets": target,
                                    "mae_mask": mask}, batch={})
  np.testing.assert_allclose(loss, (4.0 + 16.0) / 2)  # patches 1 and 3 only
  normalised = mae.normalised_patches(jnp.array([[1.0, 2.0, 3.0]]))
  np.testing.assert_allclose(normalised, [[-1.2247, 0.0, 1.2247]], atol=1e-3)


def test_mae_trains_on_a_quarter_and_probes_every_patch():
  from avjax.models import mae
  model = mae.MAE(patch=4, width=16, depth=1, num_heads=2, mlp_dim=32, decoder_width=8,
                  decoder_depth=1, decoder_heads=2)
  frames = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(1), frames, None)
  out = model.apply(variables, frames, None, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  assert out["mae_predictions"].shape == out["mae_targets"].shape == (2, 16, 48)
  np.testing.assert_array_equal(out["mae_mask"].sum(axis=1), [12, 12])
  assert model.apply(variables, frames, None)["frame_features"].shape == (2, 16)


def test_exemplar_bank_fills_in_order_and_stops_when_full():
  bank = jnp.zeros((5, 1, 1, 3), jnp.uint8)
  patches = jnp.arange(1, 4, dtype=jnp.uint8)[:, None, None, None] * jnp.ones((1, 1, 1, 3),
                                                                            jnp.uint8)
  bank, filled = pretext.fill_bank(bank, jnp.int32(0), patches)
  assert int(filled) == 3
  bank, filled = pretext.fill_bank(bank, filled, patches + 10)
  assert int(filled) == 5
  np.testing.assert_array_equal(bank[:, 0, 0, 0], [1, 2, 3, 11, 12])  # 13 had no room


def test_exemplar_net_classifies_its_banks_exemplars():
  model = pretext.ExemplarNet(vision_widths=(4, 8), num_exemplars=6, patch=8)
  frames = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(1), frames, None)
  out, new = model.apply(variables, frames, None, train=True, mutable=["batch_stats"],
                         rngs={"dropout": jax.random.PRNGKey(2)})
  assert int(new["batch_stats"]["exemplar_filled"]) == 4
  assert out["exemplar_logits"].shape == (4, 6)
  assert int(out["exemplar_ids"].max()) < 4  # drawn from the filled rows only
  assert np.isfinite(float(losses.exemplar_xent(outputs=out, batch={})))


PRETEXT = ("rotation", "relative_position", "colourization", "exemplar", "simclr", "mae",
           "arrow_of_time", "shuffle_and_learn", "odd_one_out")


@pytest.mark.slow
@pytest.mark.parametrize("name", PRETEXT)
def test_one_paper_scale_update_step(name):
  """Each pretext config at paper scale (its network, its 224 px crops, frame stacks
  and settings): one update of a batch of 2 is finite and moves the weights."""
  import importlib
  from avjax import input as input_lib
  from tests.conftest import one_update
  config = importlib.import_module(f"configs.{name}").get_config()
  assert config.data.crop == 224
  state, new, metrics = one_update(config, input_lib.plausible_train_batch(config, 2))
  assert np.isfinite(float(metrics["loss"])), metrics
  moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new.params),
                                                        jax.tree.leaves(state.params))]
  assert max(moved) > 0
