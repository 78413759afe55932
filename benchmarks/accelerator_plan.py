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
  bfloat16 with remat.
A row whose bfloat16 (with remat where needed) cannot hold a per-device batch of
32 on a v5e chip is marked.

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
import importlib
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from avjax import input as input_lib  # noqa: E402
from avjax import mesh as mesh_lib  # noqa: E402
from avjax import train  # noqa: E402

CONFIGS = ("l3", "avenet", "avolnet", "avcontrastive", "selavi", "ambient", "soundnet", "sync",
           "cosine")
CHIPS = {"v5e": 16e9, "v4": 32e9, "v5p": 95e9, "H100": 80e9}
USABLE = 0.9  # of HBM: the runtime, its allocator and the input pipeline take the rest
WANTED_BATCH = 32  # per device, on the smallest chip
SETTINGS = (("float32", False), ("bfloat16", False), ("bfloat16", True))


def paper_config(name: str, dtype: str, remat: bool):
  config = importlib.import_module(f"configs.{name}").get_config()
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
  args = p.parse_args()
  batches = tuple(int(b) for b in args.batches.split(","))
  if len(batches) != 2 or batches[0] >= batches[1]:
    p.error(f"--batches={args.batches}: two increasing sizes")
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; memory = XLA:CPU's buffer "
        f"assignment of the paper-scale update; batches fit in {USABLE:.0%} of HBM\n")
  head = ["config", "params", "GFLOP/example", "MiB/example (f32)"]
  head += [f"max batch {chip} (f32 / bf16 / bf16+remat)" for chip in CHIPS] + ["note"]
  print("| " + " | ".join(head) + " |")
  print("|" + "---|" * len(head))
  for name in args.configs.split(","):
    t = time.time()
    row = measure(name, batches)
    print(format_row(row) + f"  <!-- {time.time() - t:.0f} s -->", flush=True)


if __name__ == "__main__":
  main()
