"""What each paper-scale config asks of an accelerator, measured from a CPU host.

  python benchmarks/accelerator_plan.py [--configs avenet,sync] [--batches 2,4]

For every paper config it compiles the training update (XLA:CPU, the program
a chip would run up to its backend) at two per-device batch sizes, in float32
and bfloat16, with and without rematerialisation (config.model.remat), and
prints one row per config:
- parameters;
- update GFLOPs per example, from XLA's cost analysis of the compiled update;
- memory: the compiled program's arguments + outputs - aliased (the donated
  state) + temporaries, its fixed part and its slope per example over the two
  batch sizes;
- the largest per-device batch whose memory fits 90% of each chip's HBM
  (TPU v5e 16 GB, v4 32 GB, v5p 95 GB, H100 80 GB), for float32, bfloat16 and
  bfloat16 with remat;
- the training reader's examples per second per host core, for the config's
  own inputs (frame stacks, waveforms, |STFT| windows, sound targets' clips) at
  the paper's settings, on a generated split prepared at them (10 s clips, or
  long enough for the config's window and shifts);
- the host cores each chip needs to feed the update at 50% MFU: the chip's
  published dense bfloat16 peak x 0.5 / update FLOPs per example / the reader's
  rate per core, beside the cores a typical host gives each chip.
A row whose bfloat16 (with remat where needed) cannot hold a per-device batch of
32 on a v5e chip, or that an H100's share of a DGX host (14 cores) cannot feed,
is marked.

Generated frames are smoother than camera footage and decode faster. The
reader's rate is measured on them, and again with each decoded frame costing what
a natural-statistics (1/f noise) frame of the same size and JPEG quality costs,
measured in the same run: the second figure sets the cores needed.

Memory is XLA:CPU's buffer assignment of that program: an estimate of a
device's, whose compiler fuses and schedules differently; only a run on the
device measures the real one. Compiles run at LLVM level 0: buffer assignment
is XLA's and does not depend on it; only code generation, which is not run
here, would. XLA:CPU has no bfloat16 convolution: it converts around float32
ones, so its bfloat16 columns overstate what a TPU or GPU, which compute in
bfloat16, would hold: read them as a floor on the batch that fits.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from avjax import input as input_lib  # noqa: E402
from avjax import mesh as mesh_lib  # noqa: E402
from avjax import train  # noqa: E402
from benchmarks import pipeline  # noqa: E402

CONFIGS = ("l3", "avenet", "avolnet", "avcontrastive", "selavi", "ambient", "soundnet", "sync",
           "cosine")
CHIPS = {"v5e": 16e9, "v4": 32e9, "v5p": 95e9, "H100": 80e9}
USABLE = 0.9  # of HBM: the runtime, its allocator and the input pipeline take the rest
WANTED_BATCH = 32  # per device, on the smallest chip
SETTINGS = (("float32", False), ("bfloat16", False), ("bfloat16", True))
# Published dense bfloat16 peaks, FLOP/s, and the physical host cores per chip of
# a typical host (docs/performance.md names the machine types).
PEAK_BF16 = {"v5e": 197e12, "v4": 275e12, "v5p": 459e12, "H100": 989e12}
HOST_CORES = {"v5e": 14, "v4": 30, "v5p": 26, "H100": 14}
MFU = 0.5
READER_CLIPS = 16


def paper_config(name: str, dtype: str, remat: bool, arg: str | None = None):
  """configs/<name>.py's config (`arg`: e.g. "tiny"), with some classes for the
  labelled baselines, `dtype` and `remat`."""
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  if config.model.get("classifier_classes") == 0:  # the labelled baselines: some classes
    config.model.classifier_classes = config.data.num_classes = 10
  config.model.dtype, config.model.remat = dtype, remat
  return config


def compiled_update(config, batch: int):
  fns = train.make_train_functions(config, mesh_lib.make_mesh(config))
  lowered = fns.update.lower(fns.shapes, input_lib.train_batch_shapes(config, batch))
  return fns, lowered.compile(compiler_options={"xla_backend_optimization_level": 0})


def program_bytes(compiled) -> int:
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)


def flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def largest_batch(fixed: float, slope: float, hbm: float) -> int:
  return max(0, math.floor((USABLE * hbm - fixed) / slope)) if slope > 0 else 0


def measure(name: str, batches: tuple[int, int]) -> dict:
  row = {"name": name}
  for dtype, remat in SETTINGS:
    config = paper_config(name, dtype, remat)
    sizes = []
    for b in batches:
      try:
        fns, compiled = compiled_update(config, b)
      except ValueError as e:  # a model without remat
        row[(dtype, remat)] = str(e)
        break
      sizes.append(program_bytes(compiled))
      if (dtype, remat) == ("float32", False) and b == batches[-1]:
        row["params"] = sum(x.size for x in jax.tree.leaves(fns.shapes.params))
        row["gflops"] = flops(compiled) / b / 1e9
    else:
      slope = (sizes[1] - sizes[0]) / (batches[1] - batches[0])
      row[(dtype, remat)] = (sizes[0] - slope * batches[0], slope)
  return row


def reader_split(config):
  """A generated split whose clips hold the config's window and its shifts."""
  from data_pipelines import synthetic
  seconds = float(input_lib.prepare_settings(config.data).clip_seconds)
  return synthetic.SplitSpec(f"plan_{seconds:g}s", READER_CLIPS, seed=7, seconds=seconds,
                             files_per_shard=4)


def frames_per_example(config) -> float:
  """Frames decoded per training example: a clip's frame and stack, shared by its
  two examples with config.data.both_examples."""
  shapes = input_lib.train_batch_shapes(config, 1)
  per_clip = int("frames" in shapes) + int(config.data.frame_stack)
  return per_clip / (2 if config.data.both_examples else 1)


def natural_jpegs(shape, quality: int, n: int = 16) -> list[bytes]:
  """JPEGs of 1/f-noise colour images (natural images' power spectrum) at a
  stored frame's size: what a camera frame costs to decode."""
  from data_pipelines import ingest
  rng = np.random.default_rng(0)
  h, w = shape
  f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
  f[0, 0] = 1.0
  out = []
  for _ in range(n):
    img = np.stack([np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(h, w))) / f))
                    for _ in range(3)], -1)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    out.append(ingest.encode_jpeg(img.astype(np.uint8), quality))
  return out


def decode_cost(jpegs: list[bytes], spec, per_element: int = 25) -> float:
  """Seconds per frame of the reader's decode + crop, on one tf.data thread; frames
  timed `per_element` to an element, so that the iterator's own cost per element
  (tens of microseconds) does not swamp the difference between two such costs."""
  import tensorflow as tf
  from data_pipelines import clip_ops
  ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat().map(
      lambda j: clip_ops.decode_crop(j, tf.constant([1, 2], tf.int64), spec=spec, train=True))
  return pipeline.one_thread_cost(ds.batch(per_element), 32) / per_element


def extra_decode_cost(stored: list[bytes], natural: list[bytes], spec, repeats: int = 7) -> float:
  """Seconds more per frame that natural frames take to decode than the stored
  ones: the median over `repeats` alternating timings of both, since one pair of
  timings on a shared 2-vCPU host differs by a third from run to run."""
  diffs = [decode_cost(natural, spec) - decode_cost(stored, spec) for _ in range(repeats)]
  return max(0.0, float(np.median(diffs)))


@dataclasses.dataclass(frozen=True)
class ReaderRate:
  per_core: float          # examples/s per core, generated frames
  natural_per_core: float  # the same with natural-statistics frames' decode cost
  cpu_us: float            # CPU per example, generated frames
  frame_bytes: tuple[float, float]  # mean JPEG size: generated, natural


def timed_span(examples_per_clip: int, batch: int, at_least: int) -> tuple[int, int]:
  """(warm-up batches, timed batches) of the training reader. With k > 1 examples
  per record read it reads B + 1 records, then gives their examples in turn
  (reader.train_dataset): reading comes in blocks of (B + 1) k examples. Both
  spans are whole blocks and whole batches, so the timed one reads records as
  often as a long run does (a span inside one block reads none); at least
  `at_least` timed batches."""
  if examples_per_clip == 1:
    return 3, at_least
  block = (batch + 1) * examples_per_clip
  period = math.lcm(block, batch) // batch
  return period, period * math.ceil(at_least / period)


def reader_rate(config, batch: int, batches: int) -> ReaderRate:
  import tensorflow as tf
  from data_pipelines import default_dataset, dmvr
  from data_pipelines import reader as reader_lib
  settings = input_lib.prepare_settings(config.data)
  split = reader_split(config)
  root = default_dataset.ensure(settings, splits=(split,), quiet=True)
  files = reader_lib.resolve_files(root, split.name)
  spec = reader_lib.Reader(files, spec=input_lib.reader_spec(config.data), batch_size=batch,
                           seed=0).spec
  warmup, timed = timed_span(spec.examples_per_clip, batch, batches)
  r = pipeline.rate(reader_lib.train_dataset(files, spec=spec, batch_size=batch, seed=0),
                    timed, batch, warmup=warmup)
  cores = os.cpu_count() or 1
  record = next(iter(tf.data.TFRecordDataset(files[:1])))
  stored = [j.numpy() for j in dmvr.parse(record, default_fps=config.data.fps,
                                          default_sample_rate=config.data.sample_rate)
            ["jpeg_frames"][:16]]
  natural = natural_jpegs(tf.io.extract_jpeg_shape(stored[0]).numpy()[:2], settings.jpeg_quality)
  extra = extra_decode_cost(stored, natural, spec)
  per_core = r.examples_per_s / cores
  natural_per_core = 1.0 / (1.0 / per_core + frames_per_example(config) * extra)
  return ReaderRate(per_core, natural_per_core, r.cpu_us_per_example,
                    (float(np.mean([len(j) for j in stored])),
                     float(np.mean([len(j) for j in natural]))))


def cores_needed(gflops: float, per_core: float, chip: str) -> float:
  """Host cores that feed `chip` at MFU, by the reader's rate per core."""
  return PEAK_BF16[chip] * MFU / (gflops * 1e9) / per_core


def format_reader_row(name: str, gflops: float, r: ReaderRate) -> str:
  cells = [name, f"{gflops:.1f}", f"{r.per_core:.0f} / {r.natural_per_core:.0f}",
           f"{r.cpu_us / 1e3:.1f}", f"{r.frame_bytes[0] / 1e3:.0f} / {r.frame_bytes[1] / 1e3:.0f}"]
  fed = True
  for chip in PEAK_BF16:
    n = cores_needed(gflops, r.natural_per_core, chip)
    cells.append(f"{n:.1f} (host {HOST_CORES[chip]})")
    fed &= chip != "H100" or n <= HOST_CORES[chip]
  cells.append("" if fed else f"**not fed on an H100 with {HOST_CORES['H100']} cores**")
  return "| " + " | ".join(cells) + " |"


def format_row(row: dict) -> str:
  cells = [row["name"], f"{row['params'] / 1e6:.1f} M", f"{row['gflops']:.1f}"]
  f32 = row[("float32", False)]
  cells.append(f"{f32[1] / 2**20:.0f} MiB")
  fits_v5e = False
  for chip, hbm in CHIPS.items():
    per = []
    for setting in SETTINGS:
      value = row.get(setting)
      if isinstance(value, tuple):
        n = largest_batch(*value, hbm)
        per.append(str(n))
        if chip == "v5e" and setting[0] == "bfloat16" and n >= WANTED_BATCH:
          fits_v5e = True
      else:
        per.append("-")
    cells.append(" / ".join(per))
  cells.append("" if fits_v5e else f"**no bf16 batch of {WANTED_BATCH} on v5e**")
  return "| " + " | ".join(cells) + " |"


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--configs", default=",".join(CONFIGS))
  p.add_argument("--batches", default="2,4", help="two per-device batch sizes for the slope")
  p.add_argument("--parts", default="memory,reader", help="memory, reader or both")
  p.add_argument("--reader_batches", type=int, default=12, help="batches timed per reader, at least (in whole blocks of records; timed_span)")
  args = p.parse_args()
  batches = tuple(int(b) for b in args.batches.split(","))
  if len(batches) != 2 or batches[0] >= batches[1]:
    p.error(f"--batches={args.batches}: two increasing sizes")
  parts = set(args.parts.split(","))
  if not parts or parts - {"memory", "reader"}:
    p.error(f"--parts={args.parts}: memory, reader or both")
  names = args.configs.split(",")
  gflops = memory_table(names, batches) if "memory" in parts else {}
  if "reader" in parts:
    reader_table(names, args.reader_batches, gflops)


def memory_table(names, batches) -> dict[str, float]:
  """Prints the memory table; -> each config's update GFLOP per example."""
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; memory = XLA:CPU's buffer "
        f"assignment of the paper-scale update; batches fit in {USABLE:.0%} of HBM\n")
  head = ["config", "params", "GFLOP/example", "MiB/example (f32)"]
  head += [f"max batch {chip} (f32 / bf16 / bf16+remat)" for chip in CHIPS] + ["note"]
  print("| " + " | ".join(head) + " |")
  print("|" + "---|" * len(head))
  gflops = {}
  for name in names:
    t = time.time()
    row = measure(name, batches)
    gflops[name] = row["gflops"]
    print(format_row(row) + f"  <!-- {time.time() - t:.0f} s -->", flush=True)
  return gflops


def update_gflops(config) -> float:
  _, compiled = compiled_update(config, 2)
  return flops(compiled) / 2 / 1e9


def reader_table(names, batches: int, gflops: dict[str, float]) -> None:
  """Prints the reader table; `gflops`: configs' update GFLOP per example already
  measured (the memory table's), the others compiled here."""
  cores = os.cpu_count() or 1
  print(f"\nthe training reader on {cores} cores, generated {READER_CLIPS}-clip splits prepared at "
        f"each config's settings; cores per chip to feed {MFU:.0%} MFU of its dense bf16 peak "
        "(by the natural-frames rate)\n")
  head = ["config", "GFLOP/example", "examples/s per core (generated / natural frames)",
          "CPU ms/example", "KB per JPEG (generated / natural)"]
  head += [f"cores per {chip}" for chip in PEAK_BF16] + ["note"]
  print("| " + " | ".join(head) + " |")
  print("|" + "---|" * len(head))
  for name in names:
    config = paper_config(name, "float32", False)
    per_example = gflops[name] if name in gflops else update_gflops(config)
    rates = {name: reader_row(name, config, per_example, batches)}
    if config.data.both_examples:  # the reference: one example per clip read
      config.data.both_examples = False
      rates["one example per clip"] = reader_row(f"{name}, one example per clip", config,
                                                 per_example, batches)
      print(f"  {name}: both examples per clip / one: "
            f"{rates[name] / rates['one example per clip']:.2f}x examples/s per core "
            "(natural frames)", flush=True)


def reader_row(label: str, config, gflops: float, batches: int) -> float:
  """Prints one reader row; -> its natural-frames examples/s per core."""
  t = time.time()
  batch = 8 if config.data.frame_stack else 32
  rate = reader_rate(config, batch, batches)
  print(format_reader_row(label, gflops, rate) + f"  <!-- {time.time() - t:.0f} s -->",
        flush=True)
  return rate.natural_per_core


if __name__ == "__main__":
  main()
