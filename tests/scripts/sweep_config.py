"""A two-point sweep of a few steps on the test dataset (--config.data.dir=...).
Arg "typo" misspells the points' override key."""
from avjax import hyper
from tests.conftest import tiny_config


def get_config(arg=None):
  del arg
  c = tiny_config("avenet", "", total_steps=40, log_every=10)
  c.checkpoint.every = 10
  c.evals.avc.every = 40
  return c


def get_sweep(arg=None):
  key = "optimizer.lrr" if arg == "typo" else "optimizer.lr"
  return hyper.Sweep(
      points=hyper.axis("lr", key, [1e-3, 3e-3]),
      seeds=1,
      evaluations=[
          hyper.Evaluation("val", split="validation", evals=("avc",)),
          hyper.Evaluation("offgrid", split="validation", evals=("avc",),
                            overrides={"data.negatives_on_grid": False}),
      ],
      headline=("val/avc_accuracy", "offgrid/avc_accuracy"),
      checkpoint="latest")
