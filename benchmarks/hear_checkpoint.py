"""A briefly trained tiny AVE-Net, for the HEAR validator to check the API on:

  python benchmarks/hear_checkpoint.py WORKDIR [--steps 30]

It generates a few embedded-style clips and prepares them at the tiny config's
settings under WORKDIR/data (default_dataset.ensure, with splits of its own),
and trains configs/avenet.py:tiny on them into
WORKDIR. The validator checks shapes, rates and timestamps, not quality, so a
minute of data and training stands in for the README's run (which builds the
whole embedded dataset first).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from avjax import input as input_lib  # noqa: E402
from avjax import train  # noqa: E402
from configs import avenet  # noqa: E402
from data_pipelines import default_dataset, synthetic  # noqa: E402

SPLITS = (synthetic.SplitSpec("train", 24, seed=11), synthetic.SplitSpec("validation", 8, seed=12))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("workdir")
  p.add_argument("--steps", type=int, default=30)
  args = p.parse_args()
  t0 = time.time()
  config = avenet.get_config("tiny")
  config.data.dir = default_dataset.ensure(input_lib.prepare_settings(config.data), SPLITS,
                                           root=os.path.join(args.workdir, "data"), quiet=True)
  config.update(total_steps=args.steps, log_every=args.steps, progress_bar=False)
  config.checkpoint.update(every=args.steps, async_save=False)
  for name in config.evals:
    config.evals[name].every = 0
  train.train_and_evaluate(config, args.workdir)
  print(f"trained {args.steps} steps into {args.workdir} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
  main()
