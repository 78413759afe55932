"""Trains tiny AVE-Net; with --kill_after N, SIGKILLs itself once checkpoint N is on disk.

  python tests/scripts/train_until.py DATA_DIR WORKDIR TOTAL_STEPS [--kill_after N]
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from avjax import train  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402


def main():
  data_dir, workdir, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
  kill_after = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--kill_after" else None
  config = tiny_config("avenet", data_dir, total_steps=total, log_every=1)
  config.losses.infonce = 0.5
  config.checkpoint.every = kill_after or total
  config.evals.avc.every = 10**9
  config.checkpoint.async_save = True

  def hook(step):
    # Die mid-run, the way a preempted or OOM-killed job does: some steps past
    # the checkpoint are lost and nothing gets to clean up.
    if kill_after is not None and step == kill_after + 2:
      ckpt = os.path.join(workdir, "checkpoints", str(kill_after))
      deadline = time.time() + 60
      while not os.path.isdir(ckpt) and time.time() < deadline:
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)

  train.train_and_evaluate(config, workdir, step_hook=hook)


if __name__ == "__main__":
  main()
