"""Audio-visual synchronisation: shifted negatives, the network's parts, and the
chain through the trainer and evaluators."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import models, predict
from avjax.models import sync
from data_pipelines.tfrecord import DataError
from configs import sync as sync_config
from tests.conftest import init_with_output, tiny_config


@pytest.mark.parametrize("shape,kernel,strides", [
    ((2, 8, 8, 8, 5), (3, 3, 3), (2, 1, 1)), ((2, 7, 9, 9, 5), (3, 3, 3), (2, 2, 2)),
    ((2, 8, 16, 16, 3), (5, 7, 7), (2, 2, 2)), ((2, 5, 6, 6, 4), (1, 5, 5), (1, 2, 2))])
def test_3d_convolution_by_temporal_taps_equals_xla_3d(shape, kernel, strides):
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=shape), jnp.float32)
  k = jnp.asarray(r.normal(size=(*kernel, shape[-1], 6)), jnp.float32)
  want = jax.lax.conv_general_dilated(x, k, strides, "SAME",
                                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  np.testing.assert_allclose(sync.conv3d_by_taps(x, k, strides), want, atol=1e-4)


def test_pool_to_steps_takes_the_max_of_equal_segments():
  x = jnp.arange(10.0).reshape(1, 10, 1)
  np.testing.assert_array_equal(sync.pool_to_steps(x, 4)[0, :, 0], [2, 4, 7, 9])
  np.testing.assert_array_equal(sync.pool_to_steps(x, 10)[0, :, 0], np.arange(10.0))


def test_mu_law_is_odd_monotone_and_keeps_the_unit_range():
  x = jnp.linspace(-1, 1, 101)
  y = sync.mu_law(x)
  np.testing.assert_allclose(y, -sync.mu_law(-x), atol=1e-7)
  assert float(y[0]) == pytest.approx(-1.0) and float(y[-1]) == pytest.approx(1.0)
  assert bool(jnp.all(jnp.diff(y) > 0))
  assert float(sync.mu_law(jnp.array(0.01))) > 0.2  # quiet samples are lifted


def test_paper_and_tiny_networks_give_a_logit_and_a_map():
  for arg, steps, side in [(None, 16, 14), ("tiny", 4, 8)]:
    c = sync_config.get_config(arg)
    out = predict.model_fns(models.build(c.model), c.data).output_shapes()
    assert out["logits"].shape == (1,) and out["cam"].shape == (1, steps, side, side)
    assert out["heatmap"].shape == (1, side, side)


@pytest.mark.parametrize("pooling", ["mean", "topk"])
def test_the_logit_pools_the_time_averaged_cam(pooling):
  """With the paper's mean pooling the logit is the logit layer on the mean-pooled
  features; with topk it is the mean of the map's highest cells."""
  c = sync_config.get_config("tiny")
  c.model.update(pooling=pooling, pooling_topk=0.25)
  model = models.build(c.model)
  r = np.random.default_rng(0)
  frames = jnp.asarray(r.uniform(size=(2, 8, 64, 64, 3)), jnp.float32)
  wave = jnp.asarray(r.uniform(-1, 1, size=(2, 8000)), jnp.float32)
  out, variables = init_with_output(model, jax.random.PRNGKey(0), frames, wave)
  flat = np.asarray(out["heatmap"]).reshape(2, -1)
  np.testing.assert_allclose(out["heatmap"], np.asarray(out["cam"]).mean(1), rtol=1e-5, atol=1e-6)
  if pooling == "mean":
    head = variables["params"]["logits"]
    want = np.asarray(out["fused_features"]) @ np.asarray(head["kernel"])[:, 0] + head["bias"][0]
    np.testing.assert_allclose(out["logits"], want, rtol=1e-4, atol=1e-5)
  else:
    np.testing.assert_allclose(out["logits"], np.sort(flat, 1)[:, -16:].mean(1), rtol=1e-5)


def sync_config_on(data_dir, **overrides):
  """The tiny sync config on the fixture's 1.4 s clips: 1 s windows leave 0.4 s,
  room for shifts of 0.2 s either way."""
  config = tiny_config("sync", data_dir, train_split="train", **overrides)
  config.data.min_shift = 0.2
  return config


def test_every_negative_is_shifted_by_at_least_min_shift(data_dir):
  from avjax import input as input_lib
  config = sync_config_on(data_dir)
  reader = input_lib.make_reader(config.data, "train", global_batch=8, seed=0)
  it = reader.train_iterator()
  shifts, labels = [], []
  for _ in range(4):
    b = next(it)
    shifts.append(b["audio_shift"]), labels.append(b["label"])
    assert b["frame_stack"].shape == (8, 8, 32, 32, 3) and b["waveform"].shape == (8, 8000)
  shifts, labels = np.concatenate(shifts), np.concatenate(labels)
  assert set(labels.tolist()) == {0, 1}
  assert np.all(np.abs(shifts[labels == 0]) >= config.data.min_shift - 1e-6)
  assert np.all(shifts[labels == 1] == 0)
  evaluation = input_lib.make_reader(config.data, "validation", global_batch=8, seed=0)
  b = next(evaluation.eval_iterator())
  assert np.all(b["neg_label"] == 0)
  assert np.abs(b["waveform"] - b["neg_waveform"]).max() > 0


def test_a_split_with_no_clip_long_enough_for_the_shift_is_refused_in_one_line(data_dir):
  from avjax import input as input_lib
  config = sync_config_on(data_dir)
  config.data.min_shift = 0.3  # 1.4 s clips, 1 s windows: 0.4 s of room, not 0.6
  with pytest.raises(DataError, match=r"train: no clip is long enough for the 1 s audio window "
                     r"plus twice config.data.min_shift=0.3 s \(24 of 24 too short\)"):
    input_lib.make_reader(config.data, "train", global_batch=8, seed=0)


@pytest.fixture(scope="module")
def uneven_dir(tmp_path_factory):
  """Three 3.4 s videos prepared as 1.5 s clips: each file's last clip (0.4 s)
  is too short for a 1 s window shifted by 0.2 s either way, as a real file's is."""
  from data_pipelines import ingest, synthetic
  from tests.conftest import FRAME_SIZE, SAMPLE_RATE, TINY_SPECTROGRAM
  root = tmp_path_factory.mktemp("uneven")
  video = synthetic.VideoSpec(size=48, seconds=3.4)
  for i in range(3):
    frames, wav, _, _ = synthetic.make_scene(synthetic.SplitSpec("u", 3, seed=9), i, video)
    synthetic.write_mp4(str(root / f"long_{i}.mp4"), frames, wav, video)
  settings = ingest.PrepareSettings(sample_rate=SAMPLE_RATE, frame_size=FRAME_SIZE,
                                    spectrogram=TINY_SPECTROGRAM, clip_seconds=1.5,
                                    min_seconds=0.3)
  for split in ("train", "validation"):
    ingest.prepare(str(root), str(root / "prepared" / split), settings=settings,
                   files_per_shard=2, workers=2, quiet=True)
  return root / "prepared"


def test_clips_too_short_for_the_shift_are_skipped_and_counted(uneven_dir, tmp_path):
  from avjax import input as input_lib
  from avjax import train
  config = sync_config_on(uneven_dir)
  reader = input_lib.make_reader(config.data, "train", global_batch=4, seed=0)
  assert reader.num_skipped == 3 and reader.epoch_size == 6
  assert sorted(len(p) for p in reader.skip.values()) == [1, 2]  # shards of 2 files and 1
  batches = [b for _, b in zip(range(5), reader.train_iterator())]
  # Resuming at step 3 gives the same batches: the left-out clips are not numbered.
  again = [b for _, b in zip(range(2), reader.train_iterator(start_step=3))]
  for a, b in zip(batches[3:], again):
    np.testing.assert_array_equal(a["waveform"], b["waveform"])
  evaluation = input_lib.make_reader(config.data, "validation", global_batch=4, seed=0)
  masks = [b["mask"] for b in evaluation.eval_iterator()]
  assert sum(m.sum() for m in masks) == 6 and len(masks) == evaluation.num_eval_batches() == 2
  metrics = train.train_and_evaluate(sync_config_on(uneven_dir, total_steps=2, log_every=1),
                                     str(tmp_path))
  assert metrics["avc_examples"] == 12  # the 6 usable validation clips, each with its shift


def test_sync_trains_and_is_scored_on_sync_and_its_map(data_dir, tmp_path):
  from avjax import train
  from avjax.evaluators import runner
  config = sync_config_on(data_dir, total_steps=2, log_every=1)
  config.evals.avc.batch_size = 8
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert metrics["avc_examples"] == 20 and 0.0 <= metrics["avc_accuracy"] <= 1.0
  out = runner.evaluate(config, str(tmp_path), evals=["localisation"], split="validation",
                            pictures=False)
  assert 0.0 <= out["metrics"]["localisation_pointing"] <= 1.0


def test_offset_choices_pick_each_clips_highest_score():
  from avjax.evaluators import sync_offsets
  scores = np.array([0.1, 0.9, 0.3, 2.0, -1.0])
  clips = np.array([4, 4, 4, 7, 7])
  offsets = np.array([-0.2, 0.0, 0.2, 0.4, 0.0])
  choice, counts = sync_offsets.offset_choices(scores, clips, offsets)
  np.testing.assert_allclose(choice, [0.0, 0.4])
  assert counts.tolist() == [3, 2]


def test_offset_evaluation_scores_every_fitting_offset(data_dir, tmp_path):
  from avjax.evaluators import runner
  config = sync_config_on(data_dir)
  config.evals.sync_offsets.update(max_offset=0.4, step=0.2)
  out = runner.evaluate(config, str(tmp_path), evals=["sync_offsets"], split="validation",
                            random_init=True, pictures=False)["metrics"]
  # 1.4 s clips: the middle frame is 17 (the box's, 18, is not taken) and windows
  # fit for frames 12-22, so of -10, -5, 0, 5, 10 frames only -5, 0 and 5 are scored.
  assert out["sync_offset_clips"] == 10 and out["sync_offset_chance"] == pytest.approx(1 / 3)
  assert 0.0 <= out["sync_offset_accuracy"] <= out["sync_offset_within_0.2s"] <= 1.0


@pytest.mark.slow
def test_one_paper_scale_update_step_on_small_inputs():
  """The paper's network and audio window (4.2 s at 21 kHz), on 8 frames of 48 px:
  one update of one clip as both its examples (the paper's both_examples) is
  finite and moves the weights."""
  from avjax import train
  c = sync_config.get_config()
  model = models.build(c.model)
  schedule = train.make_schedule(c)
  tx = train.make_optimizer(c, schedule)
  init = predict.jit_once(lambda rng: model.init(rng, jnp.zeros((1, 8, 48, 48, 3)),
                                        jnp.zeros((1, 88200)), train=False))
  variables = init(jax.random.PRNGKey(0))
  state = train.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                           batch_stats=variables["batch_stats"],
                           opt_state=tx.init(variables["params"]), rng=jax.random.PRNGKey(1),
                           nonfinite_step=-jnp.ones((), jnp.int32))
  r = np.random.default_rng(0)
  assert c.data.both_examples
  batch = {"frame_stack": r.integers(0, 255, (1, 8, 48, 48, 3), dtype=np.uint8),
           "waveform": r.normal(0, 0.1, (2, 88200)).astype(np.float32),
           "label": np.array([1, 0], np.int32)}
  new, metrics = jax.jit(train.make_update_fn(model, tx, schedule, c))(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  moved = jnp.abs(new.params["logits"]["kernel"] - state.params["logits"]["kernel"]).max()
  assert float(moved) > 0


def test_inputs_the_model_takes_are_asked_of_the_reader():
  from avjax import config_check
  c = sync_config.get_config("tiny")
  c.data.frame_stack = 0
  with pytest.raises(config_check.ConfigError, match="data.frame_stack=0: model 'sync' takes a stack"):
    config_check.check(c)
  c = sync_config.get_config("tiny")
  c.data.audio = "spectrogram"
  with pytest.raises(config_check.ConfigError, match="data.audio='spectrogram': model 'sync' takes the 'waveform'"):
    config_check.check(c)


def test_own_footage_variant_warm_starts_the_whole_network_on_train_and_validation():
  c = sync_config.get_config("tiny,init=runs/sync_embedded")
  assert (c.init_from.workdir, c.init_from.modules) == ("runs/sync_embedded", "*")
  assert (c.data.train_split, c.data.eval_split) == ("train", "validation")
  assert c.total_steps == 600
  plain = sync_config.get_config("tiny")
  assert plain.init_from.workdir == "" and plain.data.train_split == "sync_train"


def test_both_examples_give_each_clip_in_sync_then_shifted(data_dir):
  """config.data.both_examples: a batch of 8 is 4 clips, each at two rows in a
  row, first with its own window (label 1, no shift), then with its shifted one
  (label 0, at least min_shift away), its frames and their draws once; no clip
  twice in the first 12; restored at step 2, the stream goes on as it ran."""
  from avjax import input as input_lib
  from data_pipelines import contract
  config = sync_config_on(data_dir)
  config.data.both_examples = True
  make = lambda: input_lib.make_reader(config.data, "train", global_batch=8, seed=0)
  it = make().train_iterator()
  batches = [next(it) for _ in range(3)]
  for b in batches:
    np.testing.assert_array_equal(b["label"], [1, 0] * 4)
    assert b["frame_stack"].shape == (4, 8, 32, 32, 3) and b["waveform"].shape == (8, 8000)
    assert all(b[key].shape[0] == 4 for key in contract.FRAME_KEYS if key in b)
    for key in ("clip_id", "video_id"):
      np.testing.assert_array_equal(b[key][0::2], b[key][1::2], err_msg=key)
    assert np.all(b["audio_shift"][0::2] == 0)
    assert np.all(np.abs(b["audio_shift"][1::2]) >= config.data.min_shift - 1e-6)
    assert np.all(np.abs(b["waveform"][0::2] - b["waveform"][1::2]).max(axis=1) > 0)
  assert len({int(c) for b in batches for c in b["clip_id"][0::2]}) == 12
  restored = next(make().train_iterator(start_step=2))
  for key in batches[2]:
    np.testing.assert_array_equal(restored[key], batches[2][key], err_msg=key)
  with pytest.raises(ValueError, match="a host's batch of 7 examples"):
    next(input_lib.make_reader(config.data, "train", global_batch=7, seed=0).train_iterator())
  from avjax import config_check
  config.batch_size = 7
  with pytest.raises(ValueError, match=r"config.batch_size=7: must be even with data.both_examples"):
    config_check.check(config)
  config.data.negatives = "stream"
  with pytest.raises(ValueError, match="both_examples .* needs negatives='shifted'"):
    input_lib.reader_spec(config.data)


def test_both_examples_repeat_frames_in_the_step_as_shipping_them_twice_would(data_dir):
  """The step repeats each clip's frames for its two examples: the update equals
  the update of the same batch with the frames and draws repeated on the host."""
  import jax
  from avjax import input as input_lib
  from data_pipelines import contract
  from tests.conftest import one_update
  config = sync_config_on(data_dir)
  config.data.both_examples = True
  batch = input_lib.plausible_train_batch(config, 8)
  assert batch["frame_stack"].shape[0] == 4 and batch["label"].shape == (8,)
  _, shared, shared_metrics = one_update(config, batch)
  twice = {k: np.repeat(v, 2, axis=0) if k in contract.FRAME_KEYS else v for k, v in batch.items()}
  config.data.both_examples = False
  _, shipped, shipped_metrics = one_update(config, twice)
  np.testing.assert_allclose(shared_metrics["loss"], shipped_metrics["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(shared.params), jax.tree.leaves(shipped.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_both_examples_on_two_devices_add_no_communication():
  """Split over 2 devices, the step's repeat of each clip's frames stays on the
  device that holds the clip: the same loss as the frames shipped twice, and the
  same collective ops in the compiled update."""
  import json
  from tests.conftest import ROOT, run_python
  r = run_python(["tests/scripts/both_examples_mesh.py"], cwd=ROOT)
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(out["shared"]["loss"], out["twice"]["loss"], rtol=1e-5)
  assert out["shared"]["collectives"] == out["twice"]["collectives"]
