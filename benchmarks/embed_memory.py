"""Peak memory of `avjax-embed audio` on a long file: streaming vs the whole file.

  python benchmarks/embed_memory.py [--minutes 30] [--hop 0.1]

Writes (once, into a temporary folder, never committed) a long 16 kHz wav and a
workdir holding tiny AVE-Net at random initialisation, then embeds the wav in a
fresh process with the avjax-embed command (windows stream from the decoder in
batches) and, as the reference, in a fresh process that decodes the whole file
and cuts every window before embedding them (what avjax-embed did before it
streamed). Prints each process's peak RSS and wall time, and their ratios.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The reference: decode everything, cut every window, then embed them in batches.
WHOLE_FILE = """
import sys, numpy as np
from avjax import embed
from data_pipelines import decode
wav, workdir, hop = sys.argv[1], sys.argv[2], float(sys.argv[3])
emb = embed.Embedder(workdir, batch_size=64)
x = decode.decode_audio(wav, sample_rate=emb.sample_rate)
n = int(np.floor(len(x) / emb.sample_rate / hop + 1e-9)) + 1
half = emb.window_samples // 2
padded = np.pad(x, (half, emb.window_samples))
starts = np.round(np.arange(n) * hop * emb.sample_rate).astype(np.int64)
windows = np.stack([padded[s:s + emb.window_samples] for s in starts])
out = emb.embed_windows(windows)
print(out.shape)
"""


def write_wav(path: str, minutes: float, rate: int = 16000) -> None:
  rng = np.random.default_rng(0)
  with wave.open(path, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    for _ in range(int(minutes * 60)):  # a second at a time
      t = np.arange(rate) / rate
      x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * t) + 0.05 * rng.standard_normal(rate)
      w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


def make_workdir(path: str) -> None:
  """Tiny AVE-Net at initialisation, saved as a training run would save it."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import jax
  from avjax import checkpoint, mesh as mesh_lib, train
  from configs import avenet
  config = avenet.get_config("tiny")
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=1))
  fns = train.make_train_functions(config, mesh_lib.make_mesh(config))
  mngr = checkpoint.make_manager(path, config)
  checkpoint.save(mngr, 0, fns.init(jax.random.PRNGKey(0)), batch_size=config.batch_size,
                  metrics=None)
  mngr.wait_until_finished()
  mngr.close()


def peak_rss(args: list[str]) -> tuple[float, float]:
  """Runs `python ARGS` -> (its peak RSS in MB, wall seconds).

  Linux counts a child's peak from the fork, so this process imports no
  TensorFlow or JAX itself (the workdir is made by a child too)."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  t = time.perf_counter()
  proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  _, status, usage = os.wait4(proc.pid, 0)
  wall = time.perf_counter() - t
  if os.waitstatus_to_exitcode(status) != 0:
    raise SystemExit(f"{args[:3]} failed: {proc.stderr.read().decode()[-2000:]}")
  return usage.ru_maxrss / 1024, wall


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--minutes", type=float, default=30.0)
  p.add_argument("--hop", type=float, default=0.1)
  p.add_argument("--make_workdir", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.make_workdir:
    return make_workdir(args.make_workdir)
  with tempfile.TemporaryDirectory() as tmp:
    wav = os.path.join(tmp, "long.wav")
    write_wav(wav, args.minutes)
    baseline = peak_rss(["-c", "import tensorflow, jax, flax, orbax.checkpoint, av"])
    peak_rss([os.path.abspath(__file__), "--make_workdir", os.path.join(tmp, "w")])
    streamed = peak_rss(["-m", "avjax.embed", "audio", wav, f"--workdir={tmp}/w",
                         f"--output={tmp}/out", f"--hop={args.hop}"])
    whole = peak_rss(["-c", WHOLE_FILE, wav, f"{tmp}/w", str(args.hop)])
    emb = np.load(os.path.join(tmp, "out", "long.npz"))["embedding"]
  print(f"embedding a {args.minutes:g}-minute 16 kHz wav (hop {args.hop} s: {len(emb)} windows) "
        "with tiny AVE-Net, one process each:")
  print(f"  import TF+JAX+flax+orbax+av  peak RSS {baseline[0]:7.0f} MB  (audio embedding loads no TF)")
  print(f"  avjax-embed (streaming)     peak RSS {streamed[0]:7.0f} MB   {streamed[1]:6.1f} s")
  print(f"  whole file, then windows    peak RSS {whole[0]:7.0f} MB   {whole[1]:6.1f} s")
  print(f"  streaming / whole file: memory x{streamed[0] / whole[0]:.2f}, "
        f"time x{streamed[1] / whole[1]:.2f}")


if __name__ == "__main__":
  main()
