"""The sounds of a video's objects, separated by a trained separation model.

    avjax-separate video.mp4 --workdir=DIR --output=OUT [--max_objects=2]

The model (configs/separation.py) gives, for every location of a frame's map, the
mask of that location's sound in the window's audio (the "sound of pixels").
The video is read twice, a window at a time, so memory holds a batch of windows,
not the video:
  1. windows of the training length, centred every half window, each with the
     frame at its centre: each location claims the share of the window's energy
     that its mask passes. The shares, averaged over windows by their energy, form
     a map whose peaks (metrics.map_objects) are the objects. A peak is a place
     in the frame: the camera is taken to hold still.
  2. every window separated by each object's mask, inverted with the mixture's
     phase; Hann-weighted windows overlap-add into OUT/<video>_object<k>.wav.
OUT/<video>_objects.csv lists each object's place (y, x in 0..1: the centre of its
cell of the crop the model sees) and its share of the energy.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
from typing import Iterator, Sequence

import numpy as np

from data_pipelines import fs


def windows_with_frames(path: str, emb, hop_samples: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(uint8 crop, window) pairs: windows of the model's length centred every
  `hop_samples` (zero-padded at the ends), the frame at each centre. Raises
  ValueError naming `path` for a file it cannot read."""
  from avjax import embed
  from data_pipelines import decode
  rate = emb.sample_rate / hop_samples
  frames = decode.stream_frames(path, fps=rate, short_side=emb.data.resize)
  windows = embed.stream_windows(decode.stream_audio(path, sample_rate=emb.sample_rate),
                                 emb.sample_rate, emb.window_samples, hop_samples / emb.sample_rate)
  try:
    for frame, (_, window) in zip(frames, windows):
      yield embed.centre_crop(frame, emb.data), window
  except decode.BadMediaError as e:
    raise ValueError(f"{path}: {e}") from e


def batches(pairs, size: int):
  """Lists of up to `size` pairs -> (frames [n], windows [n], n) padded to `size`."""
  chunk = []
  for pair in pairs:
    chunk.append(pair)
    if len(chunk) == size:
      yield _stack(chunk, size)
      chunk = []
  if chunk:
    yield _stack(chunk, size)


def _stack(chunk, size):
  from avjax import embed
  frames, windows = (embed.pad_rows(np.stack([c[i] for c in chunk]), size) for i in (0, 1))
  return frames, windows, len(chunk)


class OverlapAdd:
  """Windows [S] placed every `hop` samples (window i starting at i * hop - S // 2)
  and weighted by a periodic Hann window, summed and normalised by the summed
  weights; `add` returns the samples no later window can touch, `finish` the rest."""

  def __init__(self, size: int, hop: int):
    from avjax.models import separation
    self.size, self.hop = size, hop
    self.weight = separation.hann(size).astype(np.float64) + 1e-3  # the ends still count
    self.acc = np.zeros(size)
    self.norm = np.zeros(size)
    self.start = -(size // 2)  # the signal position of acc[0]
    self.emitted = 0           # signal samples returned so far

  def add(self, window: np.ndarray) -> np.ndarray:
    self.acc += self.weight * window
    self.norm += self.weight
    ready = self._take(self.hop)
    self.acc = np.concatenate([self.acc[self.hop:], np.zeros(self.hop)])
    self.norm = np.concatenate([self.norm[self.hop:], np.zeros(self.hop)])
    return ready

  def _take(self, n: int) -> np.ndarray:
    out = self.acc[:n] / np.maximum(self.norm[:n], 1e-12)
    first = self.start
    self.start += n
    keep = out[max(0, -first):]  # the zero padding before the signal
    self.emitted += len(keep)
    return keep.astype(np.float32)

  def finish(self, total: int) -> np.ndarray:
    """The rest, up to the signal's `total` samples."""
    rest = self._take(self.size)
    return rest[:max(0, total - (self.emitted - len(rest)))]


class Separator:
  """A separation checkpoint's per-location masks, as two jitted functions."""

  def __init__(self, workdir: str, *, checkpoint: str = "best", batch_size: int = 16):
    import jax
    import jax.numpy as jnp
    from avjax import embed
    from avjax.models import separation
    self.emb = embed.Embedder(workdir, checkpoint=checkpoint, layer="features",
                              batch_size=batch_size)
    model = self.emb.config.model
    if model.name != "separation":
      raise ValueError(f"{workdir}: its model is {model.name!r}, not a separation model "
                       "(configs/separation.py)")
    n_fft, hop = model.n_fft, model.hop
    predict = self.emb.fns.predict

    def masks(variables, frames, windows):
      logits = predict(variables, frames, windows)["separation_location_logits"]
      return jax.nn.sigmoid(logits), separation.stft(windows, n_fft, hop)

    @jax.jit
    def shares(variables, frames, windows):
      """-> (each location's share of the window's energy [B, h, w], energy [B])."""
      mask, spec = masks(variables, frames, windows)
      power = jnp.abs(spec) ** 2
      energy = jnp.sum(power, axis=(1, 2))
      passed = jnp.einsum("bhwtf,btf->bhw", mask, power)
      return passed / jnp.maximum(energy, 1e-12)[:, None, None], energy

    @jax.jit
    def separated(variables, frames, windows, ys, xs):
      """-> [B, objects, samples]: each object's mask at its cell, inverted."""
      mask, spec = masks(variables, frames, windows)
      return separation.istft(mask[:, ys, xs] * spec[:, None], n_fft, hop, windows.shape[-1])

    self._shares, self._separated = shares, separated
    self.batch_size = batch_size
    self.hop = self.emb.window_samples // 2

  def pairs(self, path: str):
    return batches(windows_with_frames(path, self.emb, self.hop), self.batch_size)

  def share_map(self, path: str) -> np.ndarray:
    """Pass 1: each location's share of the video's sound, energy-weighted over windows."""
    total, weight = 0.0, 0.0
    for frames, windows, n in self.pairs(path):
      share, energy = (np.asarray(a)[:n] for a in
                       self._shares(self.emb.variables, frames, windows))
      total = total + np.einsum("bhw,b->hw", share, energy)
      weight += float(energy.sum())
    if not weight:
      raise ValueError(f"{path}: silent (its audio has no energy to separate)")
    return total / weight

  def separate(self, path: str, cells: np.ndarray, outputs: Sequence[str]) -> int:
    """Pass 2: each object's sound into its wav (local paths). -> samples written."""
    import soundfile
    ys, xs = cells[:, 0], cells[:, 1]
    adders = [OverlapAdd(self.emb.window_samples, self.hop) for _ in outputs]
    files = [soundfile.SoundFile(p, "w", samplerate=self.emb.sample_rate, channels=1,
                                 subtype="FLOAT") for p in outputs]
    windows_seen = 0
    try:
      for frames, windows, n in self.pairs(path):
        out = np.asarray(self._separated(self.emb.variables, frames, windows, ys, xs))[:n]
        for row in out:
          for k, (adder, f) in enumerate(zip(adders, files)):
            f.write(adder.add(row[k]))
        windows_seen += n
      # Window i is centred on sample i * hop, the last within the signal: it ends
      # within a hop of the last centre (the wav may run up to a hop past it, in silence).
      total = windows_seen * self.hop
      for adder, f in zip(adders, files):
        f.write(adder.finish(total))
    finally:
      for f in files:
        f.close()
    return total


def separate_file(path: str, sep: Separator, output: str, *, max_objects: int,
                  min_distance: int, min_fraction: float) -> list[dict]:
  """Objects of `path` and their separated sounds under `output` (local or a
  bucket). -> one row per object: its wav, place and share."""
  from avjax import metrics
  if not fs.exists(path):
    raise FileNotFoundError(f"{path}: no such file")
  shares = sep.share_map(path)
  objects = metrics.map_objects(shares, max_objects=max_objects, min_distance=min_distance,
                                min_fraction=min_fraction)
  cells = metrics.object_cells(objects, shares.shape)
  name = os.path.splitext(fs.basename(path))[0]
  fs.makedirs(output)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    local = [os.path.join(tmp, f"{name}_object{k}.wav") for k in range(len(cells))]
    sep.separate(path, cells, local)
    for k, (src, (y, x, share)) in enumerate(zip(local, objects)):
      dst = fs.join(output, os.path.basename(src))
      fs.put(src, dst)
      rows.append({"object": k, "wav": dst, "y": round(float(y), 4), "x": round(float(x), 4),
                   "share": round(float(share), 4)})
  table = io.StringIO()
  writer = csv.DictWriter(table, fieldnames=["object", "wav", "y", "x", "share"])
  writer.writeheader()
  writer.writerows(rows)
  fs.write_text(fs.join(output, f"{name}_objects.csv"), table.getvalue())
  return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  from avjax import cli
  p = cli.video_command_parser(
      __doc__.split("\n")[0], video="a video file with sound (local or gs://)",
      workdir="a separation training workdir", output="folder for the wavs and objects CSV")
  p.add_argument("--max_objects", type=int, default=2)
  p.add_argument("--min_distance", type=int, default=2,
                 help="cells between objects (Chebyshev) in the frame's map")
  p.add_argument("--min_fraction", type=float, default=0.5,
                 help="an object's share above this fraction of the map's range")
  p.add_argument("--batch_size", type=int, default=16)
  return cli.parse_positive(p, argv, ("max_objects", "min_distance", "batch_size"))


def main(args: argparse.Namespace) -> None:
  if not fs.exists(args.video):  # before loading a checkpoint for nothing
    raise FileNotFoundError(f"{args.video}: no such file")
  sep = Separator(args.workdir, checkpoint=args.checkpoint, batch_size=args.batch_size)
  rows = separate_file(args.video, sep, args.output, max_objects=args.max_objects,
                       min_distance=args.min_distance, min_fraction=args.min_fraction)
  for r in rows:
    print(f"object {r['object']} at y={r['y']:.2f} x={r['x']:.2f}, {100 * r['share']:.0f}% of "
          f"the sound: {r['wav']}")
  print(f"separated {len(rows)} object(s) of {args.video} (checkpoint step {sep.emb.step})",
        file=sys.stderr)


def run(argv: Sequence[str] | None = None) -> None:
  from avjax import cli
  cli.run_argparse("avjax-separate", parse_args, main, argv)


if __name__ == "__main__":
  run()
