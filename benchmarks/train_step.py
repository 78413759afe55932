"""Training-step throughput of AVE-Net (or any config) on this machine's devices.

  python benchmarks/train_step.py [--model avenet] [--batch 16] [--steps 5] [--tiny]

Times the jitted, donated update that the trainer runs (paper scale: 224 px
frames, 257x199 spectrograms) on synthetic batches, after compilation, for both
settings of config.model.conv: "xla" (XLA's kernels, the default) and
"cpu_kernels" (the opt-in avjax_cpu package; avjax_cpu/benchmarks/conv_layers.py
times its kernels layer by layer). In the same process it times, as
references: the forward pass alone (evaluation), the update with bfloat16
compute, and, for AVE-Net when `torch` is importable (the `bench` extra), a
PyTorch AVE-Net of the same shapes (benchmarks/torch_avenet.py) in NCHW and
channels_last layouts, then the cpu_kernels update and PyTorch channels_last
again in alternating rounds (--rounds), since a shared VM's speed drifts
between minutes. It prints each one's ratio to the xla float32 update, the
update's FLOPs per example (XLA's cost analysis of the xla update: it cannot see
inside custom calls) and each one's achieved FLOP/s, and on an accelerator of
known peak the model FLOPs utilisation against its bfloat16 and float32 peaks.

On a CPU, avjax_cpu's process settings (avjax_cpu/process.py) are made first,
as the trainer makes them when cpu_kernels is chosen; --process_defaults leaves
JAX's and glibc's defaults for every row.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import jax
import numpy as np

from avjax import mesh as mesh_lib
from avjax import input as input_lib
from avjax import predict, step_inputs, train

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
# Every experiment config (configs/<name>.py), e.g. avenet, sync, odd_one_out.
CONFIGS = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                 if f.endswith(".py") and f not in ("__init__.py", "common.py"))


def synthetic_batch(config, batch: int, sharding) -> dict:
  """What the reader ships (uint8 crops, |STFT| windows and their augmentation
  draws, turned into model inputs in the step: avjax/step_inputs.py), random."""
  return {k: jax.device_put(v, sharding)
          for k, v in input_lib.plausible_train_batch(config, batch).items()}


def time_fn(fn, steps: int) -> float:
  fn()  # compile
  jax.block_until_ready(fn())
  t = time.perf_counter()
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / steps


# Dense peak TFLOP/s (bfloat16, float32) by device kind, from the vendors' data
# sheets (float32: without TF32 tensor cores). Unknown kinds print no MFU.
PEAK_TFLOPS = {
    "NVIDIA H200": (989.0, 67.0), "NVIDIA H100 80GB HBM3": (989.0, 67.0),
    "NVIDIA H100 PCIe": (756.0, 51.0), "NVIDIA A100-SXM4-80GB": (312.0, 19.5),
    "NVIDIA A100-SXM4-40GB": (312.0, 19.5), "NVIDIA L4": (121.0, 30.3),
    "TPU v4": (275.0, None), "TPU v5 lite": (197.0, None), "TPU v5p": (459.0, None),
    "TPU v6 lite": (918.0, None),
}


def peak_tflops(device) -> tuple[float | None, float | None]:
  """(bfloat16, float32) dense peak of one device, by its kind; (None, None) if unknown."""
  kind = getattr(device, "device_kind", "")
  for name, peaks in PEAK_TFLOPS.items():
    if kind.startswith(name):
      return peaks
  return None, None


def update_step(config, batch, mesh):
  """(a function that runs the library's jitted update on a synthetic batch,
  that jitted update, the initial state, the batch)."""
  fns = train.make_train_functions(config, mesh)
  state = [fns.init(jax.random.PRNGKey(0))]
  data = synthetic_batch(config, batch, mesh_lib.batch_sharding(mesh))

  def step():
    state[0], metrics = fns.update(state[0], data)
    return metrics["loss"]

  return step, fns.update, state[0], data


def torch_reference(config):
  """(benchmarks/torch_avenet.py, frame crop, spectrogram [bins, frames]) for
  the PyTorch AVE-Net of this config's shapes; None without torch."""
  try:
    import torch  # noqa: F401
  except ImportError:
    return None
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch_avenet
  frames, spectrogram = predict.dummy_inputs(config.data, 1)
  return torch_avenet, frames.shape[1], tuple(spectrogram.shape[1:3])


def head_to_head(config, batch, steps, mesh, rounds: int) -> list[tuple[float, float]]:
  """(avjax, PyTorch channels_last) seconds per update in `rounds` alternating
  rounds of `steps` updates each: this VM's speed drifts by up to 30% between
  minutes, which a ratio of rows timed minutes apart takes for a difference."""
  torch_avenet, crop, spec_shape = torch_reference(config)
  ours = update_step(config, batch, mesh)[0]
  jax.block_until_ready(ours())
  theirs = torch_avenet.make_update(batch, crop, spec_shape, channels_last=True,
                                    threads=os.cpu_count())
  return [(time_fn(ours, steps), torch_avenet.time_steps(theirs, steps)) for _ in range(rounds)]


def with_conv(config, conv: str, dtype: str = "float32"):
  config = config.copy_and_resolve_references()
  config.model.conv, config.model.dtype = conv, dtype
  return config


def bench_update(config, batch, steps, mesh, *, count_flops: bool = False):
  """(seconds per update, FLOPs per update from XLA's cost analysis where
  `count_flops`, else None). main counts the xla update's only: XLA's analysis
  cannot see inside avjax_cpu's custom calls, and the arithmetic is the same
  whichever kernels run."""
  step, update, state, data = update_step(config, batch, mesh)
  flops = update_flops(update, state, data) if count_flops else None  # before donation
  return time_fn(step, steps), flops


def update_flops(update, state, data) -> float | None:
  """The compiled update's FLOPs (all devices), from XLA's cost analysis."""
  analysis = update.lower(state, data).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per device program
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def bench_torch(config, batch, steps) -> list[tuple[str, float]]:
  """The PyTorch AVE-Net's seconds per update, NCHW and channels_last; [] without torch."""
  reference = torch_reference(config)
  if reference is None:
    print("  (torch not importable: pip install -e '.[bench]' adds the PyTorch reference)")
    return []
  torch_avenet, crop, spec_shape = reference
  return [(f"PyTorch {torch_avenet.torch.__version__}, {name}",
           torch_avenet.time_update(batch, crop, spec_shape, steps, channels_last=cl,
                                    threads=os.cpu_count()))
          for name, cl in (("NCHW", False), ("channels_last", True))]


def bench_forward(config, batch, steps, mesh) -> float:
  fns = train.make_train_functions(config, mesh)
  state = fns.init(jax.random.PRNGKey(0))
  data = synthetic_batch(config, batch, mesh_lib.batch_sharding(mesh))
  fn = fns.model_fns
  audio = jax.jit(step_inputs.model_inputs, static_argnums=1)(
      data, input_lib.spectrogram_spec(config.data))[fn.audio_input]
  apply = jax.jit(fn.predict)  # every output the evaluators read; it converts the uint8 frames
  return time_fn(lambda: apply(train.variables_of(state), data[fn.frame_input], audio), steps)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", choices=CONFIGS, default="avenet")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--tiny", action="store_true", help="the CPU-sized config instead")
  p.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
  p.add_argument("--no_cpu_kernels", action="store_true",
                 help="time config.model.conv='xla' only (no avjax_cpu, no C++ compiler)")
  p.add_argument("--rounds", type=int, default=3,
                 help="alternating cpu_kernels / PyTorch channels_last rounds (0: none)")
  p.add_argument("--process_defaults", action="store_true",
                 help="skip avjax_cpu.process.configure (JAX's async CPU dispatch, glibc's "
                      "malloc defaults), as a reference run")
  args = p.parse_args()
  settings = {}
  if not (args.process_defaults or args.no_cpu_kernels):
    from avjax_cpu import process
    settings = process.configure()  # before JAX creates its backends, as the trainer does
  config = importlib.import_module(f"configs.{args.model}").get_config(
      "tiny" if args.tiny else None)
  mesh = mesh_lib.make_mesh(config)
  spec = config.data
  device = jax.devices()[0]
  print(f"{args.model} ({'tiny' if args.tiny else 'paper'} scale): frames {spec.crop}px, "
        f"batch {args.batch}, {jax.device_count()} x {device.platform} ({device.device_kind}); "
        "process settings: " + (", ".join(k for k, on in settings.items() if on) or "defaults"))
  xla = with_conv(config, "xla")
  base, flops = bench_update(xla, args.batch, args.steps, mesh, count_flops=True)
  rows = [("xla, float32", base)]
  rows.append(("xla, forward only (eval)", bench_forward(xla, args.batch, args.steps, mesh)))
  rows.append(("xla, bfloat16", bench_update(with_conv(config, "xla", "bfloat16"), args.batch,
                                             args.steps, mesh)[0]))
  kernels = None
  if not args.no_cpu_kernels:
    kernels = with_conv(config, "cpu_kernels")
    rows.append(("cpu_kernels, float32", bench_update(kernels, args.batch, args.steps, mesh)[0]))
    rows.append(("cpu_kernels, bfloat16",
                 bench_update(with_conv(config, "cpu_kernels", "bfloat16"), args.batch,
                              args.steps, mesh)[0]))
  if args.model == "avenet" and not args.no_torch and device.platform == "cpu":
    rows += bench_torch(config, args.batch, args.steps)
  per_example = flops / args.batch if flops else None
  if per_example:
    print(f"  update: {per_example / 1e9:.1f} GFLOP per example (XLA cost analysis)")
  for name, sec in rows:
    achieved = (f"  {per_example * args.batch / sec / 1e9:7.1f} GFLOP/s"
                if per_example and "(eval)" not in name else "")
    print(f"  {name:42s} {sec * 1e3:9.1f} ms/step  {args.batch / sec:8.1f} examples/s  "
          f"x{base / sec:.2f} the xla float32 update's speed{achieved}")
  timed = dict(rows)
  for name, sec in rows:
    if name.startswith("PyTorch"):
      for ours in ("xla, float32", "cpu_kernels, float32"):
        if ours in timed:
          print(f"  {ours} update vs {name}: x{sec / timed[ours]:.2f} (>1: avjax faster)")
  if kernels is not None and any(n.startswith("PyTorch") for n, _ in rows) and args.rounds:
    pairs = head_to_head(kernels, args.batch, args.steps, mesh, args.rounds)
    ratios = [t / a for a, t in pairs]
    print(f"  head to head, {args.rounds} alternating rounds of {args.steps} updates: "
          "cpu_kernels " + " / ".join(f"{a * 1e3:.0f}" for a, _ in pairs)
          + " ms, PyTorch channels_last " + " / ".join(f"{t * 1e3:.0f}" for _, t in pairs)
          + " ms; cpu_kernels x" + " / ".join(f"{r:.2f}" for r in ratios)
          + f" as fast (median x{np.median(ratios):.2f})")
  bf16_peak, f32_peak = peak_tflops(device)
  if flops and (bf16_peak or f32_peak):
    n = jax.device_count()
    for name, peak in (("float32", f32_peak), ("bfloat16", bf16_peak)):
      sec = timed[f"xla, {name}"]
      if peak:
        print(f"  MFU, xla {name} update: {flops / sec / (peak * 1e12 * n):.1%} of {n} x "
              f"{peak:g} TFLOP/s {name} peak")


if __name__ == "__main__":
  main()
