"""A training batch as the reader ships it -> the models' inputs, inside the jitted step.

The reader leaves per-element arithmetic to the device, where XLA fuses it into
one pass over the batch and the host's cores stay on what only they can do
(reading records, decoding JPEGs): frames come as uint8 crops with their
augmentation draws (avjax/frames.py), audio as |STFT| windows with their gains.
On the host, log-spectrograms were a quarter of the paper-scale reader's work
per example (benchmarks/pipeline.py). Evaluation batches carry uint8 crops
without draws and log-spectrograms already computed on the host.
"""
from __future__ import annotations

import jax.numpy as jnp

from avjax import frames as frames_lib
from data_pipelines import contract
from data_pipelines import spectrogram as spectrogram_lib


def log_spectrogram(magnitude, gain, spec: spectrogram_lib.SpectrogramSpec):
  """|STFT| [B, T, F'] and gains [B] -> log-spectrograms [B, F, T, 1] float32, as
  the evaluation reader computes them on the host (clip_ops.add_spectrograms).
  Bins past spec.num_bins (F' > F: the reader's row padding) are dropped."""
  return spectrogram_lib.log_of_gained_magnitude(magnitude[..., :spec.num_bins], gain, spec,
                                                 xp=jnp)[..., None]


def model_inputs(batch: dict, spec: spectrogram_lib.SpectrogramSpec, *,
                 both_examples: bool = False) -> dict:
  """A reader batch (inside jit) -> the same batch with `frames` (and a
  `frame_stack`) as the models take them, `spectrogram` from `stft_magnitude`,
  and the augmentation draws consumed. `spec` gives the log's offset.
  `both_examples` (config.data.both_examples): the frames come one row per clip
  and serve the examples at rows 2i and 2i + 1 (data_pipelines.pairs.pair_both)."""
  augment = {k: batch[k] for k in contract.AUGMENT_KEYS if k in batch}
  out = {k: v for k, v in batch.items() if k not in contract.AUGMENT_KEYS}
  frame_draws = {k: v for k, v in augment.items() if not contract.KEYS[k].audio}
  if "frames" in out:
    out["frames"] = frames_lib.to_model_frames(out["frames"], frame_draws)
  if "frame_stack" in out:
    out["frame_stack"] = frames_lib.stack_to_model_frames(out["frame_stack"], frame_draws)
  if both_examples:
    for key in ("frames", "frame_stack"):
      if key in out:
        out[key] = jnp.repeat(out[key], 2, axis=0)
  if "stft_magnitude" in out:
    gain = augment.get("aug_gain", jnp.ones(out["stft_magnitude"].shape[:1], jnp.float32))
    out["spectrogram"] = log_spectrogram(out.pop("stft_magnitude"), gain, spec)
  return out
