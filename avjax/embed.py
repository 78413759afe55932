"""Embeddings from a trained checkpoint, for your own audio, images and videos.

    avjax-embed audio a.wav b.mp3 --workdir=DIR --output=OUT [--hop=0.1]
    avjax-embed image x.jpg y.png --workdir=DIR --output=OUT
    avjax-embed video v.mp4 --workdir=DIR --output=OUT [--rate=1]

Each input gets OUT/<name>.npz with `embedding` [N, D] and `timestamps` [N] (s):
audio windows of the training length centred on 0, hop, 2*hop... (zero-padded
at the ends, as openl3 does); one row per image (timestamp 0); a video's frames
at `--rate` per second, with `embedding` the frames' and `audio_embedding` the
audio windows centred on those frames. Work is batched across files. A file that
cannot be read is reported, listed in OUT/skipped.csv, and skipped.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from data_pipelines import fs

MODES = ("audio", "image", "video")


# ----------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------
def centre_crop(image: np.ndarray, spec) -> np.ndarray:
  """uint8 [H, W, 3] -> the evaluation crop the reader takes ([crop, crop, 3] uint8);
  `spec` gives `resize` and `crop` (a ReaderSpec)."""
  from data_pipelines import clip_ops
  return clip_ops.resize_crop(image, None, spec=spec, train=False).numpy()


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
  """x [n, ...] zero-padded to `size` rows: every batch of one compiled shape."""
  short = size - len(x)
  return np.concatenate([x, np.zeros((short, *x.shape[1:]), x.dtype)]) if short > 0 else x


# ----------------------------------------------------------------------------
# The model side
# ----------------------------------------------------------------------------
class Embedder:
  """A checkpoint's frame and audio embedding functions.

  `layer` "embedding" gives the models' embedding heads (AVE/AVOL, L3 with
  contrastive heads); "features" the max-pooled last conv layer (openl3-style).
  """

  def __init__(self, workdir: str, *, checkpoint: str = "best", layer: str = "embedding",
               batch_size: int = 64, conv: str | None = None):
    import jax
    from avjax import checkpoint as checkpoint_lib
    from avjax import cli, models, predict
    from avjax import input as input_lib
    if layer not in ("embedding", "features"):
      raise ValueError(f"layer must be embedding or features, got {layer!r}")
    self.config = cli.load_workdir_config(workdir)
    if conv is not None:  # the convolutions' seam: the same numbers, other kernels
      self.config.model.conv = conv
    self.layer = layer
    fns = predict.model_fns(models.build(self.config.model), self.config.data)
    self.fns = fns
    self.audio_input = fns.audio_input
    self.variables, self.step = checkpoint_lib.load_variables(workdir, self.config, fns.init,
                                                              which=checkpoint)
    self.data = input_lib.reader_spec(self.config.data)  # crops; the spectrogram framing
    self.spectrogram = self.data.spectrogram
    self.batch_size = batch_size

    def output(out, key):
      if key not in out:
        raise ValueError(f"the model gives no {key!r} (outputs: {sorted(out)}); "
                         "try --layer=features")
      return out[key]

    # Pure (variables, input) -> [N, D]: uint8 crops, and the model's audio input
    # (log-spectrograms [N, F, T, 1], or waveforms [N, S]). Jitted here; exported
    # by avjax/export.py.
    self.frame_fn = lambda v, x: output(fns.predict(v, x, None), f"frame_{layer}")
    self.audio_fn = lambda v, x: output(fns.predict(v, None, x), f"audio_{layer}")
    self._frames = jax.jit(self.frame_fn)
    self._audio = jax.jit(self.audio_fn)

  @property
  def sample_rate(self) -> int:
    return self.spectrogram.sample_rate

  @property
  def window_samples(self) -> int:
    return self.spectrogram.num_samples

  def _batched(self, fn: Callable, items: np.ndarray, prepare: Callable) -> np.ndarray:
    """Runs `fn` over `items` in fixed-size batches (the last padded: one compilation)."""
    out = []
    for i in range(0, len(items), self.batch_size):
      chunk = items[i:i + self.batch_size]
      out.append(np.asarray(fn(self.variables, prepare(pad_rows(chunk, self.batch_size))))[:len(chunk)])
    return np.concatenate(out).astype(np.float32)

  def embed_frames(self, frames: np.ndarray) -> np.ndarray:
    """uint8 [N, crop, crop, 3] (already cropped) -> [N, D]."""
    return self._batched(self._frames, np.asarray(frames, np.uint8), lambda chunk: chunk)

  def embed_windows(self, windows: np.ndarray) -> np.ndarray:
    """[N, window_samples] waveforms at `sample_rate` -> [N, D]."""
    from data_pipelines import spectrogram as spectrogram_lib  # numpy: no TensorFlow

    def prepare(chunk):
      if self.audio_input == "waveform":
        return chunk
      return spectrogram_lib.log_spectrogram_numpy(chunk, self.spectrogram)[..., None]

    return self._batched(self._audio, windows, prepare)


# ----------------------------------------------------------------------------
# Files -> rows -> batches -> npz
# ----------------------------------------------------------------------------
def stream_windows(chunks: Iterable[np.ndarray], sample_rate: int, num_samples: int,
                   hop_s: float) -> Iterator[tuple[float, np.ndarray]]:
  """(centre, window) for centres 0, hop, 2*hop... up to the signal's end, from a
  stream of waveform chunks, holding one window's samples at a time. Window i
  starts at round(i * hop * rate) - S // 2 of the zero-padded signal (openl3's
  centring); the last is the last centre within the signal."""
  if hop_s <= 0:
    raise ValueError(f"hop must be positive, got {hop_s}")
  half = num_samples // 2
  buf = np.zeros(half, np.float32)  # buf[0] is sample `base` of the zero-padded signal
  base = -half
  total = 0
  i = 0

  def start(i):  # first sample of window i
    return int(np.round(i * hop_s * sample_rate)) - half

  for chunk in chunks:
    buf = np.concatenate([buf, np.asarray(chunk, np.float32)])
    total += len(chunk)
    while start(i) + num_samples <= base + len(buf):
      s0 = start(i) - base
      yield i * hop_s, buf[s0:s0 + num_samples].copy()
      i += 1
    keep = min(max(0, start(i) - base), len(buf))  # nothing before the next window is needed
    buf, base = buf[keep:], base + keep
  last = int(np.floor(total / sample_rate / hop_s + 1e-9))
  while i <= last:
    s0 = start(i) - base
    window = np.zeros(num_samples, np.float32)
    piece = buf[max(0, s0):s0 + num_samples]
    window[max(0, -s0):max(0, -s0) + len(piece)] = piece
    yield i * hop_s, window
    i += 1


def file_rows(mode: str, path: str, emb: "Embedder", *, hop: float,
              rate: float) -> Iterator[dict]:
  """One input's rows: {"t", and "frames" and/or "windows"}, decoded as they are
  consumed. Raises decode.BadMediaError (or ValueError) for a file it cannot use."""
  from data_pipelines import decode
  s = emb.data
  if mode == "audio":
    for t, window in stream_windows(decode.stream_audio(path, sample_rate=emb.sample_rate),
                                    emb.sample_rate, emb.window_samples, hop):
      yield {"t": t, "windows": window}
  elif mode == "image":
    from PIL import Image, UnidentifiedImageError
    try:
      with fs.open(path, "rb") as f, Image.open(f) as im:
        image = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
      raise decode.BadMediaError(f"cannot read image: {type(e).__name__}: {e}") from e
    yield {"t": 0.0, "frames": centre_crop(image, s)}
  else:
    frames = decode.stream_frames(path, fps=rate, short_side=s.resize)
    windows = stream_windows(decode.stream_audio(path, sample_rate=emb.sample_rate),
                             emb.sample_rate, emb.window_samples, 1.0 / rate)
    for k, (frame, (_, window)) in enumerate(zip(frames, windows)):
      yield {"t": k / rate, "frames": centre_crop(frame, s), "windows": window}


class _Batches:
  """Rows of several files into fixed-size batches per input kind; each file's
  outputs are handed back, in order, once all its rows are embedded."""

  KEYS = {"frames": "embedding", "windows": "audio_embedding"}

  def __init__(self, emb: "Embedder"):
    self.emb = emb
    self.fns = {"frames": emb.embed_frames, "windows": emb.embed_windows}
    self.pending = {k: [] for k in self.KEYS}  # [(file, array)]
    self.out: dict[int, dict] = {}
    self.done: list[int] = []

  def add(self, file: int, row: dict) -> None:
    out = self.out.setdefault(file, {"timestamps": [], **{k: [] for k in self.KEYS}})
    out["timestamps"].append(row["t"])
    for kind in self.KEYS:
      if kind in row:
        self.pending[kind].append((file, row[kind]))
        if len(self.pending[kind]) == self.emb.batch_size:
          self._run(kind)

  def _run(self, kind: str) -> None:
    items, self.pending[kind] = self.pending[kind], []
    if items:
      for (file, _), e in zip(items, self.fns[kind](np.stack([a for _, a in items]))):
        self.out[file][kind].append(e)

  def drop(self, file: int) -> None:
    """Forgets a file that failed part way through."""
    self.out.pop(file, None)
    for kind in self.pending:
      self.pending[kind] = [(f, a) for f, a in self.pending[kind] if f != file]

  def complete(self, file: int | None, *, flush: bool = False) -> Iterator[tuple[int, dict]]:
    """Marks `file`'s rows complete (None: no file); yields (file, arrays) for
    every complete file whose rows are all embedded (all of them when `flush`)."""
    if file is not None:
      self.done.append(file)
    if flush:
      for kind in self.KEYS:
        self._run(kind)
    for f in list(self.done):
      if not any(p == f for items in self.pending.values() for p, _ in items):
        self.done.remove(f)
        yield f, self._arrays(self.out.pop(f))

  def _arrays(self, out: dict) -> dict:
    arrays = {"timestamps": np.asarray(out.pop("timestamps"), np.float32)}
    for kind, key in self.KEYS.items():
      if out[kind]:
        arrays[key] = np.stack(out[kind]).astype(np.float32)
    if "embedding" not in arrays:  # audio mode: the windows are the embedding
      arrays["embedding"] = arrays.pop("audio_embedding")
    return arrays


def output_name(path: str) -> str:
  return os.path.splitext(fs.basename(path))[0] + ".npz"


def expand_inputs(inputs: Iterable[str]) -> list[str]:
  """Files as given; a folder stands for the files in it (sorted, hidden ones left out)."""
  files = []
  for p in inputs:
    if not fs.exists(p):
      raise FileNotFoundError(f"{p}: no such file or folder")
    if fs.isdir(p):
      files += [fs.join(p, n) for n in fs.listdir(p)
                if not n.startswith(".") and not fs.isdir(fs.join(p, n))]
    else:
      files.append(p)
  names = [output_name(f) for f in files]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise ValueError(f"several inputs would write the same output: {dupes}")
  return files


def embed_files(mode: str, files: Sequence[str], emb: Embedder, output: str, *, hop: float = 0.1,
                rate: float = 1.0, log: Callable[[str], None] = print) -> tuple[list[str], list]:
  """Embeds `files` into `output`; -> (written npz paths, [(file, reason)] skipped).

  Rows stream from the decoders into batches that span files: memory holds a
  batch of windows or frames, not a file.
  """
  from data_pipelines import decode
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  fs.makedirs(output)
  written, skipped = [], []
  batches = _Batches(emb)

  def write(ready):
    for f, arrays in ready:
      path = fs.join(output, output_name(files[f]))
      with fs.open(path, "wb") as fh:
        np.savez(fh, **arrays)
      written.append(path)

  for f, path in enumerate(files):
    try:
      n = 0
      for row in file_rows(mode, path, emb, hop=hop, rate=rate):
        batches.add(f, row)
        n += 1
      if n == 0:
        raise decode.BadMediaError("nothing to embed (no frames)")
    except (decode.BadMediaError, ValueError, OSError) as e:
      batches.drop(f)
      skipped.append((path, str(e)))
      log(f"skipped {path}: {e}")
      continue
    write(batches.complete(f))
  write(batches.complete(None, flush=True))
  report = io.StringIO()
  csv.writer(report).writerows([("file", "reason"), *skipped])
  fs.write_text(fs.join(output, "skipped.csv"), report.getvalue())
  return written, skipped


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("mode", choices=MODES)
  p.add_argument("files", nargs="+", help="input files, or folders of them")
  p.add_argument("--workdir", required=True, help="a training workdir (config.json + checkpoints)")
  p.add_argument("--output", required=True, help="folder for the .npz files")
  p.add_argument("--checkpoint", default="best", help="best, latest, or a step")
  p.add_argument("--layer", default="embedding", choices=("embedding", "features"))
  p.add_argument("--hop", type=float, default=0.1, help="audio: seconds between window centres")
  p.add_argument("--rate", type=float, default=1.0, help="video: frames per second to embed")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--verbose", action="store_true", help="on an error, show the traceback")
  from avjax import cli
  return cli.parse_positive(p, argv, ("hop", "rate", "batch_size"))


def main(args: argparse.Namespace) -> None:
  files = expand_inputs(args.files)
  if not files:  # before loading a checkpoint for nothing
    raise ValueError(f"no input files in {' '.join(args.files)}")
  emb = Embedder(args.workdir, checkpoint=args.checkpoint, layer=args.layer,
                 batch_size=args.batch_size)
  written, skipped = embed_files(args.mode, files, emb, args.output, hop=args.hop, rate=args.rate,
                                 log=lambda m: print(m, file=sys.stderr))
  print(f"embedded {len(written)} of {len(files)} files into {args.output} "
        f"(checkpoint step {emb.step}); skipped {len(skipped)}"
        + (f", see {fs.join(args.output, 'skipped.csv')}" if skipped else ""))
  if not written:
    raise ValueError(f"none of the {len(files)} input(s) could be embedded; "
                     f"reasons in {fs.join(args.output, 'skipped.csv')}")


def run(argv: Sequence[str] | None = None) -> None:
  from avjax import cli
  cli.run_argparse("avjax-embed", parse_args, main, argv)


if __name__ == "__main__":
  run()
