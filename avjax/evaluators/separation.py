"""Audio-visual source separation on held-out clips: mix two, separate each by its
frame, and score the separated sounds against the clips' own.

Clip i of the split is mixed with clip i + n/2 (cyclically: every clip is a
stem of two mixtures, never mixed with itself), each scaled by 1/2 as in
training, and the model separates both clips' sounds from the mixture. Reported:
  - `separation_si_sdri`: the mean SI-SDR improvement, SI-SDR of the separated
    sound minus that of the mixture itself, against the clip's stem (dB; the
    mixture scores 0 improvement by definition);
  - `separation_si_sdr` and `separation_mixture_si_sdr`: the two terms;
  - on the first `bss_eval_mixtures` mixtures, mir_eval's BSS Eval v3 SDR, SIR and
    SAR of the two separated sounds (`separation_sdr`, ...), and the SDR of the
    mixture given as both estimates (`separation_mixture_sdr`).
Every host reads the split, gathers all its clips, and computes the same figures.
"""
from __future__ import annotations

import jax
import numpy as np

from avjax import input as input_lib
from avjax import metrics
from avjax.evaluators import base


def partners(n: int) -> np.ndarray:
  """The clip each of n clips is mixed with: the one half the split away."""
  if n < 2:
    raise ValueError(f"separation needs at least 2 clips to mix, the split has {n}")
  return (np.arange(n) + n // 2) % n


class Separation(base.Evaluator):
  def setup(self):
    if (self.fns.audio_input != "waveform"
        or "separation_waveform" not in self.fns.output_shapes()):
      raise ValueError(f"config.evals.separation: {self.fns.name} separates no sound; it scores "
                       "separation models (configs/separation.py)")

    @jax.jit
    def separate(variables, batch):
      return {"separated": self.apply(variables, batch)["separation_waveform"]}

    self._separate = separate

  def clips(self) -> dict:
    """Every clip's frame and waveform (all hosts'), up to config.clips."""
    return self.gather(lambda variables, batch: {}, None, inputs=(),
                       host_keys=(self.fns.frame_input, "waveform"),
                       limit=self.config.clips or None)

  def separated(self, variables, frames: np.ndarray, mixtures: np.ndarray) -> np.ndarray:
    """The model's separation of each mixture row by its frame, in global batches
    of which each host supplies its slice."""
    size, hosts, me = self.config.batch_size, jax.process_count(), jax.process_index()
    local = size // hosts
    out = []
    for start in range(0, len(frames), size):
      rows = np.arange(start, start + size) % len(frames)  # the last batch wraps round
      mine = rows[me * local:(me + 1) * local]
      batch = input_lib.to_global({self.fns.frame_input: frames[mine],
                                   self.fns.audio_input: mixtures[mine]}, self.sharding)
      out.append(base.every_row(self._separate(variables, batch))["separated"])
    return np.concatenate(out)[:len(frames)]

  def run(self, variables) -> dict:
    g = self.clips()
    stems = g["waveform"].astype(np.float32) / 2
    other = partners(len(stems))
    mixtures = stems + stems[other]
    separated = self.separated(variables, g[self.fns.frame_input], mixtures)
    own, mixed = metrics.si_sdr(separated, stems), metrics.si_sdr(mixtures, stems)
    out = {"separation_si_sdri": float(np.mean(own - mixed)),
           "separation_si_sdr": float(np.mean(own)),
           "separation_mixture_si_sdr": float(np.mean(mixed)),
           "separation_clips": int(len(stems))}
    # Mixture i holds clips i and other[i]; clip other[i]'s separation from the same
    # mixture is row other[i]'s only when other is an involution (n even).
    scored = [i for i in range(len(stems)) if other[other[i]] == i and i < other[i]]
    scored = scored[:self.config.bss_eval_mixtures]
    if scored:
      bss = [metrics.bss_eval(np.stack([stems[i], stems[other[i]]]),
                              np.stack([separated[i], separated[other[i]]])) for i in scored]
      mix = [metrics.bss_eval(np.stack([stems[i], stems[other[i]]]),
                              np.stack([mixtures[i], mixtures[i]]))[0] for i in scored]
      for name, values in zip(("sdr", "sir", "sar"), zip(*bss)):
        out[f"separation_{name}"] = float(np.mean(values))
      out["separation_mixture_sdr"] = float(np.mean(mix))
      out["separation_bss_eval_mixtures"] = len(scored)
    return out
