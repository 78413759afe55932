"""Sonorization's evaluation (Owens et al., "Visually Indicated Sounds", CVPR 2016):
is the sound predicted from the video the right sound, at the right time?

Each clip is read in windows `window_hop` apart (default: half a window), and
each step of the predicted sound features is the mean of every window's
prediction of it (base.timeline); the clip's real features (the same features of
its own sound) are assembled alike.
  - **Material and action from the predicted sound** (the paper's question: do
    the predicted sounds tell what was hit, and how?). Each clip's features,
    pooled over time (per band: mean, standard deviation and maximum), go to a
    logistic regression probe, k folds by video, for each label group of
    `label_groups` ("name=label,label,...;name=..."; a clip counts in a group
    when exactly one of its labels is in it). The same probe on the real sound's
    features is the ceiling; at random init (`avjax-evaluate --random_init`), the
    floor.
  - **Onsets**: peaks of the features' positive flux (`onsets`) in the real
    sound are the true onsets. Each true onset's error is its distance to the
    nearest predicted onset, and each predicted onset's its distance to the
    nearest true one (the clip's length when there is none), so that neither
    missing onsets nor predicting many pays. `sonorization_onset_error_median`
    is the median of both; recall (true onsets) and precision (predicted ones)
    count those within `onset_tolerance` s.
"""
from __future__ import annotations

import numpy as np

from avjax.evaluators import base
from avjax.evaluators import linear_probe


def parse_groups(value: str, label_names) -> dict[str, list[int]]:
  """"material=wood,metal;action=hit,scrape" -> {group: [label index]} over the
  labels the split has (a group none of whose labels it has is left out)."""
  out = {}
  for part in filter(None, (p.strip() for p in value.split(";"))):
    name, sep, labels = part.partition("=")
    if not sep or not name.strip() or not labels.strip():
      raise ValueError(f"config.evals.sonorization.label_groups: {part!r} is not "
                       "'name=label,label,...'")
    index = [label_names.index(l.strip()) for l in labels.split(",") if l.strip() in label_names]
    if index:
      out[name.strip()] = index
  return out


def pooled_features(features: np.ndarray) -> np.ndarray:
  """A clip's features [T, D] -> [3 D]: each band's mean, std and max over time."""
  return np.concatenate([features.mean(0), features.std(0), features.max(0)])


def onset_flux(features: np.ndarray) -> np.ndarray:
  """[T, D] -> [T]: the summed positive change of every band since the step before."""
  return np.concatenate([[0.0], np.maximum(np.diff(features, axis=0), 0.0).sum(axis=1)])


def onsets(features: np.ndarray, rate: float, *, threshold: float, min_gap: float) -> np.ndarray:
  """Onset times (s) of features [T, D] at `rate` steps per second: local maxima
  of the flux at least `threshold` times its largest, strongest first, each at
  least `min_gap` s from a stronger one."""
  flux = onset_flux(features)
  top = flux.max()
  if top <= 0:
    return np.zeros(0)
  peaks = [t for t in range(1, len(flux) - 1)
           if flux[t] >= flux[t - 1] and flux[t] > flux[t + 1] and flux[t] >= threshold * top]
  kept = []
  for t in sorted(peaks, key=lambda t: -flux[t]):
    if all(abs(t - k) >= min_gap * rate for k in kept):
      kept.append(t)
  return np.sort(np.array(kept, np.float64)) / rate


def onset_errors(truth: np.ndarray, predicted: np.ndarray, missing: float) -> np.ndarray:
  """Each true onset's distance to the nearest predicted one (`missing` if none)."""
  if not len(predicted):
    return np.full(len(truth), missing)
  return np.min(np.abs(truth[:, None] - predicted[None]), axis=1)


def onset_scores(clips, *, tolerance: float) -> dict:
  """[(true onsets, predicted onsets, clip seconds)] -> the median of every true
  onset's distance to the nearest predicted one and every predicted onset's to the
  nearest true one (a clip's length when there is none), recall and precision
  within `tolerance` s."""
  missed = [onset_errors(t, p, missing=s) for t, p, s in clips]
  spurious = [onset_errors(p, t, missing=s) for t, p, s in clips]
  missed, spurious = np.concatenate(missed or [[]]), np.concatenate(spurious or [[]])
  if not len(missed) + len(spurious):
    return {}
  return {"sonorization_onset_error_median": float(np.median(np.concatenate([missed, spurious]))),
          "sonorization_onset_recall": float(np.mean(missed <= tolerance)) if len(missed) else 0.0,
          "sonorization_onset_precision": (float(np.mean(spurious <= tolerance))
                                           if len(spurious) else 0.0)}


class Sonorization(base.Evaluator):
  def setup(self):
    shapes = self.fns.output_shapes()
    if "sonorization_predictions" not in shapes:
      raise ValueError(f"config.evals.sonorization: {self.fns.name} predicts no sound "
                       "(`sonorization_predictions`); it reads sonorization models "
                       "(configs/sonorization.py)")
    self.require_labels("sonorization")
    self.groups = parse_groups(self.config.label_groups, self.reader.label_names)
    self.window = self.spec.spectrogram.seconds
    self.hop = self.config.window_hop or self.window / 2
    self.rate = shapes["sonorization_predictions"].shape[1] / self.window  # steps per second
    self._features = self.outputs_fn(sonorization_predictions="sonorization_predictions",
                                     sonorization_targets="sonorization_targets")

  def clips(self, variables) -> dict:
    """-> {"predicted", "real": [clip] of features [T, D]; "labels" [N, C]; "video_id" [N]}."""
    g = self.gather(self._features, variables, window_hop=self.hop,
                    host_keys=("clip_index", "audio_start", "labels", "video_id"))
    out = {"predicted": [], "real": [], "labels": [], "video_id": []}
    for clip in np.unique(g["clip_index"]):
      at = np.nonzero(g["clip_index"] == clip)[0]
      for key, name in (("predicted", "sonorization_predictions"),
                        ("real", "sonorization_targets")):
        out[key].append(base.timeline(g[name][at], g["audio_start"][at], self.window)[1])
      out["labels"].append(g["labels"][at[0]])
      out["video_id"].append(g["video_id"][at[0]])
    out["labels"], out["video_id"] = np.stack(out["labels"]), np.array(out["video_id"])
    return out

  def probes(self, clips: dict) -> dict:
    c, metrics = self.config, {}
    for group, index in self.groups.items():
      in_group = clips["labels"][:, index]
      one = in_group.sum(1) == 1
      y = in_group[one].argmax(1)
      if len(np.unique(y)) < 2:
        continue  # nothing to tell apart
      folds = clips["video_id"][one] % c.num_folds
      for source in ("predicted", "real"):
        x = np.stack([pooled_features(f) for f, keep in zip(clips[source], one) if keep])
        accs = linear_probe.cross_validate(x, y, folds, num_classes=len(index), C=c.C,
                                           max_iter=c.max_iter)
        suffix = "" if source == "predicted" else "_real"
        metrics[f"sonorization_{group}_accuracy{suffix}"] = float(np.mean(accs))
      metrics[f"sonorization_{group}_chance"] = float(np.max(np.bincount(y)) / len(y))
    return metrics

  def onset_metrics(self, clips: dict) -> dict:
    c = self.config
    found = lambda f: onsets(f, self.rate, threshold=c.onset_threshold, min_gap=c.onset_min_gap)
    return onset_scores([(found(real), found(pred), len(real) / self.rate)
                         for pred, real in zip(clips["predicted"], clips["real"])],
                        tolerance=c.onset_tolerance)

  def run(self, variables) -> dict:
    clips = self.clips(variables)
    error = np.mean([np.mean(np.abs(p - r)) for p, r in zip(clips["predicted"], clips["real"])])
    return {**self.probes(clips), **self.onset_metrics(clips),
            "sonorization_feature_error": float(error), "sonorization_clips": len(clips["real"])}
