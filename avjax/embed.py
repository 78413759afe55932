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
import dataclasses
import os
import sys
from typing import Callable, Iterable, Sequence

import numpy as np

MODES = ("audio", "image", "video")


# ----------------------------------------------------------------------------
# Windows and frames (pure numpy)
# ----------------------------------------------------------------------------
def window_centres(duration_s: float, hop_s: float) -> np.ndarray:
  """0, hop, 2*hop, ... up to the end of the signal (at least one)."""
  if hop_s <= 0:
    raise ValueError(f"hop must be positive, got {hop_s}")
  return np.arange(int(np.floor(duration_s / hop_s + 1e-9)) + 1) * hop_s


def windows_at(waveform: np.ndarray, sample_rate: int, num_samples: int,
               centres_s: np.ndarray) -> np.ndarray:
  """[N, num_samples] windows centred on `centres_s`, zero beyond the signal."""
  half = num_samples // 2
  padded = np.pad(np.asarray(waveform, np.float32), (half, num_samples))
  starts = np.round(np.asarray(centres_s) * sample_rate).astype(np.int64)  # in padded coordinates
  return np.stack([padded[s:s + num_samples] for s in starts])


def centre_crop(image: np.ndarray, spec) -> np.ndarray:
  """uint8 [H, W, 3] -> the evaluation crop the reader takes ([crop, crop, 3] uint8)."""
  from data_pipelines import clip_ops
  return clip_ops.resize_crop(image, None, spec=spec, train=False).numpy()


# ----------------------------------------------------------------------------
# The model side
# ----------------------------------------------------------------------------
class Embedder:
  """A checkpoint's frame and audio embedding functions.

  `layer` "embedding" gives the models' embedding heads (AVE/AVOL, L3 with
  contrastive heads); "features" the max-pooled last conv layer (openl3-style).
  """

  def __init__(self, workdir: str, *, checkpoint: str = "best", layer: str = "embedding",
               batch_size: int = 64):
    import jax
    from avjax import checkpoint as checkpoint_lib
    from avjax import cli, models, predict
    from avjax import input as input_lib
    if layer not in ("embedding", "features"):
      raise ValueError(f"layer must be embedding or features, got {layer!r}")
    self.config = cli.load_workdir_config(workdir)
    fns = predict.model_fns(models.build(self.config.model), self.config.data)
    self.variables, self.step = checkpoint_lib.load_variables(workdir, self.config, fns.init,
                                                              which=checkpoint)
    self.spec = input_lib.reader_spec(self.config.data)
    self.batch_size = batch_size

    def output(out, key):
      if key not in out:
        raise ValueError(f"the model gives no {key!r} (outputs: {sorted(out)}); "
                         "try --layer=features")
      return out[key]

    self._frames = jax.jit(lambda v, x: output(fns.predict(v, x, None), f"frame_{layer}"))
    self._audio = jax.jit(lambda v, x: output(fns.predict(v, None, x), f"audio_{layer}"))

  @property
  def sample_rate(self) -> int:
    return self.spec.spectrogram.sample_rate

  @property
  def window_samples(self) -> int:
    return self.spec.spectrogram.num_samples

  def _batched(self, fn: Callable, items: np.ndarray, prepare: Callable) -> np.ndarray:
    """Runs `fn` over `items` in fixed-size batches (the last padded: one compilation)."""
    out = []
    for i in range(0, len(items), self.batch_size):
      chunk = items[i:i + self.batch_size]
      n = len(chunk)
      if n < self.batch_size:
        chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), chunk.dtype)])
      out.append(np.asarray(fn(self.variables, prepare(chunk)))[:n])
    return np.concatenate(out).astype(np.float32)

  def embed_frames(self, frames: np.ndarray) -> np.ndarray:
    """uint8 [N, crop, crop, 3] (already cropped) -> [N, D]."""
    return self._batched(self._frames, np.asarray(frames, np.uint8), lambda chunk: chunk)

  def embed_windows(self, windows: np.ndarray) -> np.ndarray:
    """[N, window_samples] waveforms at `sample_rate` -> [N, D]."""
    from data_pipelines import spectrogram as spectrogram_lib

    def prepare(chunk):
      return spectrogram_lib.log_spectrogram(chunk, self.spec.spectrogram).numpy()[..., None]

    return self._batched(self._audio, windows, prepare)


# ----------------------------------------------------------------------------
# Files -> items -> npz
# ----------------------------------------------------------------------------
@dataclasses.dataclass
class Decoded:
  """One input's model inputs: frames uint8 [N,c,c,3] and/or audio windows [N,S]."""
  path: str
  timestamps: np.ndarray
  frames: np.ndarray | None = None
  windows: np.ndarray | None = None


def decode_input(mode: str, path: str, emb: Embedder, *, hop: float, rate: float) -> Decoded:
  """Raises decode.BadMediaError (or ValueError) with the reason for a file it cannot use."""
  from data_pipelines import decode
  s = emb.spec
  if mode == "audio":
    waveform = decode.decode_audio(path, sample_rate=emb.sample_rate)
    t = window_centres(len(waveform) / emb.sample_rate, hop)
    return Decoded(path, t, windows=windows_at(waveform, emb.sample_rate, emb.window_samples, t))
  if mode == "image":
    from PIL import Image, UnidentifiedImageError
    try:
      with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
      raise decode.BadMediaError(f"cannot read image: {type(e).__name__}: {e}") from e
    return Decoded(path, np.zeros(1), frames=centre_crop(image, s)[None])
  video = decode.decode_video(path, fps=rate, sample_rate=emb.sample_rate, short_side=s.resize,
                              min_seconds=0.0)
  n = min(len(video.frames), int(np.floor(len(video.waveform) / emb.sample_rate * rate)) + 1)
  t = np.arange(n) / rate
  frames = np.stack([centre_crop(f, s) for f in video.frames[:n]])
  return Decoded(path, t, frames=frames,
                 windows=windows_at(video.waveform, emb.sample_rate, emb.window_samples, t))


def embed_group(group: Sequence[Decoded], emb: Embedder) -> list[dict]:
  """One batched pass over several inputs; -> each input's arrays for its npz."""
  results = [{"timestamps": d.timestamps.astype(np.float32)} for d in group]
  for kind, key, fn in (("frames", "embedding", emb.embed_frames),
                        ("windows", "audio_embedding", emb.embed_windows)):
    parts = [getattr(d, kind) for d in group]
    if parts[0] is None:
      continue
    out = np.split(fn(np.concatenate(parts)), np.cumsum([len(p) for p in parts])[:-1])
    for r, o in zip(results, out):
      r[key] = o
  for r in results:
    if "embedding" not in r:  # audio mode: the windows are the embedding
      r["embedding"] = r.pop("audio_embedding")
  return results


def output_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0] + ".npz"


def expand_inputs(inputs: Iterable[str]) -> list[str]:
  """Files as given; a folder stands for the files in it (sorted, hidden ones left out)."""
  files = []
  for p in inputs:
    if os.path.isdir(p):
      files += sorted(os.path.join(p, n) for n in os.listdir(p)
                      if not n.startswith(".") and os.path.isfile(os.path.join(p, n)))
    else:
      files.append(p)
  names = [output_name(f) for f in files]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise ValueError(f"several inputs would write the same output: {dupes}")
  return files


def embed_files(mode: str, files: Sequence[str], emb: Embedder, output: str, *, hop: float = 0.1,
                rate: float = 1.0, log: Callable[[str], None] = print) -> tuple[list[str], list]:
  """Embeds `files` into `output`; -> (written npz paths, [(file, reason)] skipped)."""
  from data_pipelines import decode
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  os.makedirs(output, exist_ok=True)
  written, skipped, group = [], [], []

  def flush():
    for d, arrays in zip(group, embed_group(group, emb)):
      path = os.path.join(output, output_name(d.path))
      np.savez(path, **arrays)
      written.append(path)
    group.clear()

  for f in files:
    try:
      group.append(decode_input(mode, f, emb, hop=hop, rate=rate))
    except (decode.BadMediaError, ValueError, OSError) as e:
      skipped.append((f, str(e)))
      log(f"skipped {f}: {e}")
      continue
    if sum(len(d.timestamps) for d in group) >= emb.batch_size:
      flush()
  if group:
    flush()
  with open(os.path.join(output, "skipped.csv"), "w", newline="") as fh:
    csv.writer(fh).writerows([("file", "reason"), *skipped])
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
  return p.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  args = parse_args(argv)
  try:
    files = expand_inputs(args.files)
    emb = Embedder(args.workdir, checkpoint=args.checkpoint, layer=args.layer,
                   batch_size=args.batch_size)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"avjax-embed: {e}")
  written, skipped = embed_files(args.mode, files, emb, args.output, hop=args.hop, rate=args.rate,
                                 log=lambda m: print(m, file=sys.stderr))
  print(f"embedded {len(written)} of {len(files)} files into {args.output} "
        f"(checkpoint step {emb.step}); skipped {len(skipped)}"
        + (f", see {os.path.join(args.output, 'skipped.csv')}" if skipped else ""))
  if not written:
    sys.exit(1)


if __name__ == "__main__":
  run()
