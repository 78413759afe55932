"""Ambient-sound targets: fitted on the training split only, deterministic, joined
into training batches by clip id, and a frame-only network trained on them."""
import json
import shutil

import numpy as np
import pytest

from data_pipelines import sound_targets
from tests.conftest import run_python, tiny_config


@pytest.fixture()
def data_copy(data_dir, tmp_path):
  out = tmp_path / "data"
  shutil.copytree(data_dir, out)
  return out


def _read(path):
  with open(path) as f:
    return json.load(f)


def test_kmeans_targets_are_deterministic_and_come_from_the_training_fit(data_copy):
  model = sound_targets.fit_and_write(str(data_copy), "train", k=4, workers=1)
  first = _read(data_copy / "train" / sound_targets.TARGETS)
  model_bytes = (data_copy / sound_targets.MODEL).read_bytes()
  again = sound_targets.fit_and_write(str(data_copy), "train", k=4, workers=2)
  assert _read(data_copy / "train" / sound_targets.TARGETS) == first
  assert again["centroids"] == model["centroids"]
  targets = np.asarray(first["targets"])
  assert targets.shape == (24, 1) and len(set(targets[:, 0])) > 1
  assert len(first["keys"]) == len(set(first["keys"]))

  # Validation: assigned by the training fit, which it does not change.
  sound_targets.assign_and_write(str(data_copy), "validation", workers=1)
  assert (data_copy / sound_targets.MODEL).read_bytes() == model_bytes
  val = _read(data_copy / "validation" / sound_targets.TARGETS)
  files = sorted(str(p) for p in (data_copy / "validation").glob("*.tfrecord"))
  keys, stats = sound_targets.split_features(files, "texture", workers=1)
  assert val["keys"] == keys
  assert val["targets"] == sound_targets.assign(_read(data_copy / sound_targets.MODEL), stats).tolist()
  own_fit = sound_targets.fit(stats, kind="clusters", k=4)
  assert own_fit["centroids"] != model["centroids"]


def test_binary_code_is_the_signs_of_the_top_projections():
  r = np.random.default_rng(0)
  stats = r.standard_normal((50, 8)) * np.arange(1, 9)
  model = sound_targets.fit(stats, kind="bits", k=3)
  bits = sound_targets.assign(model, stats)
  assert bits.shape == (50, 3) and set(np.unique(bits)) == {0, 1}
  z = (stats - stats.mean(0)) / stats.std(0)
  u, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
  for j in range(3):  # each bit is the sign of a principal projection (up to the axis' sign)
    proj = (z - z.mean(0)) @ vt[j]
    assert np.all(bits[:, j] == (proj > 0)) or np.all(bits[:, j] == (proj <= 0))


def test_the_reader_joins_each_clips_target_into_training_batches(data_copy):
  import tensorflow as tf

  from avjax import input as input_lib
  sound_targets.fit_and_write(str(data_copy), "train", k=3, workers=1)
  config = tiny_config("ambient", data_copy)
  config.data.sound_k = 3
  reader = input_lib.make_reader(config.data, "train", global_batch=8, seed=0)
  batch = next(reader.train_iterator())
  t = _read(data_copy / "train" / sound_targets.TARGETS)
  ids = tf.strings.to_hash_bucket_fast(t["keys"], 2**31 - 1).numpy()
  by_id = dict(zip(ids.tolist(), t["targets"]))
  assert batch["sound_target"].shape == (8, 1)
  assert [by_id[i] for i in batch["clip_id"].tolist()] == batch["sound_target"].tolist()
  config.data.sound_k = 5  # not what was fitted: said before any batch
  reader = input_lib.make_reader(config.data, "train", global_batch=8, seed=0)
  with pytest.raises(ValueError, match=r"sound_targets.json: clusters with k=3, but the config"):
    next(reader.train_iterator())


def test_ambient_config_trains_a_frame_only_network_on_the_targets(data_copy, tmp_path):
  from avjax import train
  sound_targets.fit_and_write(str(data_copy), "train", k=3, workers=1)
  config = tiny_config("ambient", data_copy, total_steps=2, log_every=1)
  config.data.sound_k = config.model.num_targets = 3
  config.checkpoint.every = 2
  config.evals.linear_probe.update(every=2, batch_size=8, num_folds=2)
  metrics = train.train_and_evaluate(config, str(tmp_path / "w"))
  assert 0.0 <= metrics["linear_probe_frame_accuracy_mean"] <= 1.0
  assert "avc_accuracy" not in metrics


def test_sound_clusters_command(data_copy):
  r = run_python(["-m", "avjax.sound_clusters", f"--data={data_copy}", "--split=validation"])
  assert r.returncode != 0
  assert r.stderr.strip().splitlines()[-1] == (
      f"avjax-sound-clusters: {data_copy}/sound_model.json: no fitted sound model; run "
      f"avjax-sound-clusters --data={data_copy} --split=train first")
  r = run_python(["-m", "avjax.sound_clusters", f"--data={data_copy}", "--k=3", "--bits",
                  "--features=mfcc", "--workers=1"])
  assert r.returncode == 0, r.stderr[-2000:]
  model = _read(data_copy / sound_targets.MODEL)
  assert (model["kind"], model["k"], model["features"], model["fit_split"]) == ("bits", 3, "mfcc", "train")
  r = run_python(["-m", "avjax.sound_clusters", f"--data={data_copy}", "--split=validation",
                  "--workers=1"])
  assert r.returncode == 0, r.stderr[-2000:]
  assert np.asarray(_read(data_copy / "validation" / sound_targets.TARGETS)["targets"]).shape == (10, 3)
