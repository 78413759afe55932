"""The reader's malloc settings: applied on glibc, never over the user's own."""
import os
import subprocess
import sys

import pytest

from data_pipelines import host_memory
from tests.conftest import ROOT

PROBE = "from data_pipelines import host_memory; print(host_memory.tune_allocator())"


def probe(**env_vars) -> str:
  env = {k: v for k, v in os.environ.items() if k not in host_memory.USER_SETTINGS}
  env.update(PYTHONPATH=ROOT, **env_vars)
  return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                        check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_settings_apply_unless_the_user_chose_their_own():
  assert probe() == "True"
  assert probe(AVJAX_DEFAULT_MALLOC="1") == "False"
  assert probe(MALLOC_ARENA_MAX="8") == "False"


def test_one_arena_per_core_with_a_floor_of_two():
  assert host_memory.allocator_settings(1)[host_memory.M_ARENA_MAX] == 2
  assert host_memory.allocator_settings(96)[host_memory.M_ARENA_MAX] == 96
