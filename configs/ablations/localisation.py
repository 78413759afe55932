"""AVOL-Net's localisation options: how the map pools into the correspondence
score (max, log-sum-exp, top-k mean; or max, with top-k in the InfoNCE term
only), crossed with zoom-out scale augmentation, with same-frame hard
negatives (losses.hard_negatives) and with the last vision block's kernel
(3, or 1: what a map cell sees shrinks from 61 to 29 px of the 64 px frame).
Each point is scored on the three boxed test splits (test_crowded: one sounding
object among 3-4; test_small: objects at half the training size; test_many:
among 5-6), on the frame alone and with the 1,2,3 image pyramid fused by max
(`*_pyramid`) and by mean (`*_pyramid_mean`), beside its random initialisation.

  avjax-sweep --config=configs/ablations/localisation.py:tiny --workdir=workdirs/sweep_loc
"""
from avjax import hyper
from configs import avolnet

get_config = avolnet.get_config


def get_sweep(arg=None):
  del arg
  def pool(name, model_pooling, nce_pooling="max", **extra):
    return hyper.Point(name, {"model.pooling": model_pooling,
                               "loss_kwargs.infonce.pooling": nce_pooling, **extra})
  pooling = [pool("pool=max", "max"),
             pool("pool=lse", "lse", **{"model.pooling_temperature": 1.0}),
             pool("pool=topk", "topk", **{"model.pooling_topk": 0.1}),
             # The correspondence logit keeps the max; only the InfoNCE term pools top-k.
             pool("pool=max,nce=topk", "max", "topk")]
  zoom = hyper.axis("zoom", "data.zoom_out", [0.0, 0.5])
  hard = hyper.axis("hard_neg", "losses.hard_negatives", [0.0, 1.0])
  kernel = hyper.axis("last_kernel", "model.vision_last_kernel", [3, 1])
  splits = ("test_crowded", "test_small", "test_many")
  pyramids = (("", "1", "max"), ("_pyramid", "1,2,3", "max"), ("_pyramid_mean", "1,2,3", "mean"))
  return hyper.Sweep(
      points=hyper.product(pooling, zoom, hard, kernel),
      seeds=3,
      evaluations=[hyper.Evaluation("test", split="test", evals=("avc",))] + [
          hyper.Evaluation(split.replace("test_", "") + tag, split=split, evals=("localisation",),
                            overrides={"evals.localisation.scales": scales,
                                       "evals.localisation.fusion": fusion})
          for split in splits for tag, scales, fusion in pyramids],
      headline=("test/avc_accuracy",
                *(f"{s.replace('test_', '')}{tag}/localisation_{m}" for s in splits
                  for tag, _, _ in pyramids for m in ("pointing", "ciou_fixed", "ap50_fixed"))))
