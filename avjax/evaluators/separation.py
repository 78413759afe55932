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
from data_pipelines import fs


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
    self._separate = self.outputs_fn(separated="separation_waveform")

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
    if self.config.mixtures == "scenes":
      return self.run_scenes(variables)
    if self.config.mixtures != "pairs":
      raise ValueError(f"config.evals.separation.mixtures: {self.config.mixtures!r}; use pairs "
                       "or scenes")
    g = self.clips()
    stems = g["waveform"].astype(np.float32) / 2
    other = partners(len(stems))
    mixtures = stems + stems[other]
    separated = self.separated(variables, g[self.fns.frame_input], mixtures)
    # Mixture i holds clips i and other[i]; clip other[i]'s separation from the same
    # mixture is row other[i]'s only when other is an involution (n even).
    scored = [i for i in range(len(stems)) if other[other[i]] == i and i < other[i]]
    scored = scored[:self.config.bss_eval_mixtures]
    return scores(stems, separated, mixtures,
                  [(np.array([i, other[i]]), i) for i in scored])

  def run_scenes(self, variables) -> dict:
    """Each clip's own sound is the mixture of its annotated objects (a duets
    split): each object is separated by the frame with all but its box greyed out,
    and scored against its stem."""
    from avjax.evaluators import active_speaker
    from data_pipelines import synthetic
    path = self.config.speakers_csv or self.beside_shards("speakers.csv")
    speakers = active_speaker.read_speakers(path)
    stems_dir = self.config.stems_dir or self.beside_shards(synthetic.STEMS)
    g = self.gather(lambda variables, batch: {}, None, inputs=(),
                    host_keys=(self.fns.frame_input, "waveform", "filename", "audio_start"),
                    limit=self.config.clips or None)
    rate, n = self.spec.spectrogram.sample_rate, g["waveform"].shape[1]
    frames, mixtures, stems, groups = [], [], [], []
    for frame, wave, name, start in zip(g[self.fns.frame_input], g["waveform"], g["filename"],
                                        g["audio_start"]):
      name = fs.basename(base.text(name))
      if name not in speakers:
        continue
      objects = sorted(speakers[name].items())
      whole = [read_stem(synthetic.stem_path(stems_dir, name, k), rate) for k, _ in objects]
      first = int(round(start * rate))
      first += stem_lag(sum(whole), wave, first, int(self.config.max_lag * rate))
      rows = []
      for (_, obj), stem in zip(objects, whole):
        box = active_speaker.box_in_centre_crop(obj["box"], self.spec.resize, self.spec.crop)
        frames.append(only_in_box(frame, box))
        mixtures.append(wave)
        stems.append(window_of(stem, first, n))
        rows.append(len(stems) - 1)
      groups.append((np.array(rows), rows[0]))
    if not stems:
      raise ValueError(f"config.evals.separation: no clip of {self.split!r} is in {path}")
    mixtures = np.stack(mixtures).astype(np.float32)
    separated = self.separated(variables, np.stack(frames), mixtures)
    return scores(np.stack(stems), separated, mixtures, groups[:self.config.bss_eval_mixtures])


def only_in_box(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
  """A uint8 frame [H, W, 3] with everything outside `box` (ymin, xmin, ymax, xmax in
  0..1) set to the frame's mean colour: the object alone conditions the separation."""
  h, w = frame.shape[:2]
  y0, x0 = int(np.floor(box[0] * h)), int(np.floor(box[1] * w))
  y1, x1 = int(np.ceil(box[2] * h)), int(np.ceil(box[3] * w))
  out = np.broadcast_to(frame.reshape(-1, frame.shape[-1]).mean(0), frame.shape).astype(frame.dtype)
  out[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
  return out


def read_stem(path: str, rate: int) -> np.ndarray:
  """The stem at `path`, resampled to `rate` Hz. Raises naming the file."""
  import io
  import soundfile
  from data_pipelines import texture
  try:
    with fs.open(path, "rb") as f:
      data, stem_rate = soundfile.read(io.BytesIO(f.read()), dtype="float32")
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{path}: no such stem (config.evals.separation.stems_dir)") from e
  return texture.resample(data, stem_rate, rate).astype(np.float32)


def window_of(x: np.ndarray, first: int, samples: int) -> np.ndarray:
  """x[first:first + samples], zero-padded where it runs past either end."""
  out = np.zeros(samples, np.float32)
  lo, hi = max(first, 0), min(first + samples, len(x))
  if hi > lo:
    out[lo - first:hi - first] = x[lo:hi]
  return out


def stem_lag(stems_sum: np.ndarray, mixture: np.ndarray, first: int, max_lag: int) -> int:
  """The shift in samples, within +-max_lag, at which the summed stems from `first`
  best correlate with the mixture window: a codec's delay (AAC's priming is 21 ms)
  moves the decoded mixture against the stems, and SI-SDR does not forgive it."""
  def corr(lag):
    w = window_of(stems_sum, first + lag, len(mixture))
    return float(np.dot(w, mixture) / (np.linalg.norm(w) * np.linalg.norm(mixture) + 1e-12))
  return max(range(-max_lag, max_lag + 1), key=corr)


def scores(stems, separated, mixtures, bss_groups) -> dict:
  """SI-SDR improvement of every separated row over its mixture, against its stem;
  BSS Eval over each (rows, mixture row) group: the rows' stems are one mixture's."""
  own, mixed = metrics.si_sdr(separated, stems), metrics.si_sdr(mixtures, stems)
  out = {"separation_si_sdri": float(np.mean(own - mixed)),
         "separation_si_sdr": float(np.mean(own)),
         "separation_mixture_si_sdr": float(np.mean(mixed)),
         "separation_clips": int(len(stems))}
  if bss_groups:
    bss = [metrics.bss_eval(stems[rows], separated[rows]) for rows, _ in bss_groups]
    mix = [metrics.bss_eval(stems[rows], np.stack([mixtures[m]] * len(rows)))[0]
           for rows, m in bss_groups]
    for name, values in zip(("sdr", "sir", "sar"), zip(*bss)):
      out[f"separation_{name}"] = float(np.mean(values))
    out["separation_mixture_sdr"] = float(np.mean(mix))
    out["separation_bss_eval_mixtures"] = len(bss_groups)
  return out
