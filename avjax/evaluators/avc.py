"""Audio-visual correspondence accuracy on a held-out split.

Every clip is scored twice: with its own audio (a positive) and with the audio of
the next clip in the split (a negative unless it is the same video), so the
figure is balanced and deterministic.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from avjax import frames as frames_lib
from avjax import input as input_lib
from avjax import losses
from avjax.evaluators import base


class AVCAccuracy(base.Evaluator):

  def setup(self):
    model = self.model
    # Checked at build time (abstractly, no compute), not at the first evaluation.
    outputs = jax.eval_shape(lambda: model.init_with_output(
        jax.random.PRNGKey(0), *input_lib.dummy_inputs(self.data_config), False)[0])
    if "logits" not in outputs:
      raise ValueError(f"config.evals.avc: {type(model).__name__} has no correspondence head "
                       "(`logits`); set config.evals.avc.every=0")

    @jax.jit
    def counts(variables, batch):
      frames = frames_lib.to_model_frames(jnp.concatenate([batch["frames"], batch["frames"]]))
      spec = jnp.concatenate([batch["spectrogram"], batch["neg_spectrogram"]])
      labels = jnp.concatenate([jnp.ones_like(batch["neg_label"]), batch["neg_label"]])
      mask = jnp.concatenate([batch["mask"], batch["mask"]])
      out = model.apply(variables, frames, spec, train=False)
      correct = (losses.avc_predictions(out) == labels).astype(jnp.float32)
      xent_batch = {"label": labels, "mask": mask}
      loss_name = "avc_softmax_xent" if out["logits"].ndim == 2 else "avc_sigmoid_xent"
      loss = losses.get(loss_name)(outputs=out, batch=xent_batch, reduction=False)
      return jnp.sum(correct * mask), jnp.sum(mask), jnp.sum(loss * mask)

    self._counts = counts

  def run(self, variables) -> dict:
    # Sums over global batches: correct on any number of hosts (no gathering).
    correct = total = loss = 0.0
    for local in self.reader.eval_iterator():
      batch = input_lib.to_global(
          {k: local[k] for k in ("frames", "spectrogram", "neg_spectrogram", "neg_label", "mask")},
          self.sharding)
      c, n, l = jax.device_get(self._counts(variables, batch))
      correct, total, loss = correct + c, total + n, loss + l
    if total == 0:
      raise ValueError("AVC evaluation saw no examples")
    return {"avc_accuracy": float(correct / total), "avc_loss": float(loss / total),
            "avc_examples": int(total)}
