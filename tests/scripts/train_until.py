"""Trains tiny AVE-Net as the reliability tests need it.

  python tests/scripts/train_until.py DATA_DIR WORKDIR TOTAL_STEPS [--kill_after N]
      [--hold_at STEP RELEASE_FILE] [--truncate_at STEP SHARD] [--every N]

--kill_after N: SIGKILLs itself once checkpoint N is on disk (two steps later).
--hold_at: at STEP, writes WORKDIR.holding and waits until RELEASE_FILE exists.
--truncate_at: at STEP, cuts SHARD to half its size (the reader meets it later).
Errors are said in one line, as the avjax-train command says them.
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from avjax import cli, train  # noqa: E402
from data_pipelines import fs  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402


def wait_for(path, seconds=120, exists=fs.exists):
  deadline = time.time() + seconds
  while not exists(path) and time.time() < deadline:
    time.sleep(0.05)


def finished_checkpoint(path) -> bool:
  """A step folder orbax has finished: locally it appears whole (renamed); in a
  bucket it appears with its first object and is finished with commit_success.txt."""
  return fs.exists(fs.join(path, "commit_success.txt") if fs.is_url(path) else path)


def make_config(data_dir, total: int, every: int | None = None, shuffle_buffer: int | None = None):
  """The job this script trains (tests that need it uninterrupted run it in their own process)."""
  config = tiny_config("avenet", data_dir, total_steps=total, log_every=1)
  config.losses.infonce = 0.5
  config.checkpoint.every = every or total
  config.evals.avc.every = 10**9
  config.checkpoint.async_save = True
  if shuffle_buffer:
    config.data.shuffle_buffer = shuffle_buffer
  return config


def main():
  p = argparse.ArgumentParser()
  p.add_argument("data_dir")
  p.add_argument("workdir")
  p.add_argument("total", type=int)
  p.add_argument("--kill_after", type=int)
  p.add_argument("--hold_at", nargs=2)
  p.add_argument("--truncate_at", nargs=2)
  p.add_argument("--every", type=int)
  p.add_argument("--shuffle_buffer", type=int)
  a = p.parse_args()
  config = make_config(a.data_dir, a.total, every=a.every or a.kill_after,
                       shuffle_buffer=a.shuffle_buffer)

  def hook(step):
    # Die mid-run, the way a preempted or OOM-killed job does: some steps past
    # the checkpoint are lost and nothing gets to clean up.
    if a.kill_after is not None and step == a.kill_after + 2:
      wait_for(fs.join(a.workdir, "checkpoints", str(a.kill_after)), 60, finished_checkpoint)
      os.kill(os.getpid(), signal.SIGKILL)
    if a.hold_at and step == int(a.hold_at[0]):
      open(a.workdir + ".holding", "w").close()
      wait_for(a.hold_at[1])
    if a.truncate_at and step == int(a.truncate_at[0]):
      os.truncate(a.truncate_at[1], os.path.getsize(a.truncate_at[1]) // 2)

  cli.with_one_line_errors("train_until", train.train_and_evaluate)(
      config, a.workdir, step_hook=hook)


if __name__ == "__main__":
  main()
