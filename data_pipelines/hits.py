"""The embedded dataset's struck and scraped objects: sonorization's world (Owens et
al., "Visually Indicated Sounds", CVPR 2016, whose Greatest Hits dataset is a
drumstick hitting and scratching things).

Each clip shows one slab of a material (wood, metal, glass or stone: each its own
shape and surface pattern, in a colour any of them may have) and a stick that either strikes it
(2-4 hits at irregular times) or scrapes along it (1-2 strokes). The sound is modal
synthesis: the material's impulse response, a few decaying partials whose
frequency ratios and damping belong to the material (lower for larger slabs), is
driven by the stick: an impulse and a contact click per hit, a stretch of noise
per stroke. Each clip has two labels, its material and its action; its sounding
intervals (a hit until its ring has fallen 40 dB, a stroke from start to end) go
to speakers.csv, whose `start` column lists the onsets.
"""
from __future__ import annotations

import colorsys

import numpy as np

MATERIALS = ("wood", "metal", "glass", "stone")
ACTIONS = ("hit", "scrape")
# Per material: the lowest partial's range (Hz, for a slab of REFERENCE_WIDTH),
# the partials' frequency ratios, and the lowest partial's damping range (1/s;
# partial k is damped (1 + k / 2) times more). Partials stay below 3.6 kHz, so
# 8 kHz audio (the tiny configs') holds them all.
MODES = {
    "wood": ((220.0, 420.0), (1.0, 2.4, 3.9, 5.6), (25.0, 45.0)),
    "metal": ((420.0, 760.0), (1.0, 2.76, 5.40), (2.5, 5.0)),
    "glass": ((1000.0, 1500.0), (1.0, 1.52, 2.05), (8.0, 14.0)),
    "stone": ((550.0, 950.0), (1.0, 1.7, 2.9, 4.3), (60.0, 90.0)),
}
REFERENCE_WIDTH = 0.45  # slab width (fraction of the frame) at which MODES' ranges hold
MIN_GAP = 0.35  # seconds between hits, and between strokes
APPROACH, RETREAT = 0.12, 0.15  # seconds the stick takes to come down and to lift


def labels(cls: int) -> tuple[str, str]:
  """A hits clip's class index -> (material, action)."""
  return MATERIALS[cls // len(ACTIONS)], ACTIONS[cls % len(ACTIONS)]


def num_classes() -> int:
  return len(MATERIALS) * len(ACTIONS)


# ----------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------
def _hsv(rng, h, s, v) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v)))


# Per material, the slab's width and height ranges (fractions of the frame): a long
# plank of wood, a bar of metal, a pane of glass, a block of stone.
SHAPES = {
    "wood": ((0.5, 0.62), (0.12, 0.17)),
    "metal": ((0.36, 0.5), (0.15, 0.21)),
    "glass": ((0.3, 0.42), (0.26, 0.34)),
    "stone": ((0.24, 0.32), (0.24, 0.32)),
}


def material_surface(material: str, h: int, w: int, background: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
  """[h, w, 3] float image of a slab of `material` over `background` [h, w, 3]. Its
  colour is any material's (a random hue): the material shows in the slab's shape
  (SHAPES) and its surface's pattern, both coarse enough for a 32 px frame, so that
  the colour of a frame, which random features pick up, does not give it away."""
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  base = _hsv(rng, (0.0, 1.0), (0.2, 0.7), (0.45, 0.8))
  if material == "wood":  # wavy grain along its length
    period = rng.uniform(8.0, 12.0)
    grain = np.sin(2 * np.pi * (yy + 2 * np.sin(xx / rng.uniform(6, 10))) / period)
    return base * (1 + 0.4 * grain[..., None])
  if material == "metal":  # lit from above, a wide near-white band
    img = base * (1.35 - 0.8 * (yy / max(1, h - 1))[..., None])
    width = max(3, h // 3)
    band = int(rng.integers(0, max(1, h - width)))
    img[band:band + width] = 0.97
    return img
  if material == "glass":  # a tint over what is behind it, white edges and a streak
    img = 0.5 * background + 0.5 * base
    img[:3] = img[-3:] = img[:, :3] = img[:, -3:] = 0.97
    streak = np.abs(xx - yy * rng.uniform(0.6, 1.4) - rng.uniform(0, w / 2)) < 2.0
    img[streak] = 0.97
    return img
  if material == "stone":  # blotchy at a coarse scale, speckled at a fine one
    blotch = np.kron(rng.normal(0, 0.35, (h // 7 + 1, w // 7 + 1)), np.ones((7, 7)))[:h, :w]
    return base * (1 + blotch[..., None] + rng.normal(0, 0.1, (h, w, 1)))
  raise ValueError(f"unknown material {material!r}")


def stick_tip(t: np.ndarray, action: str, events: list, surface: float, lift: float,
              x_rest: float, x_span: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
  """The stick's tip (y, x) in pixels at times `t`: hovering `lift` above the
  surface at rest; down in APPROACH to touch at each hit and up in RETREAT; for a
  stroke, down before its start, sliding across x_span until its end, then up."""
  height = np.ones_like(t)  # 1: at rest, 0: touching
  x = np.full_like(t, x_rest)
  for start, end in events:
    if action == "hit":
      before = (t >= start - APPROACH) & (t < start)
      after = (t >= start) & (t < start + RETREAT)
      height = np.where(before, (start - t) / APPROACH, height)
      height = np.where(after, (t - start) / RETREAT, height)
    else:
      before = (t >= start - APPROACH) & (t < start)
      during = (t >= start) & (t < end)
      after = (t >= end) & (t < end + RETREAT)
      height = np.where(before, (start - t) / APPROACH, np.where(during, 0.0, height))
      height = np.where(after, (t - end) / RETREAT, height)
      frac = np.clip((t - start) / max(end - start, 1e-3), 0.0, 1.0)
      x = np.where(before | during | after,
                   x_span[0] + (x_span[1] - x_span[0]) * frac, x)
  return surface - 1 - lift * np.clip(height, 0.0, 1.0), x


def _draw_stick(img: np.ndarray, tip_y: float, tip_x: float, angle: float, length: float,
                colour: np.ndarray) -> None:
  """A 3-pixel-wide rod from the tip up and away at `angle` from the vertical."""
  size = img.shape[0]
  for s in np.arange(0, length, 0.5):
    y = int(round(tip_y - s * np.cos(angle)))
    x = int(round(tip_x + s * np.sin(angle)))
    img[max(0, y - 1):max(0, min(size, y + 2)), max(0, x - 1):max(0, min(size, x + 2))] = colour


# ----------------------------------------------------------------------------
# Sounds
# ----------------------------------------------------------------------------
def impulse_response(material: str, width: float, sample_rate: int,
                     rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
  """The slab's modes: sum over partials of a_k exp(-d_k t) sin(2 pi f_k t + phi_k),
  peak-normalised; the lowest partial scales as (REFERENCE_WIDTH / width)^0.5."""
  (f_lo, f_hi), ratios, (d_lo, d_hi) = MODES[material]
  f0 = rng.uniform(f_lo, f_hi) * np.sqrt(REFERENCE_WIDTH / width)
  damping = rng.uniform(d_lo, d_hi)
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  out = np.zeros_like(t)
  for k, r in enumerate(ratios):
    f = f0 * r * (1 + 0.02 * rng.standard_normal())
    if f >= 3600:
      continue
    amp = rng.uniform(0.6, 1.0) / (k + 1) ** 0.7
    out += amp * np.exp(-damping * (1 + k / 2) * t) * np.sin(2 * np.pi * f * t
                                                             + rng.uniform(0, 2 * np.pi))
  return out / (np.max(np.abs(out)) + 1e-9)


def excitation(action: str, events: list, n: int, sample_rate: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """The stick's force on the slab [n] and the contact noise heard directly [n]:
  per hit an impulse and a 4 ms click; per stroke noise with 20 ms ramps."""
  force, contact = np.zeros(n), np.zeros(n)
  for start, end in events:
    i = int(start * sample_rate)
    if action == "hit":
      strength = rng.uniform(0.6, 1.0)
      force[i] += strength
      click = rng.standard_normal(int(0.004 * sample_rate)) * np.exp(
          -np.arange(int(0.004 * sample_rate)) / (0.001 * sample_rate))
      contact[i:i + len(click)] += 0.15 * strength * click[:n - i]
    else:
      j = min(n, int(end * sample_rate))
      ramp = int(0.02 * sample_rate)
      env = np.minimum(1.0, np.minimum(np.arange(j - i) + 1, np.arange(j - i)[::-1] + 1) / ramp)
      noise = rng.standard_normal(j - i) * env
      force[i:j] += 0.06 * noise
      contact[i:j] += 0.01 * noise
  return force, contact


def _events(action: str, seconds: float, rng: np.random.Generator) -> list:
  """[(start, end)] of the hits (end = start) or strokes, MIN_GAP apart, clear of
  the clip's ends by the stick's approach."""
  out, t = [], rng.uniform(APPROACH + 0.03, 0.5)
  limit = seconds - 0.3
  while t < limit and len(out) < (4 if action == "hit" else 2):
    if action == "hit":
      out.append((t, t))
      t += MIN_GAP + rng.exponential(0.15)
    else:
      end = min(t + rng.uniform(0.35, 0.6), seconds - 0.05)
      out.append((t, end))
      t = end + MIN_GAP + rng.exponential(0.15)
  return out


def make_scene(seed: int, index: int, size: int, fps: float, seconds: float,
               sample_rate: int):
  """-> (frames [T, S, S, 3] uint8, waveform [N] float32, class (labels()), slab box
  (ymin, xmin, ymax, xmax in 0..1), sounding intervals [(start, end)])."""
  from data_pipelines import synthetic
  rng = np.random.default_rng([seed, index])
  cls = int(rng.integers(num_classes()))
  material, action = labels(cls)
  (w_lo, w_hi), (h_lo, h_hi) = SHAPES[material]
  w = int(size * rng.uniform(w_lo, w_hi))
  h = int(size * rng.uniform(h_lo, h_hi))
  y = int(rng.integers(size // 2, size - h - 2))
  x = int(rng.integers(2, size - w - 2))
  background = synthetic._background(size, rng)
  slab = material_surface(material, h, w, background[y:y + h, x:x + w], rng)
  events = _events(action, seconds, rng)
  n_frames = int(seconds * fps)
  t = np.arange(n_frames) / fps
  lift = size * rng.uniform(0.15, 0.25)
  x_rest = x + w * rng.uniform(0.3, 0.7)
  span = (x + w * 0.2, x + w * 0.8) if rng.uniform() < 0.5 else (x + w * 0.8, x + w * 0.2)
  tip_y, tip_x = stick_tip(t, action, events, y, lift, x_rest, span)
  angle, length = rng.uniform(-0.6, 0.6), size * rng.uniform(0.35, 0.5)
  stick_colour = _hsv(rng, (0.0, 1.0), (0.1, 0.4), (0.75, 0.95))  # light on the dark backgrounds
  frames = np.empty((n_frames, size, size, 3), np.uint8)
  for f in range(n_frames):
    img = background.copy()
    img[y:y + h, x:x + w] = slab
    _draw_stick(img, tip_y[f], tip_x[f], angle, length, stick_colour)
    frames[f] = np.clip(img * 255, 0, 255).astype(np.uint8)
  n = int(seconds * sample_rate)
  ir = impulse_response(material, w / size, sample_rate, rng)
  force, contact = excitation(action, events, n, sample_rate, rng)
  sound = np.fft.irfft(np.fft.rfft(force, 2 * n) * np.fft.rfft(ir[:n], 2 * n), 2 * n)[:n] + contact
  sound = sound / (np.max(np.abs(sound)) + 1e-9) * 10 ** (rng.uniform(-14, -6) / 20)
  noise = synthetic._bandnoise(n, 30, 8000, sample_rate, rng) * 10 ** (rng.uniform(-52, -42) / 20)
  box = (y / size, x / size, (y + h) / size, (x + w) / size)
  return frames, (sound + noise).astype(np.float32), cls, box, sounding_intervals(
      action, events, material, seconds)


def sounding_intervals(action: str, events: list, material: str, seconds: float) -> list:
  """Hits ring until their slowest partial has fallen 40 dB (capped at the next
  hit and the clip's end); strokes sound from start to end."""
  if action == "scrape":
    return [(s, e) for s, e in events]
  ring = np.log(100.0) / MODES[material][2][0]
  starts = [s for s, _ in events] + [seconds]
  return [(s, min(s + ring, nxt)) for s, nxt in zip(starts, starts[1:])]
