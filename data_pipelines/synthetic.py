"""The embedded default dataset: procedurally generated audio-visual scenes.

Each clip shows one *sounding* object, sometimes among silent objects of other
classes, on a noisy background, with the sounding object's sound plus background
noise. Twelve classes pair a shape (with a loosely tied hue) with a timbre; size,
colour, pitch, loudness and position vary per clip so that no single cue (a hue,
a pitch) identifies a class. Clips are written as real H.264/AAC mp4 files with a
labels CSV and a boxes CSV, so they take the same prepare + reader path as a
user's videos. Everything is a pure function of (split seed, clip index).
"""
from __future__ import annotations

import colorsys
import concurrent.futures
import csv
import dataclasses
import multiprocessing
import os

import numpy as np

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring",
           "diamond", "hexagon", "ellipse", "crescent", "tee", "arrow")
NUM_CLASSES = len(CLASSES)
# Letters unlike themselves and one another under quarter and half turns.
GLYPHS = ("F", "G", "J", "K", "L", "P", "R", "T", "Y", "2", "4", "7")
GEN_SAMPLE_RATE = 48000


@dataclasses.dataclass(frozen=True)
class SplitSpec:
  name: str
  num_clips: int
  seed: int
  # Probabilities of 0, 1, 2, ... silent objects beside the sounding one.
  silent_probs: tuple[float, ...] = (0.7, 0.1, 0.1, 0.1)
  # Object diameters, as fractions of the frame side: [lo, hi).
  size_range: tuple[float, float] = (0.22, 0.4)
  place_tries: int = 60  # random positions tried per object before it is left out
  seconds: float = 0.0   # clip length; 0: the VideoSpec's
  # Time structure (the synchronisation splits): the sounding object's sound is a
  # train of notes, and the object swells and brightens at each note's onset;
  # silent objects swell at times of their own. Drawn from a stream of their own,
  # so the other splits' clips are what they were without it.
  events: bool = False
  # Upright glyphs (the image pretext splits): one letter of GLYPHS per scene,
  # upright, large, in a colour drawn apart from its class, on a background
  # shaded in a random direction; its sound is its class's. The shapes above
  # are mostly symmetric under quarter or half turns, on backgrounds lit from
  # above or below at random: neither tells which way is up, which rotation
  # and relative position need. Here only the glyph does.
  glyphs: bool = False
  # Turn-taking (active speaker detection; implies events): every object sounds, in
  # turns of TURN_SECONDS, its notes and swells only within its own turns, and the
  # turns are written to speakers.csv beside the labels.
  turns: bool = False
  # Struck and scraped objects (sonorization; data_pipelines/hits.py): one slab of a
  # material and a stick; labelled "material;action", sounding intervals in speakers.csv.
  hits: bool = False
  # Duets (separation on real mixtures): the sounding object and one other, both
  # sounding all through; each one's sound (its stem) is written beside the videos
  # (stems_folder: <video>_object<k>.flac, at STEM_RATE) and both are in speakers.csv.
  duets: bool = False
  files_per_shard: int = 64  # clips per prepared shard (default_dataset.ensure)


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  size: int = 96
  fps: int = 25
  seconds: float = 1.4  # short clips, many of them: scene variety per second of CPU
  sample_rate: int = GEN_SAMPLE_RATE


DEFAULT_SPLITS = (
    SplitSpec("train", 2400, seed=1),
    SplitSpec("validation", 300, seed=2),
    SplitSpec("test", 300, seed=3),
    # One sounding object among 3 or 4: the localisation benchmark.
    SplitSpec("test_crowded", 150, seed=4, silent_probs=(0.0, 0.0, 0.5, 0.5)),
    # Objects at about half the smallest training size (0.22 of the frame), one
    # sounding among 2-4: does localisation survive a change of scale?
    SplitSpec("test_small", 150, seed=5, silent_probs=(0.0, 1 / 3, 1 / 3, 1 / 3),
              size_range=(0.10, 0.125)),
    # One sounding object among 5-6: crowding beyond test_crowded's.
    # Sizes at the small end of training's, so that 5-6 objects fit in the frame.
    SplitSpec("test_many", 150, seed=6, silent_probs=(0.0, 0.0, 0.0, 0.0, 0.5, 0.5),
              size_range=(0.22, 0.27), place_tries=1000),
    # Synchronisation: 3 s clips with time structure (see SplitSpec.events), so that
    # a 1 s window shifted by 0.4 s or more no longer lines up with the visual events.
    # Half the training scenes hold silent objects that swell at their own times,
    # so that matching the sound to *some* motion is not enough.
    SplitSpec("sync_train", 1200, seed=21, seconds=3.0, events=True,
              silent_probs=(0.5, 0.2, 0.15, 0.15)),
    SplitSpec("sync_validation", 200, seed=22, seconds=3.0, events=True),
    SplitSpec("sync_test", 200, seed=23, seconds=3.0, events=True),
    # One sounding object among 3-4, each silent one swelling at its own times:
    # sync must find the object whose events the sound follows.
    SplitSpec("sync_crowded", 150, seed=24, seconds=3.0, events=True,
              silent_probs=(0.0, 0.0, 0.5, 0.5)),
    # The image pretext tasks' world (see SplitSpec.glyphs): which way is up is
    # told by the object alone.
    SplitSpec("glyphs_train", 1200, seed=31, glyphs=True),
    SplitSpec("glyphs_validation", 200, seed=32, glyphs=True),
    SplitSpec("glyphs_test", 300, seed=33, glyphs=True),
    # Two or three objects that take turns to sound: which one is sounding, when?
    SplitSpec("turns_test", 150, seed=41, seconds=3.0, events=True, turns=True,
              silent_probs=(0.0, 0.5, 0.5)),
    SplitSpec("turns_train", 1200, seed=42, seconds=3.0, events=True, turns=True,
              silent_probs=(0.0, 0.5, 0.5)),
    # A stick strikes or scrapes a slab of wood, metal, glass or stone: what does
    # the material sound like, and when?
    SplitSpec("hits_train", 1200, seed=51, seconds=2.0, hits=True),
    SplitSpec("hits_validation", 200, seed=52, seconds=2.0, hits=True),
    SplitSpec("hits_test", 300, seed=53, seconds=2.0, hits=True),
    # Two objects of different classes sounding at once: whose sound is whose?
    SplitSpec("duets_test", 150, seed=61, silent_probs=(0.0, 1.0), duets=True, place_tries=1000,
              size_range=(0.22, 0.32)),
)
STEM_RATE = 16000  # the duets' stems: enough for every config's audio up to 8 kHz
TURN_SECONDS = (0.5, 1.0)  # a turn's length: uniform in this range

# Notes of the time-structured splits: onsets at least EVENT_GAP apart, about
# EVENT_RATE per second; each swells the picture for EVENT_SWELL seconds. The
# gap is short beside the mean wait (0.4 s), so onsets are irregular: with a
# regular beat a shift by one period would line the notes up again.
EVENT_RATE, EVENT_GAP, EVENT_SWELL = 2.5, 0.15, 0.12


# ----------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------
def _polygon_mask(u, v, vertices):
  """Even-odd rule point-in-polygon on coordinate grids u (x) and v (y)."""
  inside = np.zeros(u.shape, bool)
  n = len(vertices)
  for i in range(n):
    x1, y1 = vertices[i]
    x2, y2 = vertices[(i + 1) % n]
    crosses = (y1 > v) != (y2 > v)
    x_at = (x2 - x1) * (v - y1) / np.where(y2 - y1 == 0, 1e-9, y2 - y1) + x1
    inside ^= crosses & (u < x_at)
  return inside


def _regular(n, r=1.0, phase=0.0):
  a = phase + 2 * np.pi * np.arange(n) / n
  return list(zip(r * np.cos(a), r * np.sin(a)))


def shape_mask(cls: int, size: int, angle: float) -> np.ndarray:
  """[size, size] bool mask of class `cls`, rotated by `angle`, filling the patch."""
  c = (np.arange(size) + 0.5) / size * 2 - 1  # -1..1
  y, x = np.meshgrid(c, c, indexing="ij")
  u = np.cos(angle) * x + np.sin(angle) * y
  v = -np.sin(angle) * x + np.cos(angle) * y
  d = np.hypot(u, v)
  name = CLASSES[cls]
  if name == "circle":
    return d < 0.95
  if name == "square":
    return np.maximum(abs(u), abs(v)) < 0.7
  if name == "triangle":
    return _polygon_mask(u, v, _regular(3, 0.98, -np.pi / 2))
  if name == "star":
    outer, inner = _regular(5, 0.98, -np.pi / 2), _regular(5, 0.42, -np.pi / 2 + np.pi / 5)
    return _polygon_mask(u, v, [p for pair in zip(outer, inner) for p in pair])
  if name == "cross":
    return ((abs(u) < 0.28) & (abs(v) < 0.95)) | ((abs(v) < 0.28) & (abs(u) < 0.95))
  if name == "ring":
    return (d < 0.95) & (d > 0.55)
  if name == "diamond":
    return abs(u) / 0.65 + abs(v) / 0.98 < 1
  if name == "hexagon":
    return _polygon_mask(u, v, _regular(6, 0.95))
  if name == "ellipse":
    return (u / 0.95) ** 2 + (v / 0.45) ** 2 < 1
  if name == "crescent":
    return (d < 0.95) & (np.hypot(u - 0.45, v) > 0.7)
  if name == "tee":
    return ((abs(u) < 0.9) & (v > -0.9) & (v < -0.5)) | ((abs(u) < 0.22) & (v > -0.9) & (v < 0.9))
  if name == "arrow":
    head = _polygon_mask(u, v, [(0.95, 0.0), (0.15, -0.75), (0.15, 0.75)])
    return head | ((u > -0.95) & (u < 0.2) & (abs(v) < 0.25))
  raise ValueError(f"unknown class {cls}")


def object_colour(cls: int, rng: np.random.Generator) -> np.ndarray:
  hue = (cls / NUM_CLASSES + rng.uniform(-0.07, 0.07)) % 1.0
  return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0)))


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
  base = rng.uniform(0.05, 0.45, 3)
  tilt = rng.uniform(-0.15, 0.15, 3)
  ramp = np.linspace(-1, 1, size)[:, None, None] * tilt
  img = base + ramp + rng.normal(0, 0.04, (size, size, 3))
  return np.broadcast_to(img, (size, size, 3)).copy()


def place_object(objects, size, diameter, rng, tries=60):
  """Random top-left corner that keeps the new object clear of the others."""
  for _ in range(tries):
    y, x = rng.integers(2, size - diameter - 2, 2)
    if all(abs(y - o["y"]) > (diameter + o["d"]) / 2 + 2 or
           abs(x - o["x"]) > (diameter + o["d"]) / 2 + 2 for o in objects):
      return int(y), int(x)
  return None


# ----------------------------------------------------------------------------
# Sounds
# ----------------------------------------------------------------------------
def _harmonic(f0, t, amps, rng):
  phase = rng.uniform(0, 2 * np.pi, len(amps))
  return sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t + phase[k]) for k, a in enumerate(amps))


def _bandnoise(n, lo, hi, sr, rng):
  spec = np.fft.rfft(rng.standard_normal(n))
  f = np.fft.rfftfreq(n, 1 / sr)
  spec[(f < lo) | (f > hi)] = 0
  out = np.fft.irfft(spec, n)
  return out / (np.std(out) + 1e-9)


def class_sound(cls: int, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
  """A unit-RMS waveform of `n` samples with the class's timbre and a random pitch."""
  t = np.arange(n) / sr
  name = CLASSES[cls]
  f0 = rng.uniform(220, 660)  # shared range: pitch alone does not give the class
  if name == "circle":      # flute: nearly pure with slow vibrato
    x = _harmonic(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)), t, [1, 0.2], rng)
  elif name == "square":    # clarinet: odd harmonics
    x = _harmonic(f0, t, [1, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7], rng)
  elif name == "triangle":  # brass: all harmonics, 1/k
    x = _harmonic(f0, t, [1 / k for k in range(1, 10)], rng)
  elif name == "star":      # hiss: high band noise
    lo = rng.uniform(1800, 2400)
    x = _bandnoise(n, lo, lo + 1200, sr, rng)
  elif name == "cross":     # clicks: decaying impulses at 6-14 Hz
    rate = rng.uniform(6, 14)
    period = int(sr / rate)
    env = np.exp(-np.arange(period) / (0.004 * sr))
    x = np.tile(env, n // period + 1)[:n] * _bandnoise(n, 500, 3500, sr, rng)
  elif name == "ring":      # upward chirps, restarting every 0.25-0.5 s
    period = rng.uniform(0.25, 0.5)
    frac = (t % period) / period
    x = np.sin(2 * np.pi * np.cumsum(f0 * (1 + 2 * frac)) / sr)
  elif name == "diamond":   # downward chirps
    period = rng.uniform(0.25, 0.5)
    frac = (t % period) / period
    x = np.sin(2 * np.pi * np.cumsum(f0 * (3 - 2 * frac)) / sr)
  elif name == "hexagon":   # tremolo tone
    x = _harmonic(f0, t, [1, 0.4], rng) * (0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(6, 12) * t))
  elif name == "ellipse":   # bell: inharmonic partials, struck repeatedly
    period = int(sr * rng.uniform(0.35, 0.6))
    env = np.tile(np.exp(-np.arange(period) / (0.12 * sr)), n // period + 1)[:n]
    x = env * sum(a * np.sin(2 * np.pi * f0 * r * t) for r, a in [(1, 1), (2.76, 0.6), (5.4, 0.4)])
  elif name == "crescent":  # rumble: low band noise
    x = _bandnoise(n, 40, rng.uniform(200, 320), sr, rng)
  elif name == "tee":       # siren: two tones alternating
    period = rng.uniform(0.2, 0.35)
    f = np.where((t % (2 * period)) < period, f0, f0 * 1.5)
    x = np.sin(2 * np.pi * np.cumsum(f) / sr)
  elif name == "arrow":     # buzz: narrow pulse train, rich in harmonics
    fb = rng.uniform(90, 160)
    x = _harmonic(fb, t, [1.0] * 20, rng)
  else:
    raise ValueError(f"unknown class {cls}")
  return x / (np.sqrt(np.mean(x ** 2)) + 1e-9)


def event_onsets(seconds: float, rng: np.random.Generator) -> np.ndarray:
  """Onset times in [0, seconds - 0.1): gaps of EVENT_GAP plus an exponential
  wait, so about EVENT_RATE notes per second, never two closer than EVENT_GAP."""
  mean_wait = max(1.0 / EVENT_RATE - EVENT_GAP, 1e-3)
  t, out = rng.uniform(0, 1.0 / EVENT_RATE), []
  while t < seconds - 0.1:
    out.append(t)
    t += EVENT_GAP + rng.exponential(mean_wait)
  return np.array(out)


def note_envelope(t: np.ndarray, onsets: np.ndarray, decay: float) -> np.ndarray:
  """Sum over onsets of a 10 ms linear attack then an exponential decay, at times `t`."""
  out = np.zeros_like(t, dtype=np.float64)
  for o in onsets:
    dt = t - o
    out += np.where(dt < 0, 0.0, np.where(dt < 0.01, dt / 0.01, np.exp(-(dt - 0.01) / decay)))
  return np.minimum(out, 1.0)


# ----------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------
def glyph_mask(glyph: str, size: int, angle: float) -> np.ndarray:
  """[size, size] bool mask of `glyph` in Pillow's bundled font, centred, its
  larger side 80% of `size`, turned by `angle` radians."""
  from PIL import Image, ImageDraw, ImageFont
  font = ImageFont.load_default(size=size)
  img = Image.new("L", (2 * size, 2 * size))
  ImageDraw.Draw(img).text((size, size), glyph, fill=255, font=font, anchor="mm")
  img = img.crop(img.getbbox())
  scale = 0.8 * size / max(img.size)
  img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                   Image.BILINEAR).rotate(np.degrees(angle), Image.BILINEAR, expand=True)
  out = Image.new("L", (size, size))
  out.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
  return np.asarray(out) > 127


def make_glyph_scene(split: SplitSpec, index: int, video: VideoSpec):
  """make_scene of a glyphs split: one upright glyph, its class's sound."""
  rng = np.random.default_rng([split.seed, index])
  size = video.size
  cls = int(rng.integers(len(GLYPHS)))
  d = int(rng.integers(int(size * 0.55), int(size * 0.75)))
  mask = glyph_mask(GLYPHS[cls], d, rng.uniform(-0.15, 0.15))
  colour = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.45, 1.0),
                                        rng.uniform(0.55, 1.0)))
  angle = rng.uniform(0, 2 * np.pi)  # the background's shading: any direction
  c = np.linspace(-1, 1, size)
  ramp = (np.cos(angle) * c[:, None] + np.sin(angle) * c[None, :])[..., None]
  background = (rng.uniform(0.05, 0.45, 3) + ramp * rng.uniform(0.05, 0.15, 3)
                + rng.normal(0, 0.04, (size, size, 3)))
  y, x = (int(v) for v in rng.integers(2, size - d - 2, 2))
  drift = rng.uniform(-2, 2, 2)
  seconds = split.seconds or video.seconds
  n_frames = int(seconds * video.fps)
  frames = np.empty((n_frames, size, size, 3), np.uint8)
  for f in range(n_frames):
    img = background.copy()
    shift = f / max(1, n_frames - 1) - 0.5
    yy = int(np.clip(round(y + shift * drift[0]), 0, size - d))
    xx = int(np.clip(round(x + shift * drift[1]), 0, size - d))
    img[yy:yy + d, xx:xx + d][mask] = colour
    frames[f] = np.clip(img * 255, 0, 255).astype(np.uint8)
  box = (y / size, x / size, (y + d) / size, (x + d) / size)
  n = int(seconds * video.sample_rate)
  sound = class_sound(cls, n, video.sample_rate, rng) * 10 ** (rng.uniform(-24, -12) / 20)
  noise = _bandnoise(n, 30, 8000, video.sample_rate, rng) * 10 ** (rng.uniform(-48, -34) / 20)
  return frames, (sound + noise).astype(np.float32), cls, box


def class_name(split: SplitSpec, cls: int) -> str:
  """A clip's label (a hits clip's two, "material;action", as labels CSVs separate them)."""
  if split.hits:
    from data_pipelines import hits
    return ";".join(hits.labels(cls))
  return GLYPHS[cls] if split.glyphs else CLASSES[cls]


def speaking_turns(seconds: float, n_objects: int, rng: np.random.Generator) -> list:
  """[(start, end, object)] covering [0, seconds): turns of TURN_SECONDS, each given
  to an object other than the previous turn's (a lone object takes every turn)."""
  out, t, last = [], 0.0, -1
  while t < seconds:
    others = [k for k in range(n_objects) if k != last] or [0]  # one object left: its own
    owner = int(rng.choice(others))
    end = min(seconds, t + rng.uniform(*TURN_SECONDS))
    out.append((t, end, owner))
    t, last = end, owner
  return out


def make_scene(split: SplitSpec, index: int, video: VideoSpec, *, with_speakers: bool = False,
               with_stems: bool = False):
  """-> (frames [T,S,S,3] uint8, waveform [N] float32, class, box (ymin,xmin,ymax,xmax));
  with_speakers: and [(class name, box, [(start, end), ...])] of every object that
  sounds (a turns split's objects, each with its turns; a duet's two; otherwise the
  one); with_stems: and each of those objects' sound [N] (a duet's two sum, with
  the background noise, to the waveform)."""
  if split.hits:
    from data_pipelines import hits
    *out, intervals = hits.make_scene(split.seed, index, video.size, video.fps,
                                      split.seconds or video.seconds, video.sample_rate)
    return (*out, [(hits.labels(out[2])[0], out[3], intervals)]) if with_speakers else tuple(out)
  if split.glyphs:
    out = make_glyph_scene(split, index, video)
    seconds = split.seconds or video.seconds
    return (*out, [(GLYPHS[out[2]], out[3], [(0.0, seconds)])]) if with_speakers else out
  rng = np.random.default_rng([split.seed, index])
  size = video.size
  sounding = int(rng.integers(NUM_CLASSES))
  n_silent = int(rng.choice(len(split.silent_probs), p=split.silent_probs))
  silent = rng.choice([c for c in range(NUM_CLASSES) if c != sounding], n_silent, replace=False)
  objects = []
  for cls in [sounding, *silent.tolist()]:
    d = int(rng.integers(int(size * split.size_range[0]), int(size * split.size_range[1])))
    pos = place_object(objects, size, d, rng, tries=split.place_tries)
    if pos is None:
      if cls == sounding:
        raise RuntimeError("cannot place the sounding object")
      continue
    angle = rng.uniform(-0.35, 0.35)
    objects.append(dict(cls=cls, name=CLASSES[cls], d=d, y=pos[0], x=pos[1], angle=angle,
                        mask=shape_mask(cls, d, angle),
                        colour=object_colour(cls, rng),
                        drift=rng.uniform(-4, 4, 2)))
  background = _background(size, rng)
  seconds = split.seconds or video.seconds
  n_frames = int(seconds * video.fps)
  swell = _swells(split, index, objects, n_frames, video.fps, seconds)
  frames = np.empty((n_frames, size, size, 3), np.uint8)
  for f in range(n_frames):
    img = background.copy()
    shift = (f / max(1, n_frames - 1) - 0.5)
    for j, o in enumerate(objects):
      y = int(np.clip(round(o["y"] + shift * o["drift"][0]), 0, size - o["d"]))
      x = int(np.clip(round(o["x"] + shift * o["drift"][1]), 0, size - o["d"]))
      if swell is None or swell[j][f] < 0.02:
        patch = img[y:y + o["d"], x:x + o["d"]]
        patch[o["mask"]] = o["colour"]
      else:
        draw_swollen(img, o, y, x, swell[j][f])
    frames[f] = np.clip(img * 255, 0, 255).astype(np.uint8)
  s = objects[0]  # the sounding object, boxed at mid-clip (drift offset 0)
  box = (s["y"] / size, s["x"] / size, (s["y"] + s["d"]) / size, (s["x"] + s["d"]) / size)
  n = int(seconds * video.sample_rate)
  sound = class_sound(sounding, n, video.sample_rate, rng) * 10 ** (rng.uniform(-24, -12) / 20)
  noise = _bandnoise(n, 30, 8000, video.sample_rate, rng) * 10 ** (rng.uniform(-48, -34) / 20)
  t = np.arange(n) / video.sample_rate
  stems = [sound]
  if split.turns:
    sound = sum(_turn_sound(o, t, video.sample_rate, np.random.default_rng([split.seed, index, 2, j]))
                for j, o in enumerate(objects))
  elif split.events:
    sound = sound * note_envelope(t, objects[0]["onsets"], decay=0.15)
  elif split.duets:  # the second object's sound from a stream of its own
    if len(objects) < 2:
      raise RuntimeError(f"{split.name} scene {index}: cannot place the second object")
    other = np.random.default_rng([split.seed, index, 3])
    stems.append(class_sound(objects[1]["cls"], n, video.sample_rate, other)
                 * 10 ** (other.uniform(-24, -12) / 20))
    sound = stems[0] + stems[1]
  out = (frames, (sound + noise).astype(np.float32), sounding, box)
  boxed = lambda o: (o["y"] / size, o["x"] / size, (o["y"] + o["d"]) / size, (o["x"] + o["d"]) / size)
  if with_speakers:
    speakers = ([(o["name"], boxed(o), o["turns"]) for o in objects] if split.turns
                else [(o["name"], boxed(o), [(0.0, seconds)]) for o in objects[:2]] if split.duets
                else [(CLASSES[sounding], box, [(0.0, seconds)])])
    out = (*out, speakers)
  if with_stems:
    out = (*out, [x.astype(np.float32) for x in stems])
  return out


def _turn_sound(o: dict, t: np.ndarray, sample_rate: int, rng: np.random.Generator):
  """An object's notes within its turns, each note's decay cut off 50 ms after the
  turn ends, so that the turns are the sounding intervals."""
  sound = class_sound(o["cls"], len(t), sample_rate, rng) * 10 ** (rng.uniform(-24, -12) / 20)
  env = np.zeros_like(t)
  for start, end in o["turns"]:
    inside = [x for x in o["onsets"] if start <= x < end]
    env += note_envelope(t, np.array(inside), decay=0.15) * (t < end + 0.05)
  return sound * np.minimum(env, 1.0)


def _swells(split: SplitSpec, index: int, objects: list, n_frames: int, fps: float,
            seconds: float):
  """Per object, its swell (0..1) at each frame; None without time structure.
  Each object's onsets are stored on it (the sounding object's make its notes)."""
  if not split.events:
    return None
  rng = np.random.default_rng([split.seed, index, 1])  # a stream of its own
  t = np.arange(n_frames) / fps
  out = []
  turns = speaking_turns(seconds, len(objects), rng) if split.turns else None
  for j, o in enumerate(objects):
    o["onsets"] = event_onsets(seconds, rng)
    if turns is not None:  # its notes only in its turns, one at each turn's start
      o["turns"] = [(s, e) for s, e, owner in turns if owner == j]
      o["onsets"] = np.sort(np.concatenate(
          [[s + 0.02 for s, _ in o["turns"]],
           [x for x in o["onsets"] if any(s + EVENT_GAP <= x < e - 0.1 for s, e in o["turns"])]]))
    out.append(note_envelope(t, o["onsets"], decay=EVENT_SWELL))
  return out


def draw_swollen(img: np.ndarray, o: dict, y: int, x: int, amount: float) -> None:
  """The object grown by up to 40% about its centre and brightened, at `amount`."""
  size = img.shape[0]
  d = int(round(o["d"] * (1 + 0.4 * amount)))
  cy, cx = y + o["d"] / 2, x + o["d"] / 2
  y0, x0 = int(round(cy - d / 2)), int(round(cx - d / 2))
  mask = shape_mask(CLASSES.index(o["name"]), d, o["angle"])
  ys, xs = np.nonzero(mask)
  ys, xs = ys + y0, xs + x0
  keep = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
  img[ys[keep], xs[keep]] = np.minimum(o["colour"] * (1 + 0.5 * amount) + 0.15 * amount, 1.0)


def write_mp4(path: str, frames: np.ndarray, waveform: np.ndarray, video: VideoSpec) -> None:
  import av
  tmp = path + ".tmp.mp4"
  with av.open(tmp, "w") as container:
    vs = container.add_stream("libx264", rate=video.fps)
    vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    vs.options = {"preset": "ultrafast", "crf": "18"}
    aus = container.add_stream("aac", rate=video.sample_rate)
    aus.layout = "mono"
    for f in frames:
      container.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
    container.mux(vs.encode())
    af = av.AudioFrame.from_ndarray(waveform[None, :], format="fltp", layout="mono")
    af.sample_rate = video.sample_rate
    container.mux(aus.encode(af))
    container.mux(aus.encode(None))
  os.replace(tmp, path)


def _write_range(args) -> list[tuple[str, str, tuple]]:
  split, start, stop, out_dir, video = args
  rows = []
  for i in range(start, stop):
    name = f"{split.name}_{i:05d}.mp4"
    frames, waveform, cls, box, speakers, *stems = make_scene(
        split, i, video, with_speakers=True, with_stems=split.duets)
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
      if split.duets:
        write_stems(stems_folder(out_dir), name, stems[0], video.sample_rate)
      write_mp4(path, frames, waveform, video)
    rows.append((name, class_name(split, cls), box, speakers))
  return rows


STEMS = "stems"  # the folder of a duets split's stems beside its shards


def stems_folder(videos: str) -> str:
  """Where a duets split's generator writes the stems: beside the videos' folder,
  not in it, so that prepare does not take them for videos."""
  return f"{videos.rstrip('/')}_{STEMS}"


def stem_path(folder: str, video: str, k: int) -> str:
  """Where object k's stem of `video` (a file name) lies in a stems folder."""
  return os.path.join(folder, f"{os.path.splitext(video)[0]}_object{k}.flac")


def write_stems(folder: str, video: str, stems, sample_rate: int) -> None:
  """Each object's sound, at STEM_RATE, as 24-bit FLAC (lossless; a fraction of the size)."""
  import soundfile
  from data_pipelines import texture
  os.makedirs(folder, exist_ok=True)
  for k, stem in enumerate(stems):
    soundfile.write(stem_path(folder, video, k), texture.resample(stem, sample_rate, STEM_RATE),
                    STEM_RATE, subtype="PCM_24")


def _write_csvs(rows, out_dir: str, seconds: float) -> None:
  mid = seconds / 2
  with open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "label"])
    w.writerows((name, label) for name, label, _, _ in rows)
  with open(os.path.join(out_dir, "boxes.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "ymin", "xmin", "ymax", "xmax", "time"])
    w.writerows((name, *(f"{c:.4f}" for c in box), f"{mid:.3f}") for name, _, box, _ in rows)
  write_speakers_csv([(name, speakers) for name, _, _, speakers in rows],
                     os.path.join(out_dir, "speakers.csv"))


SPEAKER_COLUMNS = ("file", "object", "label", "ymin", "xmin", "ymax", "xmax", "start", "end")


def write_speakers_csv(rows, path: str) -> None:
  """[(file, [(label, box, [(start, end), ...]), ...])] -> the sounding-interval CSV
  that the active speaker evaluator reads: one row per object and interval (s),
  boxes in 0..1 of the frame at mid-clip."""
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(SPEAKER_COLUMNS)
    for name, speakers in rows:
      for k, (label, box, intervals) in enumerate(speakers):
        for start, end in intervals:
          w.writerow((name, k, label, *(f"{c:.4f}" for c in box), f"{start:.3f}", f"{end:.3f}"))


def generate_splits(out_dirs: dict, video: VideoSpec = VideoSpec(),
                    workers: int | None = None) -> None:
  """Writes each split's mp4 files plus labels.csv and boxes.csv into its folder.

  One process pool serves all splits: starting workers costs more than a split.
  """
  workers = workers or os.cpu_count() or 1
  chunks = []
  for split, out_dir in out_dirs.items():
    os.makedirs(out_dir, exist_ok=True)
    step = max(1, min(25, split.num_clips // (4 * workers)))
    chunks += [(split, s, min(s + step, split.num_clips), out_dir, video)
               for s in range(0, split.num_clips, step)]
  with concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context("spawn")) as pool:
    results = list(pool.map(_write_range, chunks))
  for split, out_dir in out_dirs.items():
    rows = [r for chunk, rs in zip(chunks, results) if chunk[0] is split for r in rs]
    _write_csvs(rows, out_dir, split.seconds or video.seconds)


def generate_split(split: SplitSpec, out_dir: str, video: VideoSpec = VideoSpec(),
                   workers: int | None = None) -> None:
  generate_splits({split: out_dir}, video, workers)
