"""C++ sources compiled on first use into a per-machine cache, with the system's
compiler: oneDNN's convolutions and Winograd's (avjax_cpu/onednn.py) and the
TFRecord span reader (avjax_cpu/spans.py). Only avjax_cpu builds anything: the
core (avjax/, data_pipelines/) compiles nothing at run time.

Each library is built once per machine for this CPU (-march=native), into
$AVJAX_KERNEL_CACHE (default ~/.cache/avjax/kernels), under a name keyed by its
sources, the toolchain it builds against, the compiler, its flags and the CPU.
Callers decide what to do where that fails: each keeps a slower path.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread")


def cache_dir() -> Path:
  return Path(os.environ.get("AVJAX_KERNEL_CACHE")
              or os.path.join(os.path.expanduser("~"), ".cache", "avjax", "kernels"))


def cpu_signature() -> str:
  """What -march=native compiles for: a library built on one CPU may not run on
  another that shares the cache folder."""
  try:
    with open("/proc/cpuinfo") as f:
      lines = [l for l in f if l.startswith(("model name", "flags", "Features", "CPU part"))]
    return "".join(sorted(set(lines)))
  except OSError:
    return platform.processor() + platform.machine()


def library_path(compiler: str, sources, flags, name: str, toolchain: str) -> Path:
  """Where the library built from these sources and flags, against `toolchain`
  (the headers' package and version), for this CPU lives."""
  key = hashlib.sha256("\0".join(
      [*(Path(s).read_text() for s in sources), toolchain, compiler, " ".join(flags),
       cpu_signature()]).encode()).hexdigest()[:16]
  return cache_dir() / f"{name}-{key}.so"


def build(compiler: str, out: Path, sources, flags) -> None:
  """Compiles `sources` into `out`, atomically (parallel test workers may
  build it at once)."""
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
  os.close(fd)
  try:
    cmd = [compiler, *FLAGS, *map(str, sources), *flags, "-o", tmp]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if run.returncode:
      errors = [l for l in run.stderr.splitlines() if "error" in l] or run.stderr.splitlines()
      raise RuntimeError(f"{' '.join(cmd)} failed: {errors[0] if errors else run.returncode}")
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def compiled(sources, *, headers=(), flags=(), name: str, toolchain: str) -> Path:
  """The path of the library of `sources` (compiled with FLAGS, then `flags`:
  include folders, what it links) for this machine, built first where the
  cache lacks it. Raises OSError, RuntimeError or SubprocessError, with the
  reason, where it cannot be had."""
  compiler = shutil.which(os.environ.get("CXX", "c++"))
  if compiler is None:
    raise RuntimeError(f"no C++ compiler ({os.environ.get('CXX', 'c++')}) on PATH")
  path = library_path(compiler, (*sources, *headers), tuple(flags), name, toolchain)
  if not path.exists():
    build(compiler, path, sources, flags)
  return path


def ffi_library(sources, *, flags=(), name: str) -> ctypes.CDLL:
  """The XLA FFI library of `sources`, compiled against the headers jaxlib
  ships, loaded. Raises OSError, RuntimeError or SubprocessError, with the
  reason, where it cannot be had."""
  import jax
  path = compiled(sources, flags=(f"-I{jax.ffi.include_dir()}", *flags), name=name,
                  toolchain=f"jax {jax.__version__}")
  return ctypes.cdll.LoadLibrary(str(path))
