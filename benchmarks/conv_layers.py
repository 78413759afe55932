"""Where the training step's time goes: each AVE-Net convolution, timed apart.

  python benchmarks/conv_layers.py [--batch 16] [--repeats 3] [--tiny]

For every 3x3 convolution of AVE-Net's two VGG towers at the config's shapes
(paper scale: 224 px frames, 257x199 spectrograms), times the three parts of its
update on this machine's default device, each jitted alone: the forward
convolution, the input gradient and the filter gradient. Prints GFLOP/s for
each and the share of the update's convolution time each layer takes. When
`torch` is importable (the `bench` extra) and the device is a CPU, the same
layer in PyTorch (channels_last, forward + both gradients) is timed beside it.
Stride-1 layers also time the per-tap filter gradient (avjax/models/conv.py)
and, where it applies, the native kernel's (avjax/models/native.py), which the
library takes on CPU from conv.MIN_TAP_PIXELS and conv.MIN_NATIVE_PIXELS up.
Where oneDNN is installed (the `cpu` extra), every layer's forward and both
gradients by oneDNN's kernels (avjax/models/onednn.py) are timed too, in
float32 and, where the CPU computes it natively, bfloat16; the library takes
them for the layers conv.takes_onednn_route names. The oneDNN columns are its
direct kernels (conv.WINOGRAD off); the "Winograd" column gives the float32
forward and input gradient of the stride-1 layers as the library computes them
on that route (conv.takes_winograd: Winograd's F(2x2, 3x3),
onednn.winograd_conv), in GFLOP/s of the direct convolution's arithmetic; its
filter gradient (onednn.winograd_filter_grad) counts in the totals.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from avjax import host, predict
from avjax.models import conv as conv_lib
from avjax.models import onednn
from configs import avenet
from train_step import time_fn  # benchmarks/, on the path when run as a script


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


def forward_kernel_parts(batch: int, hwc, features: int, stride: int) -> tuple[bool, bool]:
  """Whether the library takes the native forward kernel for this convolution's
  (forward, input gradient) on CPU (conv.NATIVE_FORWARD_PAIRS)."""
  if stride != 1 or not conv_lib.takes_tap_route(
      (batch, *hwc), (3, 3, hwc[2], features), (1, 1), None, None, ("NHWC", "HWIO", "NHWC"), 1):
    return False, False
  return (conv_lib.takes_native_forward(hwc[2], features, jnp.float32),
          conv_lib.takes_native_forward(features, hwc[2], jnp.float32))


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


def time_xla(batch: int, hwc, features: int, stride: int, repeats: int,
             library: bool) -> tuple[float, float, float, float | None, float | None, tuple | None]:
  """Seconds of (forward, input gradient, XLA's filter gradient, the per-tap and
  the native filter gradients of avjax/models/conv.py, each None where it does
  not apply) of one convolution, and with `library` (the native forward kernel
  takes its forward or input gradient) those two as conv.py computes them, and
  lax's (forward, input gradient) seconds last (else None)."""
  x, w = operands(batch, hwc, features)

  def conv(x, w):
    return lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))

  g = jnp.ones_like(conv(x, w))
  fwd, dx, dw = jitted_parts(conv)
  lax_parts = None
  if library:  # lax's as well, for comparison
    lax_parts = (time_fn(lambda: fwd(x, w), repeats), time_fn(lambda: dx(x, w, g), repeats))
    pads = tuple(lax.padtype_to_pads(hwc[:2], (3, 3), (1, 1), "SAME"))
    fwd = jax.jit(lambda x, w: conv_lib.forward(x, w, pads))
    dx = jax.jit(lambda x, w, g: conv_lib.input_grad(x, w, pads, g))
  taps = native = None
  if stride == 1:
    pads = tuple(lax.padtype_to_pads(hwc[:2], (3, 3), (1, 1), "SAME"))
    dw_taps = jax.jit(lambda x, g: conv_lib.tap_filter_grad(x, g, pads, (3, 3)))
    taps = time_fn(lambda: dw_taps(x, g), repeats)
    if conv_lib.takes_native_filter_grad(hwc[2], features, x.dtype):
      dw_native = jax.jit(lambda x, g: conv_lib.filter_grad(x, g, pads, (3, 3)))
      native = time_fn(lambda: dw_native(x, g), repeats)
  return (time_fn(lambda: fwd(x, w), repeats), time_fn(lambda: dx(x, w, g), repeats),
          time_fn(lambda: dw(x, w, g), repeats), taps, native, lax_parts)


def time_onednn(batch: int, hwc, features: int, stride: int, repeats: int,
                dtype=jnp.float32, winograd: bool = False) -> tuple | None:
  """Seconds of (forward, input gradient, filter gradient) of one convolution in
  `dtype` as conv.onednn_conv computes them: oneDNN's direct kernels, or with
  `winograd` the library's choice (Winograd's forward and both gradients where
  conv.takes_winograd); None where oneDNN does not take it here
  (avjax/models/onednn.py), or with `winograd` where Winograd does not."""
  if not onednn.takes(dtype):
    return None
  x, w = (a.astype(dtype) for a in operands(batch, hwc, features))
  strides = (stride, stride)
  pads = tuple(tuple(p) for p in lax.padtype_to_pads(hwc[:2], (3, 3), strides, "SAME"))
  saved, conv_lib.WINOGRAD = conv_lib.WINOGRAD, winograd
  try:
    if winograd and not conv_lib.takes_winograd(w.shape, strides, pads, dtype):
      return None
    conv = lambda x, w: conv_lib.onednn_conv(x, w, strides, pads)
    g = jnp.ones_like(conv(x, w))
    fwd, dx, dw = jitted_parts(conv)
    return (time_fn(lambda: fwd(x, w), repeats), time_fn(lambda: dx(x, w, g), repeats),
            time_fn(lambda: dw(x, w, g), repeats))
  finally:
    conv_lib.WINOGRAD = saved


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
  p.add_argument("--tiny", action="store_true", help="the CPU-sized config's shapes instead")
  args = p.parse_args()
  host.configure()  # as the trainer does (avjax/host.py)
  config = avenet.get_config("tiny" if args.tiny else None)
  device = jax.devices()[0]
  print(f"AVE-Net convolutions ({'tiny' if args.tiny else 'paper'} scale), batch {args.batch}, "
        f"{device.platform} ({device.device_kind}); GFLOP/s of each part:")
  rows, total, total_direct, total_own, total_xla = [], 0.0, 0.0, 0.0, 0.0
  for name, hwc, features, stride in conv_shapes(config):
    h, w = -(-hwc[0] // stride), -(-hwc[1] // stride)
    flops = 2 * args.batch * h * w * hwc[2] * features * 9
    fwd_native, dx_native = forward_kernel_parts(args.batch, hwc, features, stride)
    fwd, dx, dw_xla, dw_taps, dw_native, lax_parts = time_xla(
        args.batch, hwc, features, stride, args.repeats, fwd_native or dx_native)
    taken = conv_lib.takes_tap_route((args.batch, *hwc), (3, 3, hwc[2], features),
                                     (stride, stride), None, None, ("NHWC", "HWIO", "NHWC"), 1)
    dw = dw_xla
    if taken and device.platform == "cpu":
      dw = dw_native if dw_native is not None else dw_taps
    dnnl = time_onednn(args.batch, hwc, features, stride, args.repeats)
    dnnl_taken = dnnl is not None and device.platform == "cpu" and conv_lib.takes_onednn_route(
        (args.batch, *hwc), (3, 3, hwc[2], features), (stride, stride), None, None,
        ("NHWC", "HWIO", "NHWC"), 1)
    dnnl_bf16 = time_onednn(args.batch, hwc, features, stride, args.repeats, jnp.bfloat16)
    wino = time_onednn(args.batch, hwc, features, stride, args.repeats, winograd=True)
    ref = time_torch(args.batch, hwc, features, stride, args.repeats) if device.platform == "cpu" else None
    rows.append((name, hwc, features, flops, fwd, dx, dw_xla, dw_taps, dw_native, dw, ref,
                 fwd_native, dx_native, lax_parts, dnnl, dnnl_taken, dnnl_bf16, wino))
    total += sum(wino or dnnl) if dnnl_taken else fwd + dx + dw
    total_direct += sum(dnnl) if dnnl_taken else fwd + dx + dw
    total_own += fwd + dx + dw
    total_xla += fwd + dx + dw_xla
  print(f"  {'layer':22s} {'input':>14s} {'out':>4s} {'GFLOP':>6s} {'fwd':>6s} {'d input':>8s} "
        f"{'d filter':>9s} {'per tap':>8s} {'native':>7s} {'share':>6s}"
        + ("  oneDNN fwd+bwd" if rows[0][14] else "")
        + ("  oneDNN bf16" if rows[0][16] else "")
        + ("  Winograd fwd / d input" if any(r[17] for r in rows) else "")
        + ("  torch fwd+bwd" if rows[0][10] else ""))

  def column(sec, flops, taken):
    return "" if sec is None else f"{flops / sec / 1e9:.0f}" + ("*" if taken else "")

  for (name, hwc, features, flops, fwd, dx, dw_xla, dw_taps, dw_native, dw, ref, fwd_native,
       dx_native, lax_parts, dnnl, dnnl_taken, dnnl_bf16, wino) in rows:
    taken_parts = sum(wino or dnnl) if dnnl_taken else fwd + dx + dw
    line = (f"  {name:22s} {'x'.join(map(str, hwc)):>14s} {features:4d} {flops / 1e9:6.2f} "
            f"{column(fwd, flops, fwd_native):>6s} {column(dx, flops, dx_native):>8s} "
            f"{flops / dw_xla / 1e9:9.0f} "
            f"{column(dw_taps, flops, dw is dw_taps):>8s} "
            f"{column(dw_native, flops, dw is dw_native):>7s} {taken_parts / total:6.1%}")
    if dnnl:
      line += f"  {column(sum(dnnl) / 3, flops, dnnl_taken):>14s}"
    if dnnl_bf16:
      line += f"  {column(sum(dnnl_bf16) / 3, flops, dnnl_taken):>11s}"
    if wino:
      line += (f"  {column(wino[0], flops, dnnl_taken):>9s} / "
               f"{column(wino[1], flops, dnnl_taken):<11s}")
    elif any(r[17] for r in rows):
      line += " " * 25
    if ref:
      line += f"  {3 * flops / ref / 1e9:9.0f}"
    if lax_parts:
      line += (f"  (lax: fwd {flops / lax_parts[0] / 1e9:.0f}, "
               f"d input {flops / lax_parts[1] / 1e9:.0f})")
    print(line)
  print("  (* in the filter-gradient columns: the one avjax's own kernels take "
        "(avjax/models/conv.py, on CPU); in fwd and d input: the native forward kernel's, "
        "conv.NATIVE_FORWARD_PAIRS; in oneDNN's: the layers that the library gives oneDNN "
        "(conv.takes_onednn_route), for which its own kernels' columns are then unused)")
  print(f"  all convolutions: {total:.2f} s per update as the library runs them; "
        f"{total_direct:.2f} s with oneDNN's direct kernels in place of Winograd's, "
        f"{total_own:.2f} s with avjax's own kernels, {total_xla:.2f} s with XLA's filter "
        f"gradients everywhere")
  if rows[0][14] and rows[0][16]:
    f32, bf16 = (sum(sum(r[i]) for r in rows) for i in (14, 16))
    print(f"  oneDNN's kernels, every layer: {f32:.2f} s in float32, {bf16:.2f} s in bfloat16 "
          f"(x{f32 / bf16:.2f})")
  if rows[0][10]:
    ref_total = sum(r[10] for r in rows)
    print(f"  PyTorch channels_last, the same convolutions: {ref_total:.2f} s "
          f"(avjax x{ref_total / total:.2f} as fast)")


if __name__ == "__main__":
  main()
