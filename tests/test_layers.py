"""The layers hold: data_pipelines/ imports nothing of avjax/, the core reaches
avjax_cpu only through its two config seams, and the core carries no compiled
source and no trace-time platform choice."""
import ast
import os

import pytest

from tests.conftest import ROOT

CORE = ("avjax", "data_pipelines")
SEAMS = {"avjax/models/conv.py", "data_pipelines/records.py"}  # name avjax_cpu by string


def python_files(package: str) -> list[str]:
  out = []
  for folder, _, files in os.walk(os.path.join(ROOT, package)):
    out += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files if f.endswith(".py")]
  return sorted(out)


def imported_modules(path: str) -> set[str]:
  """Every module an `import` or `from ... import` anywhere in the file names
  (function-level ones included)."""
  with open(os.path.join(ROOT, path)) as f:
    tree = ast.parse(f.read(), path)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      out.add(node.module)
  return out


def top(module: str) -> str:
  return module.split(".")[0]


@pytest.mark.parametrize("path", python_files("data_pipelines"))
def test_data_pipelines_imports_no_avjax(path):
  assert not {m for m in imported_modules(path) if top(m) in ("avjax", "avjax_cpu")}


@pytest.mark.parametrize("path", python_files("avjax") + python_files("data_pipelines"))
def test_the_core_imports_no_opt_in_package(path):
  assert not {m for m in imported_modules(path) if top(m) == "avjax_cpu"}
  with open(os.path.join(ROOT, path)) as f:
    names_it = "avjax_cpu." in f.read()
  assert not names_it or path in SEAMS, f"{path} names avjax_cpu outside the seams {SEAMS}"


def test_the_core_ships_no_compiled_source():
  found = [os.path.join(folder, f) for package in CORE
           for folder, _, files in os.walk(os.path.join(ROOT, package))
           for f in files if f.endswith((".cc", ".c", ".cpp", ".h", ".cu"))]
  assert found == []


@pytest.mark.parametrize("path", python_files("avjax/models"))
def test_models_choose_no_platform_at_trace_time(path):
  """A model's choice of kernels by platform is made at lowering
  (jax.lax.platform_dependent), never by the tracing host's backend."""
  with open(os.path.join(ROOT, path)) as f:
    assert "default_backend" not in f.read()
