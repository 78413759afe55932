"""L3-Net vs AVE-Net vs AVOL-Net, each with its own config's model and losses, on
AVC, cross-modal retrieval and pointing (test_crowded: one sounding object among 3-4).

  avjax-sweep --config=configs/ablations/architecture.py:tiny --workdir=workdirs/sweep_arch
"""
from avjax import hyper
from configs import avenet, avolnet, l3


get_config = avenet.get_config  # the points override AVE-Net's tiny / paper config


def _whole(module, arg) -> dict:
  c = module.get_config(arg)
  return {"model": c.model.to_dict(), "losses": c.losses.to_dict()}


def get_sweep(arg=None):
  return hyper.Sweep(
      points=hyper.points(l3=_whole(l3, arg), avenet=_whole(avenet, arg),
                           avolnet=_whole(avolnet, arg)),
      seeds=3,
      evaluations=[
          hyper.Evaluation("test", split="test", evals=("avc", "retrieval")),
          hyper.Evaluation("crowded", split="test_crowded", evals=("localisation",)),
      ],
      headline=("test/avc_accuracy", "test/retrieval_aud_im_ndcg@30",
                "test/retrieval_im_aud_ndcg@30", "crowded/localisation_pointing",
                "crowded/localisation_ciou_fixed"))
