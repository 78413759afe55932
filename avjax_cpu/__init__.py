"""avjax_cpu: opt-in CPU kernels for avjax, chosen by config, never by default.

- `config.model.conv="cpu_kernels"` (avjax_cpu/conv.py): oneDNN's convolutions
  and Winograd's F(2x2, 3x3) as XLA FFI custom calls registered for the CPU
  platform, chosen per call at lowering with `jax.lax.platform_dependent`;
  programs lowered for TPU or CUDA keep lax's convolutions.
- `config.data.records="spans"` (avjax_cpu/spans.py): local TFRecord shards read
  by byte span, CRC32C checked with the CPU's instruction.
- process settings for CPU training hosts (avjax_cpu/process.py), made only
  when the kernels are chosen and the backend is a CPU.

Its C++ is compiled on first use into a per-machine cache (avjax_cpu/build.py),
against the `cpu` extra's oneDNN wheels and the headers that jaxlib and
TensorFlow ship. The core (avjax/, data_pipelines/) never imports this package
except through those two config keys.
"""
