"""Active speaker detection from audio-visual objects (Afouras et al., ECCV 2020):
which object in view is sounding, moment by moment?

A synchronisation model's class activation map (`cam` [t, h, w] per window: where
the frames agree with the sound) is read over each clip in windows `window_hop`
apart (default: one map step), and each time step's map is the mean of every
window's estimate of it; with `relative`, less the map's mean at that step (is
this object sounding more than the rest of the picture?). The clip's objects are the peaks of
its time-averaged map (metrics.map_objects; at most `max_objects`), each a track
held in place: the camera is taken to be still, objects may drift
`track_radius` cells, and a track's score at each time step is the map's maximum
within that radius. Each annotated object takes the track inside its box whose
mean score is highest; an object with none is missed (its steps rank last).

Ground truth is `speakers_csv` (data_pipelines.synthetic.SPEAKER_COLUMNS: file,
object, label, box in 0..1 of the square frame, start and end of each sounding
interval; default: speakers.csv beside the split's shards, which the embedded
dataset's turns_test split has). A time step is positive for an object when an
interval of its holds the step's centre. As the Columbia protocol averages AP
over its speakers, `active_speaker_map` averages AP over the objects' labels;
`active_speaker_ap` pools every (object, step).
"""
from __future__ import annotations

import collections
import csv
import io

import numpy as np

from avjax import metrics
from avjax.evaluators import base
from data_pipelines import fs
from data_pipelines import synthetic


def read_speakers(path: str) -> dict:
  """speakers CSV -> {file base name: {object: {"label", "box" (4,), "intervals" [(s, e)]}}}."""
  try:
    text = fs.read_text(path)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{path}: no such file (config.evals.active_speaker.speakers_csv)") from e
  rows = list(csv.DictReader(io.StringIO(text)))
  needed = set(synthetic.SPEAKER_COLUMNS)
  if not rows or needed - set(rows[0]):
    raise ValueError(f"{path}: needs columns {sorted(needed)} and at least one row")
  out = collections.defaultdict(dict)
  for r in rows:
    obj = out[fs.basename(r["file"])].setdefault(int(r["object"]), {
        "label": r["label"], "intervals": [],
        "box": np.array([float(r[k]) for k in ("ymin", "xmin", "ymax", "xmax")])})
    obj["intervals"].append((float(r["start"]), float(r["end"])))
  return dict(out)


def box_in_centre_crop(box: np.ndarray, resize: int, crop: int) -> np.ndarray:
  """A box in 0..1 of a square frame -> in 0..1 of its centre crop (the evaluation
  crop: the frame resized to `resize`, `crop` pixels cut from its middle)."""
  scale = crop / resize
  return np.clip((box - (1 - scale) / 2) / scale, 0.0, 1.0)


def track_scores(cams: np.ndarray, peaks: np.ndarray, radius: int) -> np.ndarray:
  """Maps over time [T, h, w] and track cells [n, 2] -> scores [n, T]: each step's
  maximum within `radius` cells of the track."""
  _, h, w = cams.shape
  out = np.empty((len(peaks), len(cams)))
  for k, (y, x) in enumerate(peaks):
    patch = cams[:, max(0, y - radius):min(h, y + radius + 1), max(0, x - radius):min(w, x + radius + 1)]
    out[k] = patch.reshape(len(cams), -1).max(axis=1)
  return out


def clip_rows(cams: np.ndarray, times: np.ndarray, objects: dict, *, max_objects: int,
              radius: int, crop_box, compete: bool = False) -> list[tuple[str, float, bool]]:
  """One clip: (label, score, sounding) for every annotated object and time step.
  compete: each object's score less the highest of the other objects' at that step
  (is it sounding more than anyone else in view?)."""
  peaks = metrics.map_objects(cams.mean(axis=0), max_objects=max_objects, min_distance=2,
                              min_fraction=0.0)
  cells = metrics.object_cells(peaks, cams.shape[1:])
  scores = track_scores(cams, cells, radius)
  tracks = []
  for obj in objects.values():
    ymin, xmin, ymax, xmax = crop_box(obj["box"])
    inside = [(k, s.mean()) for k, (p, s) in enumerate(zip(peaks, scores))
              if ymin <= p[0] <= ymax and xmin <= p[1] <= xmax]
    tracks.append(scores[max(inside, key=lambda kv: kv[1])[0]] if inside else None)
  if compete:
    tracks = competing(tracks)
  rows = []
  for obj, track in zip(objects.values(), tracks):
    for step, t in enumerate(times):
      sounding = any(s <= t < e for s, e in obj["intervals"])
      rows.append((obj["label"], -np.inf if track is None else float(track[step]), sounding))
  return rows


def competing(tracks: list) -> list:
  """Each track [T] less the step-wise maximum of the others (None: no track; a
  lone track stays as it is)."""
  out = []
  for k, t in enumerate(tracks):
    others = [o for j, o in enumerate(tracks) if j != k and o is not None]
    out.append(t if t is None or not others else t - np.max(others, axis=0))
  return out


class ActiveSpeaker(base.Evaluator):
  def setup(self):
    shapes = self.fns.output_shapes()
    if "cam" not in shapes:
      raise ValueError(f"config.evals.active_speaker: {self.fns.name} gives no class activation "
                       "map (`cam`); it reads synchronisation models (configs/sync.py)")
    self.steps = shapes["cam"].shape[1]
    self.window = self.spec.spectrogram.seconds
    # Default: windows a map step apart, so that every step is seen from several.
    self.hop = self.config.window_hop or self.window / self.steps
    self.path = self.config.speakers_csv or self.beside_shards("speakers.csv")
    self.speakers = read_speakers(self.path)
    self._cams = self.outputs_fn(cam="cam")

  def run(self, variables) -> dict:
    g = self.gather(self._cams, variables, window_hop=self.hop,
                    host_keys=("filename", "clip_index", "audio_start"))
    crop_box = lambda b: box_in_centre_crop(b, self.spec.resize, self.spec.crop)
    rows, clips, missing = [], 0, 0
    for clip in np.unique(g["clip_index"]):
      at = np.nonzero(g["clip_index"] == clip)[0]
      name = fs.basename(base.text(g["filename"][at[0]]))
      if name not in self.speakers:
        missing += 1
        continue
      times, cams = base.timeline(g["cam"][at], g["audio_start"][at], self.window)
      if self.config.relative:
        cams = cams - cams.mean(axis=(1, 2), keepdims=True)
      rows += clip_rows(cams, times, self.speakers[name], max_objects=self.config.max_objects,
                        radius=self.config.track_radius, crop_box=crop_box,
                        compete=self.config.compete)
      clips += 1
    if not rows:
      raise ValueError(f"config.evals.active_speaker: no clip of {self.split!r} is in {self.path}")
    labels = np.array([r[0] for r in rows])
    scores = np.array([r[1] for r in rows])
    scores[~np.isfinite(scores)] = np.min(scores[np.isfinite(scores)], initial=0.0) - 1.0
    sounding = np.array([r[2] for r in rows])
    aps = [metrics.average_precision(scores[labels == c], sounding[labels == c])
           for c in np.unique(labels)]
    return {"active_speaker_map": float(np.nanmean(aps)),
            "active_speaker_ap": metrics.average_precision(scores, sounding),
            "active_speaker_chance": float(sounding.mean()),
            "active_speaker_clips": clips, "active_speaker_unannotated_clips": missing}
