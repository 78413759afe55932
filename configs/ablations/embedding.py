"""Embedding size (32 / 128 / 512) and global batch (32 / 128 beside the config's
64): two axes from the tiny AVE-Net config, `embed=128` being the baseline of both.

  avjax-sweep --config=configs/ablations/embedding.py:tiny --workdir=workdirs/sweep_embedding
"""
from avjax import hyper
from configs import avenet


get_config = avenet.get_config  # the points override AVE-Net's tiny / paper config


def get_sweep(arg=None):
  del arg
  return hyper.Sweep(
      points=[*hyper.axis("embed", "model.embed_dim", [32, 128, 512]),
              *hyper.axis("batch", "batch_size", [32, 128])],
      seeds=3,
      evaluations=[hyper.Evaluation("test", split="test", evals=("avc", "retrieval"))],
      headline=("test/avc_accuracy", "test/retrieval_aud_im_ndcg@30",
                "test/retrieval_im_aud_ndcg@30"))
