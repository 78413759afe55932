"""Where a negative's audio comes from (the next batch's clip, or the next example
of the same batch) and how many of the pairs are negatives.

  avjax-sweep --config=configs/ablations/negatives.py:tiny --workdir=workdirs/sweep_negatives
"""
from avjax import hyper
from configs import avenet


get_config = avenet.get_config  # the points override AVE-Net's tiny / paper config


def get_sweep(arg=None):
  del arg
  return hyper.Sweep(
      points=hyper.product(
          hyper.axis("negatives", "data.negatives", ["stream", "in_batch"]),
          hyper.axis("fraction", "data.negative_fraction", [0.25, 0.5, 0.75])),
      seeds=3,
      evaluations=[hyper.Evaluation("test", split="test", evals=("avc", "retrieval"))],
      headline=("test/avc_accuracy", "test/retrieval_aud_im_ndcg@30",
                "test/retrieval_im_aud_ndcg@30"))
