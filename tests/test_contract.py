"""Real batches and model outputs against the contracts (data_pipelines/contract.py,
avjax/models/__init__.py)."""
import dataclasses

import jax
import numpy as np
import pytest

from avjax import input as input_lib
from avjax import models, predict
from data_pipelines import contract
from data_pipelines import reader as reader_lib
from tests.conftest import tiny_config


def sizes(config, reader, batch_size):
  bins, frames = input_lib.spectrogram_spec(config.data).shape
  return {"batch": batch_size, "crop": config.data.crop, "bins": bins, "frames": frames,
          "shipped_bins": reader_lib.shipped_bins(reader.spec),
          "classes": reader.num_classes, "stack": config.data.frame_stack,
          "samples": input_lib.spectrogram_spec(config.data).num_samples}


@pytest.mark.parametrize("negatives,per_clip", [("stream", 1), ("in_batch", 1), ("stream", 3)])
def test_training_batches_keep_the_contract(data_dir, negatives, per_clip):
  config = tiny_config("avenet", data_dir)
  config.data.negatives = negatives
  config.data.examples_per_clip = per_clip
  reader = input_lib.make_reader(config.data, "train", global_batch=8, seed=0)
  it = reader.train_iterator()
  for _ in range(2):
    assert contract.violations(next(it), contract.TRAIN, sizes(config, reader, 8)) == []


def test_sync_batches_with_both_examples_keep_the_contract(data_dir):
  """Shifted negatives, each clip as both its examples: the frame keys one row per
  clip; a batch that ships them once per example breaks the contract."""
  from tests.test_sync import sync_config_on
  config = sync_config_on(data_dir)
  config.data.both_examples = True
  reader = input_lib.make_reader(config.data, "train", global_batch=8, seed=0)
  batch = next(reader.train_iterator())
  want = {**sizes(config, reader, 8), "frame_rows": 4}
  assert contract.violations(batch, contract.TRAIN, want) == []
  assert "'frame_stack': shape (4, 8, 32, 32, 3), expected (8, 8, 32, 32, 3)" in (
      contract.violations(batch, contract.TRAIN, sizes(config, reader, 8)))
  # What the update is compiled for (exports, memory plans) is what the reader ships.
  shapes = input_lib.train_batch_shapes(config, 8, num_classes=reader.num_classes)
  assert {name: batch[name].shape for name in shapes} == {n: s.shape for n, s in shapes.items()}


def test_evaluation_batches_keep_the_contract(data_dir):
  config = tiny_config("avenet", data_dir)
  reader = input_lib.make_reader(config.data, "validation", global_batch=8, seed=0)
  batches = list(reader.eval_iterator())
  assert len(batches) == 2  # 10 clips: the second batch is padded
  for b in batches:
    assert contract.violations(b, contract.EVAL, sizes(config, reader, 8)) == []


def test_waveform_batches_with_frame_stacks_keep_the_contract(data_dir):
  """SoundNet's reader: the raw window under `waveform` in place of the
  log-spectrogram, and the frames under each of its steps."""
  config = tiny_config("soundnet", data_dir)
  config.data.frame_stack = 3
  train = input_lib.make_reader(config.data, "train", global_batch=8, seed=0)
  batch = next(train.train_iterator())
  assert contract.violations(batch, contract.TRAIN, sizes(config, train, 8)) == []
  assert "spectrogram" not in batch and batch["waveform"].shape == (8, 8000)
  # The stack's crops are the same window of different frames: not all equal.
  stack = batch["frame_stack"].astype(np.int32)
  assert np.abs(stack[:, 0] - stack[:, -1]).max() > 0
  evaluation = input_lib.make_reader(config.data, "validation", global_batch=8, seed=0)
  for b in evaluation.eval_iterator():
    assert contract.violations(b, contract.EVAL, sizes(config, evaluation, 8)) == []


def test_stack_frames_sit_under_their_segments():
  import tensorflow as tf
  from data_pipelines import clip_ops, spectrogram
  aspec = spectrogram.SpectrogramSpec(sample_rate=8000, win_length=256, hop_length=160,
                                      n_fft=256, seconds=2.0)
  # A 2 s window from 0.5 s in 4 segments: centres 0.75, 1.25, 1.75, 2.25 s at 10 fps.
  got = clip_ops.stack_frames(tf.constant(4000), 100, 10.0, aspec, 4).numpy()
  np.testing.assert_array_equal(got, [8, 13, 18, 23])  # halves rounded up: evenly spaced
  assert clip_ops.stack_frames(tf.constant(4000), 20, 10.0, aspec, 4).numpy().max() == 19
  # One segment per frame, from a frame's time (the tiny video configs' 8 frames
  # in 0.32 s at 25 fps): 8 consecutive frames, none twice.
  aspec = dataclasses.replace(aspec, seconds=0.32)
  got = clip_ops.stack_frames(tf.constant(8000 * 7 // 25), 100, 25.0, aspec, 8).numpy()
  np.testing.assert_array_equal(got, np.arange(8, 16))


def test_violations_are_found():
  good = {k: np.zeros((2, *(3 if isinstance(d, str) else d for d in key.shape)),
                      "S1" if key.dtype == "string" else key.dtype)
          for k, key in contract.keys(contract.EVAL).items()
          if k not in contract.AUDIO_KEYS["waveform"]}
  s = {"batch": 2, "crop": 3, "bins": 3, "frames": 3, "classes": 3, "stack": 3, "samples": 3}
  assert contract.violations(good, contract.EVAL, s) == []
  bad = {**good, "frames": good["frames"].astype(np.float32), "extra": good["mask"]}
  del bad["mask"]
  assert sorted(contract.violations(bad, contract.EVAL, s)) == [
      "'frames': dtype float32, expected uint8", "missing 'mask'", "unexpected 'extra'"]


def test_device_and_host_keys_partition_the_contract():
  assert set(contract.HOST_ONLY) == {"video_id", "audio_video_id", "audio_start", "fps",
                                     "filename", "clip_id", "clip_index", "audio_shift",
                                     "audio_offset"}
  assert set(contract.AUGMENT_KEYS) == {"aug_flip", "aug_brightness", "aug_contrast",
                                        "aug_saturation", "aug_zoom", "aug_gain"}
  assert "aug_gain" not in contract.FRAME_KEYS


@pytest.mark.parametrize("name", ["l3", "avenet", "avolnet", "selavi", "avcontrastive", "cosine",
                                  "ambient", "frame_classifier", "soundnet", "rotation",
                                  "relative_position", "simclr", "arrow_of_time"])
def test_models_declare_their_head_and_outputs(name, data_dir):
  config = tiny_config(name, data_dir)
  model = models.build(config.model)
  fns = predict.model_fns(model, config.data)
  outputs = fns.output_shapes()
  assert set(outputs) <= set(models.OUTPUTS), set(outputs) - set(models.OUTPUTS)
  assert fns.correspondence in models.CORRESPONDENCE
  if fns.correspondence is None:
    assert "logits" not in outputs
  else:
    assert outputs["logits"].shape == {"softmax": (1, 2), "sigmoid": (1,)}[fns.correspondence]


def test_init_is_the_trainers_step_zero(data_dir):
  """One init rule: jit_once(ModelFns.init)(PRNGKey(seed)) (evaluation's random
  init) are the trainer's step-0 weights."""
  from avjax import mesh as mesh_lib
  from avjax import predict
  from avjax import train
  config = tiny_config("avenet", data_dir)
  fns = train.make_train_functions(config, mesh_lib.make_mesh(config))
  state = fns.init(jax.random.PRNGKey(3))
  direct = predict.jit_once(fns.model_fns.init)(jax.random.PRNGKey(3))
  for a, b in zip(jax.tree.leaves(train.variables_of(state)), jax.tree.leaves(direct)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_configs_list_every_loss():
  from avjax import losses
  from configs import common
  assert set(common.LOSS_NAMES) == set(losses.LOSSES)
