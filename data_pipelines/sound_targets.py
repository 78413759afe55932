"""Ambient-sound targets (Owens et al., ECCV 2016): each clip's sound statistics,
clustered on the training split, become the class a frame-only network predicts.

`fit_and_write(data_dir, fit_split)` computes every training clip's statistics
(data_pipelines/texture.py, or MFCC mean/std), standardises them and fits
k-means (or the paper's binary code: the signs of the top principal
projections). The fitted model goes to DATA_DIR/sound_model.json and each
clip's target to SPLIT/sound_targets.json, beside the shards. Other splits get
theirs from that same fit (`assign_and_write`), never from a fit of their own.
Clips are keyed by `clip_key` (file name and start time); the reader joins the
targets into training batches by that key.
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
from typing import Sequence

import numpy as np

from data_pipelines import dmvr, fs, texture, tfrecord

MODEL = "sound_model.json"
TARGETS = "sound_targets.json"
FEATURES = ("texture", "mfcc")
KINDS = ("clusters", "bits")


def clip_key(filename: str, start_us: int) -> str:
  return f"{filename}@{int(start_us)}"


def record_features(record: bytes, features: str) -> tuple[str, np.ndarray]:
  """One serialized clip -> (its key, its statistics vector)."""
  ex = dmvr.sequence_example_class().FromString(record)
  ctx = ex.context.feature
  filename = ctx[dmvr.FILENAME].bytes_list.value[0].decode()
  start = ctx[dmvr.START_US].int64_list.value[0] if ctx[dmvr.START_US].int64_list.value else 0
  rate = int(ctx[dmvr.SAMPLE_RATE].int64_list.value[0])
  wave = np.concatenate([np.asarray(f.float_list.value, np.float32)
                         for f in ex.feature_lists.feature_list[dmvr.WAVEFORM].feature])
  if features == "texture":
    vec = texture.feature_vector(texture.texture_statistics(wave, rate))
  elif features == "mfcc":
    vec = texture.mfcc_statistics(wave, rate)
  else:
    raise ValueError(f"sound features {features!r}: must be one of {FEATURES}")
  return clip_key(filename, start), vec


def _shard_features(args) -> list[tuple[str, np.ndarray]]:
  path, features = args
  return [record_features(r, features) for r in tfrecord.read_records(path)]


def split_features(files: Sequence[str], features: str, workers: int = 0):
  """-> (keys [N], statistics [N, D]) of every clip of the shards, in file order."""
  jobs = [(f, features) for f in files]
  if workers == 1 or len(files) == 1:
    rows = [row for job in jobs for row in _shard_features(job)]
  else:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers or None, mp_context=ctx) as pool:
      rows = [row for shard in pool.map(_shard_features, jobs) for row in shard]
  if not rows:
    raise ValueError(f"no clips in {list(files)[:3]}")
  return [k for k, _ in rows], np.stack([v for _, v in rows]).astype(np.float64)


def fit(stats: np.ndarray, *, kind: str, k: int, seed: int = 0) -> dict:
  """Standardisation plus k-means centroids (`clusters`) or the top-k principal
  axes (`bits`), as a JSON-able model."""
  from sklearn.cluster import KMeans
  from sklearn.decomposition import PCA
  if kind not in KINDS:
    raise ValueError(f"sound targets {kind!r}: must be one of {KINDS}")
  if k < 2 or k > len(stats):
    raise ValueError(f"k={k}: must be between 2 and the {len(stats)} training clips")
  mean, std = stats.mean(0), stats.std(0)
  std = np.where(std > 1e-8, std, 1.0)  # constant statistics (silent bands) stay 0
  z = (stats - mean) / std
  model = {"kind": kind, "k": k, "mean": mean.tolist(), "std": std.tolist()}
  if kind == "clusters":
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
    model["centroids"] = km.cluster_centers_.tolist()
  else:
    pca = PCA(n_components=k, random_state=seed).fit(z)
    model["components"] = pca.components_.tolist()
    model["centre"] = pca.mean_.tolist()
  return model


def assign(model: dict, stats: np.ndarray) -> np.ndarray:
  """Targets [N, 1] (cluster index) or [N, k] (bits, 0/1) from a fitted model."""
  z = (stats - np.asarray(model["mean"])) / np.asarray(model["std"])
  if model["kind"] == "clusters":
    c = np.asarray(model["centroids"])
    d = (z ** 2).sum(1)[:, None] - 2 * z @ c.T + (c ** 2).sum(1)[None, :]
    return np.argmin(d, axis=1)[:, None].astype(np.int32)
  proj = (z - np.asarray(model["centre"])) @ np.asarray(model["components"]).T
  return (proj > 0).astype(np.int32)


def target_dims(model: dict) -> int:
  return 1 if model["kind"] == "clusters" else model["k"]


def _write_targets(split_dir: str, model: dict, keys, targets) -> str:
  path = fs.join(split_dir, TARGETS)
  fs.write_text(path, json.dumps({"kind": model["kind"], "k": model["k"],
                                  "features": model["features"], "keys": list(keys),
                                  "targets": targets.tolist()}))
  return path


def _shards(split_dir: str) -> list[str]:
  files = sorted(f for f in fs.glob(fs.join(split_dir, "*.tfrecord")))
  if not files:
    raise FileNotFoundError(f"{split_dir}: no shards (*.tfrecord)")
  return files


def fit_and_write(data_dir: str, fit_split: str = "train", *, kind: str = "clusters", k: int = 30,
                  features: str = "texture", seed: int = 0, workers: int = 0) -> dict:
  """Fits on `fit_split` and writes the model and that split's targets."""
  split_dir = fs.join(data_dir, fit_split)
  keys, stats = split_features(_shards(split_dir), features, workers)
  model = {**fit(stats, kind=kind, k=k, seed=seed), "features": features, "fit_split": fit_split,
           "num_clips": len(keys)}
  fs.write_text(fs.join(data_dir, MODEL), json.dumps(model))
  _write_targets(split_dir, model, keys, assign(model, stats))
  return model


def _read_json(path: str, missing: str) -> dict:
  if not fs.exists(path):
    raise FileNotFoundError(f"{path}: {missing}")
  return json.loads(fs.read_text(path))


def load_model(data_dir: str) -> dict:
  return _read_json(fs.join(data_dir, MODEL), "no fitted sound model; run avjax-sound-clusters "
                    f"--data={data_dir} --split=train first")


def assign_and_write(data_dir: str, split: str, workers: int = 0) -> str:
  """Targets for `split` from the model fitted on the training split."""
  model = load_model(data_dir)
  keys, stats = split_features(_shards(fs.join(data_dir, split)), model["features"], workers)
  return _write_targets(fs.join(data_dir, split), model, keys, assign(model, stats))


def load_targets(split_dir: str) -> dict:
  return _read_json(fs.join(split_dir, TARGETS), "no sound targets; run avjax-sound-clusters "
                    f"--data={fs.dirname(split_dir)} --split={fs.basename(split_dir)}")
