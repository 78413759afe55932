"""Compile time, step time, MFU and peak memory of paper-scale updates on this
machine's first device.

  python benchmarks/device_step.py --configs avenet=256,sync=24 [--dtype bfloat16] [--remat]

For each `name=batch` it builds the paper config (configs/<name>.py: any of them,
the nine audio-visual methods and the pretext baselines), lowers and
compiles the trainer's jitted, donated update for that per-device batch on one
device, and runs it on a random batch of the shapes and dtypes the reader ships
(avjax.input.plausible_train_batch): no data is read, so the figure is the chip's,
not the host's (benchmarks/accelerator_plan.py --parts reader measures the
reader). It prints, per config:
- compile seconds (lower + compile);
- seconds per update and examples per second, over --steps updates after two
  warm-up updates;
- the update's FLOPs per example (XLA's cost analysis of the compiled update),
  the achieved FLOP/s and the MFU against the device's dense bfloat16 peak
  (benchmarks/train_step.py's table; none for an unknown device);
- the device's peak memory in use (memory_stats; none where the backend keeps
  none, as a CPU) beside the compiled program's own memory analysis.
On a CPU it runs too (slowly at paper scale: use --tiny to check the script).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from avjax import input as input_lib  # noqa: E402
from avjax import mesh as mesh_lib  # noqa: E402
from avjax import train  # noqa: E402
from benchmarks import accelerator_plan  # noqa: E402
from benchmarks import train_step  # noqa: E402


def measure(name: str, batch: int, *, dtype: str, remat: bool, steps: int, tiny: bool) -> dict:
  config = accelerator_plan.paper_config(name, dtype, remat, "tiny" if tiny else None)
  mesh = mesh_lib.make_mesh(config)
  fns = train.make_train_functions(config, mesh)
  shapes = input_lib.train_batch_shapes(config, batch)
  t = time.perf_counter()
  compiled = fns.update.lower(fns.shapes, shapes).compile()
  compile_s = time.perf_counter() - t
  sharding = mesh_lib.batch_sharding(mesh)
  data = jax.tree.map(lambda x: jax.device_put(x, sharding),
                      input_lib.plausible_train_batch(config, batch))
  state = fns.init(jax.random.PRNGKey(0))
  for _ in range(2):
    state, metrics = compiled(state, data)
  jax.block_until_ready(metrics["loss"])
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, data)
  loss = float(jax.block_until_ready(metrics["loss"]))
  step_s = (time.perf_counter() - t) / steps
  flops = accelerator_plan.flops(compiled)
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  return {"name": name, "batch": batch, "compile_s": compile_s, "step_s": step_s,
          "flops": flops, "loss": loss, "peak_bytes": stats.get("peak_bytes_in_use"),
          "program_bytes": accelerator_plan.program_bytes(compiled),
          "peak_bf16": train_step.peak_tflops(device)[0]}


def format_row(m: dict) -> str:
  per_s = m["batch"] / m["step_s"]
  achieved = m["flops"] / m["step_s"]
  mfu = f"{achieved / (m['peak_bf16'] * 1e12):.1%}" if m["peak_bf16"] else "-"
  peak = f"{m['peak_bytes'] / 2**30:.1f}" if m["peak_bytes"] else "-"
  return (f"| {m['name']} | {m['batch']} | {m['compile_s']:.1f} | {m['step_s'] * 1e3:.1f} | "
          f"{per_s:.1f} | {m['flops'] / m['batch'] / 1e9:.1f} | {achieved / 1e12:.2f} | {mfu} | "
          f"{peak} | {m['program_bytes'] / 2**30:.1f} | {m['loss']:.3f} |")


def config_names() -> list[str]:
  """Every experiment config in configs/ (not the shared defaults, not the sweeps)."""
  import pkgutil
  import configs
  return sorted(m.name for m in pkgutil.iter_modules(configs.__path__)
                if not m.ispkg and m.name != "common")


def parse_configs(text: str) -> list[tuple[str, int]]:
  out, known = [], config_names()
  for item in text.split(","):
    name, _, batch = item.partition("=")
    if name not in known or not batch.isdigit() or int(batch) < 1:
      raise SystemExit(f"device_step: --configs item {item!r}: expected NAME=BATCH with NAME in "
                       f"{', '.join(known)}")
    out.append((name, int(batch)))
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--configs", default="avenet=256,sync=24",
                 help="NAME=per-device batch, comma separated")
  p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
  p.add_argument("--remat", action="store_true", help="config.model.remat (not soundnet)")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--tiny", action="store_true", help="the :tiny configs (a check of the script)")
  args = p.parse_args()
  device = jax.devices()[0]
  print(f"jax {jax.__version__} on {device.device_kind} ({device.platform}); {args.dtype}"
        f"{', remat' if args.remat else ''}; {args.steps} timed updates after 2 warm-up ones\n")
  head = ["config", "batch", "compile s", "ms/update", "examples/s", "GFLOP/example",
          "TFLOP/s", "MFU (bf16 peak)", "peak GiB in use", "program GiB (XLA)", "loss"]
  print("| " + " | ".join(head) + " |")
  print("|" + "---|" * len(head))
  for name, batch in parse_configs(args.configs):
    remat = args.remat and name != "soundnet"
    print(format_row(measure(name, batch, dtype=args.dtype, remat=remat, steps=args.steps,
                             tiny=args.tiny)), flush=True)


if __name__ == "__main__":
  main()
