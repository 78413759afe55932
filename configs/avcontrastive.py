"""Audio-visual contrastive learning: bidirectional InfoNCE (SimCLR / NT-Xent style,
as in Afouras et al., ECCV 2020) between a frame's and its audio's embeddings.

AVE-Net's two towers and embedding heads, trained by InfoNCE alone: every pair is
a positive (negative_fraction 0), and the other B - 1 pairs of the global batch
give each one its negatives, in both directions. No correspondence head is
trained, so validation is cross-modal retrieval and the best checkpoint is the
one with the highest audio->image nDCG@30.

Paper scale (set config.data.dir to prepared data):
  python -m avjax.main --config=configs/avcontrastive.py --workdir=/ckpt/avc \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset:
  python -m avjax.main --config=configs/avcontrastive.py:tiny --workdir=/tmp/avc
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="avenet", embed_dim=128, calibration="distance"),
                         losses={"infonce": 1.0}, arg=arg)
  return common.without_correspondence(
      c, evaluator="retrieval", best_metric=f"retrieval_aud_im_ndcg@{c.evals.retrieval.k}")
