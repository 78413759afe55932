"""The HEAR 2021 API over an avjax audio tower: `hear-validator avjax.hear -m PATH`.

  model = load_model(path)      # an avjax-export folder (or its audio/), or a workdir
  emb, ts = get_timestamp_embeddings(audio, model)   # [n, T, d], [n, T] milliseconds
  scene = get_scene_embeddings(audio, model)         # [n, d]

`audio` is float [n, samples] at `model.sample_rate`. Timestamp embeddings are
the tower's windows (the training length) centred every HOP_MS milliseconds
from 0 to the end, zero-padded at both ends, as avjax-embed cuts them; audio
shorter than one window gives one. Windows are embedded BATCH at a time, so
memory holds a batch of windows, not the recording. The scene embedding is the
mean of a clip's timestamp embeddings.

HEAR accepts only some sample rates. A model trained at another rate (the tiny
configs' 8 kHz) declares the smallest HEAR rate that is a whole multiple of its
own and is given audio resampled to its rate (librosa's soxr).

A SavedModel needs TensorFlow only; a workdir runs its checkpoint live in JAX.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from data_pipelines import fs

HEAR_RATES = (16000, 22050, 44100, 48000)
HOP_MS = 50  # HEAR's suggestion: a 50 ms tolerance for transcription tasks
BATCH = 256


def hear_rate(model_rate: int) -> int:
  """The HEAR rate a model at `model_rate` Hz declares."""
  for rate in HEAR_RATES:
    if rate % model_rate == 0:
      return rate
  raise ValueError(f"a model at {model_rate} Hz: no HEAR rate {HEAR_RATES} is a multiple of it")


def _import_tf():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  return tf


def _saved_model_dir(path: str) -> str | None:
  for d in (fs.join(path, "audio"), path):
    if fs.exists(fs.join(d, "saved_model.pb")):
      return d
  return None


def _tower(path: str) -> tuple[Callable[[np.ndarray], np.ndarray], int, int, int]:
  """(windows [N, S] -> [N, D], model sample rate, window samples, D) of a
  SavedModel folder or a training workdir."""
  saved = _saved_model_dir(path)
  if saved is not None:
    tf = _import_tf()
    module = tf.saved_model.load(saved)
    fn = lambda w: module.embed_windows(tf.constant(w, tf.float32))["embedding"].numpy()
    return (fn, int(module.sample_rate.numpy()), int(module.window_samples.numpy()),
            int(module.embedding_size.numpy()))
  if fs.exists(fs.join(path, "config.json")):
    from avjax.embed import Embedder
    emb = Embedder(path, batch_size=BATCH)
    size = emb.embed_windows(np.zeros((1, emb.window_samples), np.float32)).shape[-1]
    return emb.embed_windows, emb.sample_rate, emb.window_samples, int(size)
  raise FileNotFoundError(f"{path}: neither an avjax-export folder (audio/saved_model.pb) "
                          "nor a training workdir (config.json)")


def load_model(model_file_path: str = ""):
  """A tf.Module with sample_rate, scene_embedding_size, timestamp_embedding_size."""
  if not model_file_path:
    raise ValueError("load_model needs a path: an avjax-export folder or a training workdir")
  tf = _import_tf()
  embed_windows, model_rate, window, size = _tower(model_file_path)
  model = tf.Module(name="avjax_hear")
  model.sample_rate = hear_rate(model_rate)
  model.scene_embedding_size = model.timestamp_embedding_size = size
  model.model_rate, model.window_samples = model_rate, window
  model.embed_windows = embed_windows
  return model


def _to_model_rate(clip: np.ndarray, model) -> np.ndarray:
  if model.sample_rate == model.model_rate:
    return clip
  import librosa
  return librosa.resample(clip, orig_sr=model.sample_rate, target_sr=model.model_rate,
                          res_type="soxr_hq")


def _clip_embeddings(clip: np.ndarray, model) -> np.ndarray:
  """One clip -> [T, D], windows streamed BATCH at a time."""
  from avjax.embed import stream_windows
  rate = model.model_rate
  windows = stream_windows([_to_model_rate(clip, model)], rate, model.window_samples,
                           HOP_MS / 1000)
  out, batch = [], []
  for _, w in windows:
    batch.append(w)
    if len(batch) == BATCH:
      out.append(model.embed_windows(np.stack(batch)))
      batch = []
  if batch:
    out.append(model.embed_windows(np.stack(batch)))
  return np.concatenate(out).astype(np.float32)


def get_timestamp_embeddings(audio, model):
  """audio [n, samples] at model.sample_rate -> (embeddings [n, T, d] float32,
  timestamps [n, T] float32 milliseconds), as TensorFlow tensors."""
  tf = _import_tf()
  clips = np.asarray(audio, np.float32)
  if clips.ndim != 2:
    raise ValueError(f"audio must be [n, samples], got shape {clips.shape}")
  emb = np.stack([_clip_embeddings(c, model) for c in clips])
  times = np.arange(emb.shape[1], dtype=np.float32) * HOP_MS
  return tf.constant(emb), tf.constant(np.broadcast_to(times, emb.shape[:2]))


def get_scene_embeddings(audio, model):
  """audio [n, samples] -> [n, d] float32: the mean of each clip's timestamp embeddings."""
  tf = _import_tf()
  emb, _ = get_timestamp_embeddings(audio, model)
  return tf.reduce_mean(emb, axis=1)
