"""The offset shortcut of "Objects that Sound" (ECCV 2018, sec. 3.3): negatives
whose audio starts on the frame grid (honest) vs anywhere (the network can tell
a negative by where its window starts). Every model is scored on both kinds of
negatives and by retrieval: a higher AVC bought with the shortcut should show as
a gap between grid and off-grid scores, and no better features.

  avjax-sweep --config=configs/ablations/shortcut.py:tiny --workdir=workdirs/sweep_shortcut
"""
from avjax import hyper
from configs import avenet


get_config = avenet.get_config  # the points override AVE-Net's tiny / paper config


def get_sweep(arg=None):
  del arg
  return hyper.Sweep(
      points=hyper.axis("negatives", "data.negatives_on_grid", [True, False],
                         names=["grid", "anywhere"]),
      seeds=3,
      evaluations=[
          hyper.Evaluation("grid", split="test", evals=("avc",),
                            overrides={"data.negatives_on_grid": True}),
          hyper.Evaluation("offgrid", split="test", evals=("avc",),
                            overrides={"data.negatives_on_grid": False}),
          hyper.Evaluation("test", split="test", evals=("retrieval",)),
      ],
      headline=("grid/avc_accuracy", "offgrid/avc_accuracy", "test/retrieval_aud_im_ndcg@30",
                "test/retrieval_im_aud_ndcg@30", "test/retrieval_im_im_ndcg@30"),
      # The two points validate on different negatives during training; the last
      # step (end of the cosine schedule) is compared, not a differently chosen best.
      checkpoint="latest")
