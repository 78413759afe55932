"""Synchronisation over a range of offsets: which audio offset does the model
find in sync with the frames?

Each clip's frames (at its middle frame) are scored against its audio moved by every offset of
[-max_offset, max_offset] seconds, `step` apart (in whole frames), that fits in
the clip; the model's choice is the offset of the highest logit. Reported: the
share of clips whose choice is 0 (`sync_offset_accuracy`), within `tolerance`
seconds of it, and the chance level (the mean of 1 / offsets scored).
"""
from __future__ import annotations

import numpy as np

from avjax.evaluators import base


def offset_choices(scores: np.ndarray, clips: np.ndarray, offsets: np.ndarray):
  """Rows (one per clip and offset) -> (each clip's highest-scoring offset,
  the number of offsets it was scored at)."""
  ids, inverse = np.unique(clips, return_inverse=True)
  best = np.full(len(ids), -np.inf)
  choice = np.zeros(len(ids))
  for row, c in enumerate(inverse):
    if scores[row] > best[c]:
      best[c], choice[c] = scores[row], offsets[row]
  return choice, np.bincount(inverse, minlength=len(ids))


class SyncOffsets(base.Evaluator):
  def setup(self):
    if self.fns.correspondence != "sigmoid":
      raise ValueError(f"config.evals.sync_offsets: {self.fns.name} gives no sync logit; "
                       "it scores synchronisation models (configs/sync.py)")
    c, fps = self.config, self.spec.fps
    step = max(1, int(round(c.step * fps)))
    reach = int(round(c.max_offset * fps)) // step * step
    self.offsets = tuple(range(-reach, reach + 1, step))
    self.fps = fps
    self._scores = self.outputs_fn(score="logits")

  def run(self, variables) -> dict:
    g = self.gather(self._scores, variables, host_keys=("clip_index", "audio_offset"),
                    audio_offsets=self.offsets)
    choice, counts = offset_choices(g["score"], g["clip_index"], g["audio_offset"])
    half_frame = 0.5 / self.fps
    tol = self.config.tolerance
    return {"sync_offset_accuracy": float(np.mean(np.abs(choice) < half_frame)),
            f"sync_offset_within_{tol:g}s": float(np.mean(np.abs(choice) <= tol + half_frame)),
            "sync_offset_chance": float(np.mean(1.0 / counts)),
            "sync_offset_clips": int(len(choice))}
