"""What every evaluator shares: one split read in evaluation mode, and a gather
loop that runs a jitted function over it and keeps the real (unpadded) clips.

On several hosts each reads its own shards, and the gather hands every host
every host's clips (in process order), so all compute the same metrics."""
from __future__ import annotations

import collections
from typing import Callable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from avjax import input as input_lib
from avjax import mesh as mesh_lib
from data_pipelines import fs


class Evaluator:
  """Configured by `config.evals.<name>`; `run(variables) -> {metric: value}`.

  Subclasses set up their jitted functions in `setup()`. `pictures()` writes
  PNGs for the evaluate command; most evaluators have none.
  """
  def __init__(self, eval_config, *, fns, mesh, data_config, default_split: str, seed: int = 0):
    self.config = eval_config
    self.split = eval_config.split or default_split
    tfds_config = eval_config.get("tfds")
    if tfds_config is not None and tfds_config.name:  # a TFDS dataset by name
      self.split = f"tfds:{tfds_config.name}/{tfds_config.split}"
      self.reader = input_lib.make_tfds_reader(tfds_config, data_config,
                                               global_batch=eval_config.batch_size)
    else:
      # Audio windows of their own length where the evaluator asks (the probes' protocol).
      seconds = eval_config.get("window_seconds", 0.0)
      self.reader = input_lib.make_reader(data_config, self.split,
                                          global_batch=eval_config.batch_size, seed=0,
                                          window_seconds=seconds)
    self.spec = self.reader.spec  # the reader's settings: crop, fps, framing
    self.sharding = mesh_lib.batch_sharding(mesh)
    self.fns, self.seed = fns, seed
    self.setup()

  def setup(self) -> None:
    pass

  def apply(self, variables, batch: dict) -> dict:
    """The model on an evaluation batch (inside jit)."""
    return self.fns.predict(variables, batch.get(self.fns.frame_input),
                            batch.get(self.fns.audio_input))

  def outputs_fn(self, **names: str) -> Callable:
    """A jitted (variables, batch) -> {name: the model's output `names[name]`}: only
    those outputs, so that the gather fetches no more from the devices."""
    @jax.jit
    def outputs(variables, batch):
      out = self.apply(variables, batch)
      return {name: out[key] for name, key in names.items()}
    return outputs

  def beside_shards(self, name: str) -> str:
    """A file or folder beside the split's shards (an evaluator's default truth)."""
    return fs.join(fs.dirname(self.reader.all_files[0]), name)

  def run(self, variables) -> dict:
    raise NotImplementedError

  def pictures(self, variables, out_dir: str) -> list[str]:
    del variables, out_dir
    return []

  def require_labels(self, name: str) -> None:
    if not self.reader.num_classes:
      raise ValueError(f"config.evals.{name} needs labels: split {self.split!r} has none "
                       "in its manifest (prepare it with --labels)")

  def parse_modalities(self, name: str) -> list[str]:
    """config.evals.<name>.modalities ("audio,frame", or one of them) as a list."""
    value = self.config.modalities
    out = [m.strip() for m in value.split(",") if m.strip()]
    if not out or set(out) - {"audio", "frame"}:
      raise ValueError(f"config.evals.{name}.modalities: {value!r}; use audio, frame")
    has = getattr(self.reader, "modalities", None)  # a TFDS dataset may hold one of them
    if has is not None:
      out = [m for m in out if m in has]
      if not out:
        raise ValueError(f"config.evals.{name}.modalities: {value!r}, and {self.split} holds "
                         f"only {has}")
    return out

  def gather(self, fn: Callable, variables, *, inputs: Sequence[str] | None = None,
             host_keys: Sequence[str] | dict[str, Callable] = (),
             limit: int | None = None, window_hop: float = 0.0,
             audio_offsets: Sequence[int] = ()) -> dict:
    """Runs `fn(variables, batch) -> {name: [B, ...]}` over the split.

    -> {name: [N, ...]} numpy over this host's real clips, plus `host_keys`
    from the batches (a dict maps each through its function per batch, e.g. to
    shrink it); `limit` stops after that many clips. `inputs`: the batch keys
    sent to the devices (default: the model's frame and audio inputs);
    `window_hop` > 0: a row per window of each clip; `audio_offsets`: a row per
    audio offset of each clip (Reader.eval_iterator).
    """
    if inputs is None:
      inputs = (self.fns.frame_input, self.fns.audio_input)
    if not isinstance(host_keys, dict):
      host_keys = {k: None for k in host_keys}
    out = collections.defaultdict(list)
    seen = 0
    # Every host reads the same number of (padded) batches, so the collectives
    # below line up, and `seen` counts every host's clips.
    for local in self.reader.eval_iterator(window_hop, audio_offsets):
      batch = input_lib.to_global({k: local[k] for k in inputs if k in local}, self.sharding)
      keep = all_hosts(local["mask"]) > 0
      for k, v in every_row(fn(variables, batch)).items():
        out[k].append(np.asarray(v)[keep])
      for k, host_fn in host_keys.items():
        v = all_hosts(np.asarray(local[k]))[keep]
        out[k].append(host_fn(v) if host_fn else v)
      seen += int(keep.sum())
      if limit is not None and seen >= limit:
        break
    if not out:
      raise ValueError(f"split {self.split!r} yielded no clips")
    return {k: np.concatenate(v)[:limit] for k, v in out.items()}


def every_row(tree):
  """Global arrays -> numpy holding all their rows, on every host."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def all_hosts(local: np.ndarray) -> np.ndarray:
  """This host's rows [n, ...] -> every host's rows, in process order (the order
  of the global batch). Each host must hold the same shape (padded batches do).
  Strings and bytes travel as zero-padded uint8 rows."""
  if jax.process_count() == 1:
    return local
  if local.dtype.kind not in "OSU":
    return multihost_utils.process_allgather(local, tiled=True)
  raw = [x if isinstance(x, bytes) else str(x).encode() for x in local.reshape(-1)]
  width = int(np.max(multihost_utils.process_allgather(
      np.array([max(map(len, raw), default=0)]), tiled=True)))
  rows = np.zeros((len(raw), max(width, 1)), np.uint8)
  for i, x in enumerate(raw):
    rows[i, :len(x)] = np.frombuffer(x, np.uint8)
  gathered = multihost_utils.process_allgather(rows, tiled=True)
  strings = np.array([bytes(r).rstrip(b"\0") for r in gathered], dtype=object)
  return strings.reshape(-1, *local.shape[1:])


def text(x) -> str:
  """A string batch value (bytes from TensorFlow, or str) as str."""
  return x.decode() if isinstance(x, bytes) else str(x)


def single_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Multi-hot [N, C] -> (class index [M], row mask [N]) over the clips with exactly
  one label: probes and clustering score single-label classification."""
  one = labels.sum(1) == 1
  return labels[one].argmax(1), one


def timeline(outputs: np.ndarray, starts: np.ndarray, window: float):
  """One clip's windows' per-step outputs [n, t, ...] (window i from starts[i] s)
  -> (step centres [T], outputs [T, ...]) on the grid of the steps (window / t),
  each step the mean of every window's estimate of it."""
  steps = outputs.shape[1]
  width = window / steps
  slot = np.round((starts[:, None] + (np.arange(steps)[None] + 0.5) * width) / width - 0.5)
  slot = slot.astype(int).reshape(-1)
  flat = outputs.reshape(-1, *outputs.shape[2:])
  used = np.unique(slot)
  means = np.stack([flat[slot == s].mean(axis=0) for s in used])
  return (used + 0.5) * width, means
