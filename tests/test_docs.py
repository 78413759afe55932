"""The README is a guide of at most 300 lines, and it and every page of docs/ name
only paths that exist and link only to files that exist."""
import glob
import os
import re

import pytest

from tests.conftest import ROOT

PATH = re.compile(r"`((?:avjax|avjax_cpu|data_pipelines|configs|benchmarks|launch|docs|tests)/"
                  r"[A-Za-z0-9_./-]*)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                              for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def text(doc):
  with open(os.path.join(ROOT, doc)) as f:
    return f.read()


@pytest.mark.parametrize("doc", DOCS)
def test_named_paths_and_links_exist(doc):
  body = text(doc)
  paths = set(PATH.findall(body))
  links = {l for l in LINK.findall(body) if "://" not in l}
  missing = [p for p in sorted(paths) if not os.path.exists(os.path.join(ROOT, p))]
  missing += [l for l in sorted(links)
              if not os.path.exists(os.path.normpath(os.path.join(ROOT, os.path.dirname(doc), l)))]
  assert missing == [], missing


def test_the_readme_is_a_guide():
  lines = text("README.md").splitlines()
  assert len(lines) <= 300, len(lines)
  # Its first two commands: the main job, then the tests.
  commands = [l for l in lines if l.startswith("python3 -m venv")]
  assert "avjax.main --config=configs/avenet.py:tiny" in commands[0]
  assert "avjax.evaluate" in commands[0]
  assert "pytest" in commands[1]


def test_design_names_every_module():
  """docs/DESIGN.md is the one module table: every module of the library is in it."""
  design = text("docs/DESIGN.md")
  for package in ("avjax", "avjax_cpu", "data_pipelines"):
    for path in glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True):
      rel = os.path.relpath(path, ROOT)
      if os.path.basename(rel) == "__init__.py" or "/tests/" in rel or "/benchmarks/" in rel:
        continue
      assert f"`{rel}`" in design or f"{os.path.dirname(rel)}/`" in design \
          or f"`{os.path.dirname(rel)}/`" in design, rel
