"""Memory and speed of `avjax-prepare` on one long video, for 1 worker and all cores.

  python benchmarks/prepare.py [--minutes 10] [--height 720] [--video PATH]
                               [--reference]

Generates (once, into --cache, never committed) a long H.264 720p video at
25 fps with stereo 44.1 kHz AAC sound, then prepares it at the paper's settings
(25 fps frames at a 256-pixel short side, 48 kHz mono, 10 s clips with stored
|STFT|) with the avjax-prepare command in a fresh process: with --workers 1,
and with --workers = every core (the long file then goes to the workers as
60-second time ranges), and with one worker on one thread (--threads 1, what
each of the N workers gets: against it, N workers show the range split's own
scaling). Prints, for each, the peak RSS of the whole job (all its processes
together, sampled every 500 ms) and of its largest process, the wall time, and
the real-time factor per worker (seconds of video prepared per second of wall
time, per worker). With --reference, it also runs the whole-file decode
that prepare used before it streamed (tests/whole_decode.py) in one process.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WHOLE_FILE = """
import sys
from data_pipelines import ingest
from tests import whole_decode
root, name = sys.argv[1], sys.argv[2]
records = whole_decode.whole_file_records(root, name, ingest.PrepareSettings())
print(len(records))
"""


def write_video(path: str, minutes: float, height: int, fps: int = 25, rate: int = 44100) -> None:
  """A drifting textured picture with moving blocks (so the encoder has real
  motion to code) and a stereo tone-plus-noise track, encoded as it is made."""
  import av
  width = height * 16 // 9 // 2 * 2
  rng = np.random.default_rng(0)
  texture = rng.integers(0, 255, (height // 8, (width + 4 * fps * 60) // 8, 3), np.uint8)
  texture = np.repeat(np.repeat(texture, 8, 0), 8, 1)
  n_frames = int(minutes * 60 * fps)
  tmp = path + ".tmp.mp4"
  with av.open(tmp, "w") as c:
    vs = c.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.options = {"preset": "ultrafast", "crf": "23", "g": "250"}
    aus = c.add_stream("aac", rate=rate)
    aus.layout = "stereo"
    samples_per_frame = rate // fps
    for i in range(n_frames):
      x = (4 * i) % (texture.shape[1] - width)
      image = texture[:, x:x + width].copy()
      y0 = (7 * i) % (height - 64)
      image[y0:y0 + 64, (5 * i) % (width - 64):(5 * i) % (width - 64) + 64] = (i * 3) % 255
      c.mux(vs.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
      t = (np.arange(samples_per_frame) + i * samples_per_frame) / rate
      tone = 0.2 * np.sin(2 * np.pi * (300 + 100 * ((i // fps) % 5)) * t)
      wave = np.stack([tone, tone]) + 0.02 * rng.standard_normal((2, samples_per_frame))
      frame = av.AudioFrame.from_ndarray(wave.astype(np.float32), format="fltp", layout="stereo")
      frame.sample_rate = rate
      c.mux(aus.encode(frame))
    c.mux(vs.encode())
    c.mux(aus.encode(None))
  os.replace(tmp, path)


def _pss_mb(pid: int) -> float:
  """Proportional set size: shared pages (TensorFlow's libraries, mapped by
  every worker) divided among the processes sharing them, so a sum over
  processes counts each page once."""
  try:
    with open(f"/proc/{pid}/smaps_rollup") as f:
      return next((int(l.split()[1]) for l in f if l.startswith("Pss:")), 0) / 1024
  except OSError:
    return 0.0


def _tree_rss_mb(root_pid: int) -> dict[int, float]:
  """VmRSS in MB of `root_pid` and all its descendants."""
  children: dict[int, list[int]] = {}
  rss: dict[int, float] = {}
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
      with open(f"/proc/{name}/status") as f:
        kb = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
    except (OSError, ValueError, IndexError):
      continue
    children.setdefault(ppid, []).append(int(name))
    rss[int(name)] = kb / 1024
  out, todo = {}, [root_pid]
  while todo:
    pid = todo.pop()
    out[pid] = rss.get(pid, 0.0)
    todo += children.get(pid, [])
  return out


def measure(args: list[str]) -> dict:
  """Runs `python ARGS`, sampling its process tree -> peak RSS (sum, largest) and wall."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  t = time.perf_counter()
  proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  peak = {"sum": 0.0, "largest": 0.0}

  def sample():
    while proc.poll() is None:
      tree = _tree_rss_mb(proc.pid)
      peak["sum"] = max(peak["sum"], sum(_pss_mb(pid) for pid in tree))
      peak["largest"] = max(peak["largest"], max(tree.values(), default=0.0))
      time.sleep(0.5)  # a sample costs ~10-40 ms of a core

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  out, err = proc.communicate()
  wall = time.perf_counter() - t
  sampler.join()
  if proc.returncode != 0:
    raise SystemExit(f"{args[:3]} failed: {err.decode()[-2000:]}")
  return {"sum_mb": peak["sum"], "largest_mb": peak["largest"], "wall_s": wall,
          "stdout": out.decode()}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--minutes", type=float, default=10.0)
  p.add_argument("--height", type=int, default=720)
  p.add_argument("--video", help="prepare this file instead of generating one")
  p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "avjax-bench"),
                 help="where the generated video is kept between runs")
  p.add_argument("--workers", type=int, default=os.cpu_count())
  p.add_argument("--repeats", type=int, default=1,
                 help="runs of each worker count, alternating; the ratio uses each one's fastest")
  p.add_argument("--reference", action="store_true",
                 help="also run the whole-file decode prepare used before it streamed")
  args = p.parse_args()
  video = args.video
  if not video:
    os.makedirs(args.cache, exist_ok=True)
    video = os.path.join(args.cache, f"long_{args.minutes:g}min_{args.height}p.mp4")
    if not os.path.exists(video):
      t = time.perf_counter()
      write_video(video, args.minutes, args.height)
      print(f"generated {video} in {time.perf_counter() - t:.0f} s")
  import av
  with av.open(video) as c:
    seconds = c.duration / 1e6
    v = c.streams.video[0]
    desc = (f"{seconds / 60:.1f} min, {v.codec_context.width}x{v.codec_context.height} "
            f"{v.codec_context.name}, {c.streams.audio[0].rate} Hz audio, "
            f"{os.path.getsize(video) / 1e6:.0f} MB")
  print(f"preparing {os.path.basename(video)} ({desc}) at the paper settings on "
        f"{os.cpu_count()} cores:")
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "in")
    os.makedirs(src)
    os.symlink(os.path.abspath(video), os.path.join(src, os.path.basename(video)))
    # (workers, threads per worker): one worker with FFmpeg's threads on every
    # core (the default), one on a single thread (what each of N workers gets,
    # so their ratio is the time-range split's own scaling), and N workers.
    runs = [(1, None)] + ([(1, 1), (args.workers, None)] if args.workers > 1 else [])
    for repeat in range(args.repeats):
      for workers, threads in runs:
        out = os.path.join(tmp, f"out{workers}")
        r = measure(["-m", "avjax.prepare", f"--input={src}", f"--output={out}",
                     f"--workers={workers}"] + ([f"--threads={threads}"] if threads else []))
        with open(os.path.join(out, "manifest.json")) as f:
          r["clips"] = json.load(f)["num_clips"]
        if (workers, threads) not in results or r["wall_s"] < results[workers, threads]["wall_s"]:
          results[workers, threads] = r
        label = f"--workers {workers}" + (f" --threads {threads}" if threads else "")
        print(f"  {label:24s}: {r['clips']} clips, peak memory of the job (PSS) "
              f"{r['sum_mb']:6.0f} MB, largest process RSS {r['largest_mb']:5.0f} MB, "
              f"{r['wall_s']:6.1f} s, real-time factor per worker "
              f"{seconds / r['wall_s'] / workers:5.1f}x", flush=True)
        shutil.rmtree(out)
    if args.workers > 1:
      all_ = results[args.workers, None]
      for key, what in (((1, 1), "1 single-threaded worker"), ((1, None), "1 worker on every core")):
        print(f"  {args.workers} workers against {what} (fastest of {args.repeats} each): "
              f"x{results[key]['wall_s'] / all_['wall_s']:.2f} faster, "
              f"job memory x{all_['sum_mb'] / results[key]['sum_mb']:.2f}")
    if args.reference:
      r = measure(["-c", WHOLE_FILE, src, os.path.basename(video)])
      print(f"  reference, whole-file decode (1 process): {r['stdout'].strip()} clips, peak RSS "
            f"{r['largest_mb']:6.0f} MB, {r['wall_s']:6.1f} s; streaming's largest process "
            f"uses x{results[1, None]['largest_mb'] / r['largest_mb']:.3f} of its memory")


if __name__ == "__main__":
  main()
