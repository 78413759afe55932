"""Where the training step's convolution time goes: each AVE-Net convolution,
timed apart, in XLA's kernels and in avjax_cpu's.

  python avjax_cpu/benchmarks/conv_layers.py [--batch 16] [--repeats 3] [--tiny]

For every 3x3 convolution of AVE-Net's two VGG towers at the config's shapes
(paper scale: 224 px frames, 257x199 spectrograms), times the three parts of its
update on this machine's CPU, each jitted alone: the forward convolution, the
input gradient and the filter gradient, by
- XLA's kernels (lax.conv_general_dilated: config.model.conv="xla");
- oneDNN's direct kernels (avjax_cpu/onednn.py), float32, and bfloat16 where the
  CPU computes it natively;
- Winograd's F(2x2, 3x3) (winograd_conv.cc) for the stride-1 layers, as
  config.model.conv="cpu_kernels" computes them in float32;
- PyTorch channels_last (forward + both gradients), when `torch` is importable
  (the `bench` extra).
GFLOP/s are of the direct convolution's arithmetic. The totals give the update's
convolution time by each, and by the route cpu_kernels takes per layer
(avjax_cpu/conv.py's gates).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from avjax import predict
from avjax_cpu import conv as cpu_conv
from avjax_cpu import onednn, process
from configs import avenet

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benchmarks"))
from train_step import time_fn  # noqa: E402

NHWC = ("NHWC", "HWIO", "NHWC")


def conv_shapes(config) -> list[tuple[str, tuple[int, int, int], int, int]]:
  """(name, input [H, W, C], output channels, stride) of each tower's convolutions."""
  frames, spectrogram = predict.dummy_inputs(config.data, 1)
  out = []
  for tower, x, widths in (("vision", frames, config.model.vision_widths),
                           ("audio", spectrogram, config.model.audio_widths)):
    h, w, c = x.shape[1:]
    for i, width in enumerate(widths):
      for j in range(2):
        stride = 2 if (i == 0 and j == 0) else 1
        out.append((f"{tower} block{i} conv{j}", (h, w, c), width, stride))
        h, w, c = -(-h // stride), -(-w // stride), width
      if i < len(widths) - 1:
        h, w = h // 2, w // 2
  return out


def operands(batch: int, hwc, features: int):
  """A convolution's random input [batch, H, W, C] and 3x3 kernel, float32."""
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=(batch, *hwc)).astype(np.float32))
  w = jnp.asarray(r.normal(size=(3, 3, hwc[2], features)).astype(np.float32) * 0.05)
  return x, w


def jitted_parts(conv):
  """conv(x, w)'s forward, input gradient and filter gradient, each jitted alone:
  (fwd(x, w), dx(x, w, g), dw(x, w, g))."""
  return (jax.jit(conv), jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0]),
          jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1]))


def parts(conv, x, w, repeats: int) -> tuple[float, float, float]:
  """Seconds of conv(x, w)'s forward, input gradient and filter gradient, each
  jitted alone."""
  y = jax.eval_shape(conv, x, w)
  g = jnp.ones(y.shape, y.dtype)
  fwd = jax.jit(conv)
  dx = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0])
  dw = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1])
  return (time_fn(lambda: fwd(x, w), repeats), time_fn(lambda: dx(x, w, g), repeats),
          time_fn(lambda: dw(x, w, g), repeats))


def layer_times(batch: int, hwc, features: int, stride: int, repeats: int) -> dict:
  """{kernels: (fwd, dx, dw) seconds} of one layer; a kernel that does not take
  it is absent."""
  x, w = operands(batch, hwc, features)
  strides, pads = (stride, stride), ((1, 1), (1, 1))
  if stride == 2:
    pads = cpu_conv.explicit_pads(x.shape, w.shape, strides, "SAME")
  out = {"xla": parts(lambda x, w: lax.conv_general_dilated(x, w, strides, pads,
                                                            dimension_numbers=NHWC),
                      x, w, repeats)}
  out["direct"] = parts(lambda x, w: cpu_conv.onednn_conv(x, w, strides, pads, False), x, w,
                        repeats)
  if onednn.native_bfloat16():
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    out["direct bf16"] = parts(lambda x, w: cpu_conv.onednn_conv(x, w, strides, pads, False),
                               xb, wb, repeats)
  if cpu_conv.takes_winograd(w.shape, strides, pads, w.dtype):
    out["winograd"] = parts(lambda x, w: cpu_conv.onednn_conv(x, w, strides, pads, True), x, w,
                            repeats)
  torch_sec = time_torch(batch, hwc, features, stride, repeats)
  if torch_sec is not None:
    out["torch"] = (torch_sec, 0.0, 0.0)  # forward + both gradients in one
  macs = batch * cpu_conv.macs_per_example((batch, *hwc), w.shape, strides)
  routed = cpu_conv.takes_onednn_route((batch, *hwc), w.shape, strides, None, None, NHWC, 1)
  out["taken"] = out.get("winograd", out["direct"]) if routed else out["xla"]
  return out, 2 * macs


def time_torch(batch: int, hwc, features: int, stride: int, repeats: int) -> float | None:
  """Seconds of a PyTorch channels_last forward + both gradients; None without torch."""
  try:
    import torch
  except ImportError:
    return None
  torch.set_num_threads(os.cpu_count())
  h, w, c = hwc
  x = torch.randn(batch, c, h, w).to(memory_format=torch.channels_last).requires_grad_()
  conv = torch.nn.Conv2d(c, features, 3, stride, padding=1, bias=False).to(
      memory_format=torch.channels_last)

  def step():
    out = conv(x)
    out.backward(torch.ones_like(out))

  step()
  t = time.perf_counter()
  for _ in range(repeats):
    step()
  return (time.perf_counter() - t) / repeats


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--tiny", action="store_true")
  args = p.parse_args()
  process.configure()  # as the trainer does with cpu_kernels chosen
  if not onednn.available():
    raise SystemExit(f"oneDNN's kernels are unavailable: {onednn.unavailable()}")
  config = avenet.get_config("tiny" if args.tiny else None)
  cols = ("xla", "direct", "direct bf16", "winograd", "torch", "taken")
  totals = dict.fromkeys(cols, 0.0)
  print(f"batch {args.batch}, {jax.devices()[0].device_kind}; GFLOP/s of forward / d input / "
        "d filter (torch: the three together; taken: the kernels cpu_kernels runs)")
  print(f"{'layer':22s} {'in':>13s} {'out':>4s} " + " ".join(f"{c:>17s}" for c in cols))
  for name, hwc, features, stride in conv_shapes(config):
    times, flops = layer_times(args.batch, hwc, features, stride, args.repeats)
    cells = []
    for c in cols:
      if c not in times:
        cells.append(f"{'-':>17s}")
        continue
      t = times[c]
      totals[c] += sum(t)
      cells.append(f"{flops / t[0] / 1e9:>17.0f}" if c == "torch" else
                   f"{'/'.join(f'{flops / s / 1e9:.0f}' for s in t):>17s}")
    print(f"{name:22s} {'x'.join(map(str, hwc)):>13s} {features:>4d} " + " ".join(cells))
  print("update's convolutions, seconds: " + ", ".join(
      f"{c} {totals[c]:.2f}" for c in cols if totals[c]))
  if totals["torch"]:
    print(f"taken vs xla: x{totals['xla'] / totals['taken']:.2f}; taken vs torch channels_last: "
          f"x{totals['torch'] / totals['taken']:.2f} (>1: avjax_cpu faster)")


if __name__ == "__main__":
  main()
