"""The README and docs/DESIGN.md name only paths that exist."""
import os
import re

import pytest

from tests.conftest import ROOT

PATH = re.compile(r"`((?:avjax|data_pipelines|configs|benchmarks|launch|docs|tests)/[A-Za-z0-9_./-]*)`")


def named_paths(doc):
  with open(os.path.join(ROOT, doc)) as f:
    text = f.read()
  return sorted(set(PATH.findall(text)))


@pytest.mark.parametrize("doc", ["README.md", "docs/DESIGN.md"])
def test_named_paths_exist(doc):
  paths = named_paths(doc)
  assert len(paths) > 15
  missing = [p for p in paths if not os.path.exists(os.path.join(ROOT, p))]
  assert missing == [], missing


def test_readme_table_lists_every_module():
  """Every module of the library appears in the README's table of paths or by its folder."""
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  table = readme[readme.index("| path | what |"):readme.index("## Your own videos")]
  for package in ("avjax", "data_pipelines"):
    for name in sorted(os.listdir(os.path.join(ROOT, package))):
      if name.endswith(".py") and name != "__init__.py":
        assert f"{package}/{name}" in table or f"`{name}`" in table, f"{package}/{name}"
