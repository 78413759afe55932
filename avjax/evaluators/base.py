"""What every evaluator shares: one split read in evaluation mode, and a gather
loop that runs a jitted function over it and keeps the real (unpadded) clips."""
from __future__ import annotations

import collections
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from avjax import frames as frames_lib
from avjax import input as input_lib


class Evaluator:
  """Configured by `config.evals.<name>`; `run(variables) -> {metric: value}`.

  Subclasses set up their jitted functions in `setup()`. `pictures()` writes
  PNGs for the evaluate command; most evaluators have none.
  """
  # Evaluators that gather every clip's outputs on one host.
  single_process = False

  def __init__(self, eval_config, *, model, mesh, data_config, default_split: str, seed: int = 0):
    if self.single_process and jax.process_count() > 1:
      raise NotImplementedError(f"{type(self).__name__} gathers the split on one host; "
                                "run it single-process (python -m avjax.evaluate)")
    self.config = eval_config
    self.split = eval_config.split or default_split
    self.reader = input_lib.make_reader(data_config, self.split,
                                        global_batch=eval_config.batch_size, seed=0)
    self.sharding = NamedSharding(mesh, P("data"))
    self.model, self.data_config, self.seed = model, data_config, seed
    self.setup()

  def setup(self) -> None:
    pass

  def apply(self, variables, batch: dict) -> dict:
    """The model on an evaluation batch (inside jit): uint8 frames normalised first."""
    return self.model.apply(variables, frames_lib.to_model_frames(batch["frames"]),
                            batch["spectrogram"], train=False)

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
    return out

  def gather(self, fn: Callable, variables, *, inputs: Sequence[str] = ("frames", "spectrogram"),
             host_keys: Sequence[str] | dict[str, Callable] = (),
             limit: int | None = None) -> dict:
    """Runs `fn(variables, batch) -> {name: [B, ...]}` over the split.

    -> {name: [N, ...]} numpy over this host's real clips, plus `host_keys`
    from the batches (a dict maps each through its function per batch, e.g. to
    shrink it); `limit` stops after that many clips.
    """
    if not isinstance(host_keys, dict):
      host_keys = {k: None for k in host_keys}
    out = collections.defaultdict(list)
    seen = 0
    for local in self.reader.eval_iterator():
      batch = input_lib.to_global({k: local[k] for k in inputs}, self.sharding)
      keep = local["mask"] > 0
      for k, v in jax.device_get(fn(variables, batch)).items():
        out[k].append(np.asarray(v)[keep])
      for k, host_fn in host_keys.items():
        v = np.asarray(local[k])[keep]
        out[k].append(host_fn(v) if host_fn else v)
      seen += int(keep.sum())
      if limit is not None and seen >= limit:
        break
    if not out:
      raise ValueError(f"split {self.split!r} yielded no clips")
    return {k: np.concatenate(v)[:limit] for k, v in out.items()}


def single_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Multi-hot [N, C] -> (class index [M], row mask [N]) over the clips with exactly
  one label: probes and clustering score single-label classification."""
  one = labels.sum(1) == 1
  return labels[one].argmax(1), one
