"""Audio-visual correspondence accuracy on a held-out split.

Every clip is scored twice: with its own audio (a positive) and with the audio of
the next clip in the split (a negative unless it is the same video), so the
figure is balanced and deterministic (data_pipelines.pairs.avc_halves). With
shifted negatives (config.data.negatives="shifted") the second is the clip's own
audio out of sync, and the figure is synchronisation accuracy.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from avjax import input as input_lib
from avjax import losses
from avjax.evaluators import base
from data_pipelines import pairs


class AVCAccuracy(base.Evaluator):

  def setup(self):
    kind = self.fns.correspondence
    if not kind:  # said when the evaluator is built, not at the first evaluation
      raise ValueError(f"config.evals.avc: {self.fns.name} has no correspondence head "
                       "(`logits`); set config.evals.avc.every=0")
    loss_fn = losses.get(losses.AVC_LOSS[kind])

    frames, audio = self.fns.frame_input, self.fns.audio_input
    self._inputs = (frames, audio, "neg_" + audio, "neg_label", "mask")

    @jax.jit
    def counts(variables, batch):
      both = pairs.avc_halves(batch, jnp, frames, audio)
      out = self.fns.predict(variables, both[frames], both[audio])
      correct = (losses.avc_predictions(out, kind) == both["label"]).astype(jnp.float32)
      loss = loss_fn(outputs=out, batch=both, reduction=False)
      mask = both["mask"]
      return jnp.sum(correct * mask), jnp.sum(mask), jnp.sum(loss * mask)

    self._counts = counts

  def run(self, variables) -> dict:
    # Sums over global batches: correct on any number of hosts (no gathering).
    correct = total = loss = 0.0
    for local in self.reader.eval_iterator():
      batch = input_lib.to_global({k: local[k] for k in self._inputs}, self.sharding)
      c, n, l = jax.device_get(self._counts(variables, batch))
      correct, total, loss = correct + c, total + n, loss + l
    if total == 0:
      raise ValueError("AVC evaluation saw no examples")
    return {"avc_accuracy": float(correct / total), "avc_loss": float(loss / total),
            "avc_examples": int(total)}
