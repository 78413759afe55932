"""Training-step throughput of AVE-Net (and friends) on this machine's devices.

  python benchmarks/train_step.py [--model avenet] [--batch 16] [--steps 5] [--tiny]

Times the jitted, donated update that the trainer runs (paper scale: 224 px
frames, 257x199 spectrograms) on synthetic batches, after compilation. In the
same process it times, as references: the forward pass alone (evaluation) and
the update with bfloat16 compute, and prints each ratio to the float32 update.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from avjax import mesh as mesh_lib
from avjax import predict, train
from configs import avenet, avolnet, l3

CONFIGS = {"avenet": avenet, "avolnet": avolnet, "l3": l3}


def synthetic_batch(config, batch: int, sharding) -> dict:
  frames, spectrogram = predict.dummy_inputs(config.data, batch)
  r = np.random.default_rng(0)
  # What the reader ships: uint8 crops and their augmentation draws (applied in the step).
  out = {"frames": r.integers(0, 256, frames.shape, dtype=np.uint8),
         "aug_flip": r.uniform(size=batch) < 0.5,
         "aug_brightness": r.uniform(-0.15, 0.15, batch).astype(np.float32),
         "aug_contrast": r.uniform(0.7, 1.3, batch).astype(np.float32),
         "aug_saturation": r.uniform(0.7, 1.3, batch).astype(np.float32),
         "spectrogram": r.normal(size=spectrogram.shape).astype(np.float32),
         "label": (np.arange(batch) % 2).astype(np.int32)}
  return {k: jax.device_put(v, sharding) for k, v in out.items()}


def time_fn(fn, steps: int) -> float:
  fn()  # compile
  jax.block_until_ready(fn())
  t = time.perf_counter()
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / steps


def bench_update(config, batch, steps, mesh) -> float:
  fns = train.make_train_functions(config, mesh)
  state = [fns.init(jax.random.PRNGKey(0))]
  data = synthetic_batch(config, batch, mesh_lib.batch_sharding(mesh))

  def step():
    state[0], metrics = fns.update(state[0], data)
    return metrics["loss"]

  return time_fn(step, steps)


def bench_forward(config, batch, steps, mesh) -> float:
  fns = train.make_train_functions(config, mesh)
  state = fns.init(jax.random.PRNGKey(0))
  data = synthetic_batch(config, batch, mesh_lib.batch_sharding(mesh))
  apply = jax.jit(lambda v, f, s: fns.model_fns.predict(v, f, s)["logits"])
  return time_fn(lambda: apply(train.variables_of(state), data["frames"], data["spectrogram"]),
                 steps)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", choices=sorted(CONFIGS), default="avenet")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--tiny", action="store_true", help="the CPU-sized config instead")
  args = p.parse_args()
  config = CONFIGS[args.model].get_config("tiny" if args.tiny else None)
  mesh = mesh_lib.make_mesh(config)
  spec = config.data
  print(f"{args.model} ({'tiny' if args.tiny else 'paper'} scale): frames {spec.crop}px, "
        f"batch {args.batch}, {jax.device_count()} x {jax.devices()[0].platform}")
  base = bench_update(config, args.batch, args.steps, mesh)
  rows = [("train step, float32", base)]
  rows.append(("forward only (eval)", bench_forward(config, args.batch, args.steps, mesh)))
  bf16 = config.copy_and_resolve_references()
  bf16.model.dtype = "bfloat16"
  rows.append(("train step, bfloat16 compute", bench_update(bf16, args.batch, args.steps, mesh)))
  for name, sec in rows:
    print(f"  {name:30s} {sec * 1e3:9.1f} ms/step  {args.batch / sec:8.1f} examples/s  "
          f"x{base / sec:.2f} vs float32 train step")


if __name__ == "__main__":
  main()
