"""AVOL-Net's localisation options: how the map pools into the correspondence
score (max, log-sum-exp, top-k mean), crossed with zoom-out scale augmentation.
Each point is scored on the three boxed test splits (test_crowded: one sounding
object among 3-4; test_small: objects at half the training size; test_many:
among 5-6), beside its random initialisation.

  avjax-sweep --config=configs/ablations/localisation.py:tiny --workdir=workdirs/sweep_loc
"""
from avjax import sweeps
from configs import avolnet

get_config = avolnet.get_config


def get_sweep(arg=None):
  del arg
  pooling = [sweeps.Point("pool=max", {"model.pooling": "max"}),
             sweeps.Point("pool=lse", {"model.pooling": "lse", "model.pooling_temperature": 1.0}),
             sweeps.Point("pool=topk", {"model.pooling": "topk", "model.pooling_topk": 0.1})]
  zoom = sweeps.axis("zoom", "data.zoom_out", [0.0, 0.5])
  return sweeps.Sweep(
      points=sweeps.product(pooling, zoom),
      seeds=3,
      evaluations=[sweeps.Evaluation("test", split="test", evals=("avc",))] + [
          sweeps.Evaluation(split.replace("test_", ""), split=split, evals=("localisation",))
          for split in ("test_crowded", "test_small", "test_many")],
      headline=("test/avc_accuracy",
                *(f"{s}/localisation_{m}" for s in ("crowded", "small", "many")
                  for m in ("pointing", "ciou_fixed", "ap50_fixed"))))
