"""The core as a new user runs it, with no extras chosen: training and
evaluation on a PATH with no C++ compiler compile nothing, write nothing to the
kernel cache, and make no process-wide setting (no mallopt; JAX's CPU dispatch
left asynchronous)."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Runs before avjax: records any mallopt that Python code looks up through ctypes,
# and what JAX's dispatch setting is at exit.
WATCH = """
import atexit, ctypes, os, runpy, sys
log = os.environ["AVJAX_TEST_LOG"]
_getattr = ctypes.CDLL.__getattr__
def _watch(self, name):
  if name == "mallopt":
    open(log, "a").write("mallopt\\n")
  return _getattr(self, name)
ctypes.CDLL.__getattr__ = _watch
def _at_exit():
  import jax
  open(log, "a").write(f"async_dispatch={jax.config.read('jax_cpu_enable_async_dispatch')}\\n")
atexit.register(_at_exit)
"""
# Then the command: `python -c WATCH+RUN MODULE ARGS` runs `python -m MODULE ARGS`.
RUN = """
module = sys.argv[1]
sys.argv = [sys.argv[0], *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def run_without_compiler(module: str, args, tmp_path, log):
  """`python -m module args` with PATH holding only the interpreter's folder."""
  bin_dir = os.path.dirname(sys.executable)
  compilers = [c for c in ("c++", "g++", "gcc", "cc", "clang") if shutil.which(c, path=bin_dir)]
  assert not compilers, f"{bin_dir} holds {compilers}: no compiler-free PATH to test with"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(PATH=bin_dir, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CXX="c++",
             AVJAX_KERNEL_CACHE=str(tmp_path / "kernels"), AVJAX_TEST_LOG=str(log))
  return subprocess.run([sys.executable, "-c", WATCH + RUN, module, *args], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_train_and_evaluate_compile_nothing_and_set_nothing(data_dir, tmp_path):
  from tests.test_reliability import small_overrides
  log, work = tmp_path / "log", tmp_path / "work"
  common = ["--config=configs/avenet.py:tiny", f"--workdir={work}", *small_overrides(data_dir)]
  train = run_without_compiler("avjax.main", [*common, "--config.total_steps=2"], tmp_path, log)
  assert train.returncode == 0, train.stderr[-3000:]
  evaluate = run_without_compiler("avjax.evaluate", [*common, "--evals=avc", "--nopictures"],
                                  tmp_path, log)
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  assert log.read_text().split() == ["async_dispatch=True"] * 2
  assert not (tmp_path / "kernels").exists()


def test_the_watch_sees_a_mallopt(tmp_path):
  """The prelude above does catch a mallopt: avjax_cpu's allocator setting,
  called the way the core never does."""
  log = tmp_path / "log"
  code = WATCH + "from avjax_cpu import process; process.tune_allocator()"
  env = {k: v for k, v in os.environ.items() if k not in ("AVJAX_DEFAULT_MALLOC",
                                                         "MALLOC_ARENA_MAX")}
  env.update(PYTHONPATH=ROOT, AVJAX_TEST_LOG=str(log))
  r = subprocess.run([sys.executable, "-c", code, "x"], env=env, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "mallopt" in log.read_text().split()
