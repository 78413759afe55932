"""The objective behind the README's plateau table: AVE-Net trained with the AVC
loss only, with AVC + InfoNCE (the tiny config) and with InfoNCE only.

  avjax-sweep --config=configs/ablations/objective.py:tiny --workdir=workdirs/sweep_objective
"""
from avjax import hyper
from configs import avenet


get_config = avenet.get_config  # the points override AVE-Net's tiny / paper config


def get_sweep(arg=None):
  del arg
  return hyper.Sweep(
      points=hyper.points(avc_only={"losses.infonce": 0.0},
                           avc_infonce={},
                           infonce_only={"losses.avc_softmax_xent": 0.0}),
      seeds=3,
      evaluations=[hyper.Evaluation("test", split="test", evals=("avc", "retrieval"))],
      headline=("test/avc_accuracy", "test/retrieval_aud_im_ndcg@30",
                "test/retrieval_im_aud_ndcg@30", "test/retrieval_im_im_ndcg@30"),
      checkpoint="latest")
