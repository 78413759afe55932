"""A development set with real sounds: recordings composited from Sonic Pi's
sample library (Debian's `sonic-pi-samples`: CC0 and CC BY-SA recordings from
freesound.org) with moving pictures, under the distractors a user's footage has.

Each recording is a few minutes long, like a user's own footage, so it is split
by time (`avjax-prepare --splits`), never by clip. It is a sequence of shots:
- a textured background that the camera pans across, and a cut to a new one
  between shots;
- one or two on-screen sound sources per shot, each an object that swells and
  brightens at the onset of each of its sounds (a drum, tabla, percussion or
  electronic one-shot of its own), some of them small;
- one or two objects that swell at times of their own, in silence;
- sounds from off screen, with no picture;
- a music bed (a Sonic Pi loop) running under everything, across the cuts.

Nothing is downloaded: `build` reads the samples the user installed, and says in
one line how to get them when they are missing. It is deterministic: the same
samples and seed give the same pictures and sound. Which sample each event
plays, and its licence, are written beside the videos (LICENSES.csv), with each
sounding event's box (boxes.csv, for the localisation evaluator).
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import os
import re

import numpy as np

from data_pipelines import synthetic
from data_pipelines import texture

SAMPLES_DIR = "/usr/share/sonic-pi/samples"
COPYRIGHT = "/usr/share/doc/sonic-pi-samples/copyright"
INSTALL = "apt-get install sonic-pi-samples"
# One-shots: an on-screen or off-screen source's sounds. Loops: the music bed.
EVENT_PREFIXES = ("bd_", "sn_", "drum_", "elec_", "perc_", "tabla_", "glitch_perc", "misc_")
BED_PREFIXES = ("loop_",)
MAX_EVENT_SECONDS = 1.5  # longer one-shots (rolls, crashes) blur their onset


class DevSetError(Exception):
  """A missing or unusable input, said in one line."""


@dataclasses.dataclass(frozen=True)
class DevSetSpec:
  num_recordings: int = 12
  seconds: float = 150.0
  size: int = 96
  fps: int = 25
  sample_rate: int = 48000
  seed: int = 0
  shot_seconds: tuple[float, float] = (3.0, 8.0)
  sounding: tuple[int, ...] = (1, 2)        # on-screen sources per shot (uniform choice)
  silent: tuple[int, ...] = (1, 2)          # objects moving in silence per shot
  size_range: tuple[float, float] = (0.12, 0.35)  # object diameter, fraction of the frame
  event_rate: float = 1.5      # onsets per second per on-screen source
  offscreen_rate: float = 0.6  # off-screen sounds per second
  bed_db: tuple[float, float] = (-18.0, -8.0)  # the bed's level beside the sources'
  pan: float = 0.15            # the camera's largest speed, frames per second


@functools.lru_cache(maxsize=1)
def _licences(copyright_path: str) -> dict[str, tuple[str, str, str]]:
  """Debian's machine-readable copyright file -> sample name -> (licence,
  copyright, source)."""
  out = {}
  text = open(copyright_path, encoding="utf-8").read()
  for stanza in re.split(r"\n\s*\n", text):
    fields = dict(re.findall(r"^(Files|Copyright|Source|License):[ \t]*(.*)$", stanza, re.M))
    for f in fields.get("Files", "").split():
      if f.endswith(".flac"):
        out[os.path.basename(f)] = (fields.get("License", ""), fields.get("Copyright", ""),
                                    fields.get("Source", ""))
  return out


def sample_files(samples_dir: str = SAMPLES_DIR, copyright_path: str = COPYRIGHT) -> dict:
  """-> {"events": [...], "beds": [...]}: the sample paths each part draws from,
  sorted, each with a licence in the copyright file. Missing inputs are refused
  in one line saying how to install them."""
  if not os.path.isdir(samples_dir):
    raise DevSetError(f"{samples_dir}: no Sonic Pi samples here; install them with "
                      f"`{INSTALL}` (CC0 and CC BY-SA recordings), or pass --samples_dir")
  if not os.path.exists(copyright_path):
    raise DevSetError(f"{copyright_path}: the samples' licences are missing; install the "
                      f"samples with `{INSTALL}`, or pass --copyright")
  licences = _licences(copyright_path)
  names = sorted(n for n in os.listdir(samples_dir) if n.endswith(".flac") and n in licences)
  out = {"events": [os.path.join(samples_dir, n) for n in names if n.startswith(EVENT_PREFIXES)],
         "beds": [os.path.join(samples_dir, n) for n in names if n.startswith(BED_PREFIXES)]}
  for part, files in out.items():
    if not files:
      raise DevSetError(f"{samples_dir}: no {part} samples with a licence in {copyright_path}; "
                        f"reinstall them with `{INSTALL}`")
  return out


@functools.lru_cache(maxsize=256)
def load_sample(path: str, sample_rate: int) -> np.ndarray:
  """A sample as mono float32 at `sample_rate`, its peak at 1."""
  import soundfile
  x, rate = soundfile.read(path, dtype="float32", always_2d=True)
  x = texture.resample(x.mean(axis=1), rate, sample_rate).astype(np.float32)
  peak = np.abs(x).max()
  if not peak > 0:
    raise DevSetError(f"{path}: silent sample")
  return x / peak


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
  """A background twice the frame's side with structure at several scales, so
  that a pan shows as motion."""
  big = 2 * size
  img = np.zeros((big, big, 3))
  for cells in (4, 8, 16):
    coarse = rng.uniform(-1, 1, (cells, cells, 3))
    img += np.kron(coarse, np.ones((big // cells, big // cells, 1))) * (0.5 / cells ** 0.5)
  return np.clip(rng.uniform(0.15, 0.45, 3) + 0.25 * img, 0, 1)


@dataclasses.dataclass
class _Object:
  cls: int
  d: int
  y: float       # top left, in the background's coordinates
  x: float
  angle: float
  colour: np.ndarray
  onsets: np.ndarray
  sample: str = ""   # "" for silent motion

  def as_drawable(self) -> dict:
    return dict(d=self.d, angle=self.angle, name=synthetic.CLASSES[self.cls], colour=self.colour)


def _shots(spec: DevSetSpec, rng: np.random.Generator) -> list[tuple[float, float]]:
  out, t = [], 0.0
  while t < spec.seconds:
    end = min(spec.seconds, t + rng.uniform(*spec.shot_seconds))
    out.append((t, end))
    t = end
  return out


def _shot_objects(spec: DevSetSpec, start: float, end: float, camera, events: list,
                  rng: np.random.Generator) -> list[_Object]:
  """A shot's sources and silent movers, placed where the camera sees them at
  mid-shot, with their onsets in the recording's time."""
  objects = []
  n_sounding = int(rng.choice(spec.sounding))
  n_silent = int(rng.choice(spec.silent))
  classes = rng.choice(synthetic.NUM_CLASSES, n_sounding + n_silent, replace=False)
  mid_y, mid_x = camera((start + end) / 2)
  placed = []
  for j, cls in enumerate(classes):
    d = int(rng.integers(int(spec.size * spec.size_range[0]), int(spec.size * spec.size_range[1])))
    pos = synthetic.place_object(placed, spec.size, d, rng)
    if pos is None:
      continue
    placed.append(dict(d=d, y=pos[0], x=pos[1]))
    # The embedded dataset's irregular onsets, thinned to the source's rate.
    onsets = start + synthetic.event_onsets(end - start, rng)
    onsets = onsets[rng.uniform(size=len(onsets)) < spec.event_rate / synthetic.EVENT_RATE]
    objects.append(_Object(int(cls), d, mid_y + pos[0], mid_x + pos[1], rng.uniform(-0.35, 0.35),
                           synthetic.object_colour(int(cls), rng), onsets,
                           sample=str(rng.choice(events)) if j < n_sounding else ""))
  return objects


def make_recording(spec: DevSetSpec, index: int, samples: dict):
  """-> (frames [T, S, S, 3] uint8, waveform [N] float32, events): one recording;
  `events` lists (time, sample, box or None) for every sound placed, boxes in
  0..1 of the frame at that time (None: off screen)."""
  rng = np.random.default_rng([spec.seed, index])
  size, fps, sr = spec.size, spec.fps, spec.sample_rate
  n_frames, n = int(spec.seconds * fps), int(spec.seconds * sr)
  frames = np.empty((n_frames, size, size, 3), np.uint8)
  sources = np.zeros(n, np.float32)
  placed = []

  def add(sample: str, t: float, gain: float):
    x = load_sample(sample, sr)[: n - int(t * sr)]
    sources[int(t * sr): int(t * sr) + len(x)] += gain * x

  t_frames = np.arange(n_frames) / fps
  for start, end in _shots(spec, rng):
    background = _texture(size, rng)
    y0, x0 = rng.uniform(0, size, 2)
    vy, vx = rng.uniform(-spec.pan, spec.pan, 2) * size * (rng.uniform() < 0.6)
    camera = lambda t, y0=y0, x0=x0, vy=vy, vx=vx, s=start: (
        float(np.clip(y0 + vy * (t - s), 0, size)), float(np.clip(x0 + vx * (t - s), 0, size)))
    objects = _shot_objects(spec, start, end, camera, samples["events"], rng)
    for o in objects:
      level = 10 ** (rng.uniform(-6, 0) / 20)
      for t in o.onsets:
        if o.sample:
          add(o.sample, t, level * 10 ** (rng.uniform(-3, 0) / 20))
          cy, cx = camera(t)
          y, x = (o.y - cy) / size, (o.x - cx) / size
          box = tuple(float(np.clip(v, 0, 1)) for v in (y, x, y + o.d / size, x + o.d / size))
          placed.append((float(t), os.path.basename(o.sample), box))
    shot = np.nonzero((t_frames >= start) & (t_frames < end))[0]
    swells = [synthetic.note_envelope(t_frames[shot], o.onsets, decay=synthetic.EVENT_SWELL)
              for o in objects]
    drawables = [o.as_drawable() for o in objects]
    for n_f, f in enumerate(shot):
      cy, cx = camera(t_frames[f])
      iy, ix = int(round(cy)), int(round(cx))
      img = background[iy:iy + size, ix:ix + size].copy()
      for o, drawable, swell in zip(objects, drawables, swells):
        synthetic.draw_swollen(img, drawable, int(round(o.y - cy)), int(round(o.x - cx)),
                               float(swell[n_f]))
      frames[f] = np.clip(img * 255, 0, 255).astype(np.uint8)
  # Off screen: sounds with no picture, anywhere in the recording.
  for t in np.sort(rng.uniform(0, spec.seconds, rng.poisson(spec.offscreen_rate * spec.seconds))):
    sample = str(rng.choice(samples["events"]))
    add(sample, t, 10 ** (rng.uniform(-9, 0) / 20))
    placed.append((float(t), os.path.basename(sample), None))
  bed_sample = str(rng.choice(samples["beds"]))
  bed = np.resize(load_sample(bed_sample, sr), n)
  rms = lambda x: float(np.sqrt(np.mean(np.square(x))) + 1e-9)
  bed *= rms(sources) / rms(bed) * 10 ** (rng.uniform(*spec.bed_db) / 20)
  placed.append((0.0, os.path.basename(bed_sample), "bed"))
  waveform = sources + bed
  waveform *= 0.5 / max(1e-6, float(np.abs(waveform).max()))
  return frames, waveform.astype(np.float32), sorted(placed, key=lambda e: e[0])


VERSION = "v1"
NAME = "sonicpi"


def video_name(index: int) -> str:
  return f"recording_{index:03d}.mp4"


def _write_recording(args) -> list:
  spec, index, samples, out_dir = args
  frames, waveform, events = make_recording(spec, index, samples)
  path = os.path.join(out_dir, video_name(index))
  if not os.path.exists(path):
    synthetic.write_mp4(path, frames, waveform, synthetic.VideoSpec(
        size=spec.size, fps=spec.fps, seconds=spec.seconds, sample_rate=spec.sample_rate))
  return [(video_name(index), *e) for e in events]


def build_videos(out_dir: str, spec: DevSetSpec = DevSetSpec(), samples_dir: str = SAMPLES_DIR,
                 copyright_path: str = COPYRIGHT, workers: int | None = None) -> None:
  """Writes the recordings, boxes.csv (each on-screen sound's source, at its
  onset), events.csv (every sound placed) and LICENSES.csv (each sample used:
  its licence, copyright and source) into `out_dir`, then `.complete`."""
  import concurrent.futures
  import multiprocessing
  samples = sample_files(samples_dir, copyright_path)
  os.makedirs(out_dir, exist_ok=True)
  jobs = [(spec, i, samples, out_dir) for i in range(spec.num_recordings)]
  with concurrent.futures.ProcessPoolExecutor(
      workers or os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")) as pool:
    events = [e for rows in pool.map(_write_recording, jobs) for e in rows]
  with open(os.path.join(out_dir, "boxes.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "ymin", "xmin", "ymax", "xmax", "time"])
    w.writerows((name, *(f"{c:.4f}" for c in box), f"{t:.3f}")
                for name, t, _, box in events if isinstance(box, tuple))
  with open(os.path.join(out_dir, "events.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "time", "sample", "where"])
    w.writerows((name, f"{t:.3f}", sample, "on screen" if isinstance(box, tuple) else
                 "bed" if box == "bed" else "off screen") for name, t, sample, box in events)
  licences = _licences(copyright_path)
  with open(os.path.join(out_dir, "LICENSES.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["sample", "license", "copyright", "source"])
    w.writerows((name, *licences[name]) for name in sorted({e[2] for e in events}))
  open(os.path.join(out_dir, ".complete"), "w").close()
