"""Cosine cross-modal embeddings (Suris, Duarte, Salvador, Torres, Giro-i-Nieto,
"Cross-modal embeddings for video and audio retrieval", ECCV Workshops 2018): a
labelled baseline for the retrieval tables.

AVE-Net's towers and embedding heads, trained with class labels: a clip's frame
and audio are pulled together (1 - cos), a frame and the audio of a clip that
shares no label with it pushed below a cosine margin of 0.2
(losses.cosine_embedding), plus, weighted by lambda = config.losses.shared_classifier,
a linear classifier shared by both embeddings (0 = off at paper scale, where
model.classifier_classes must be set to the data's classes; 10 in the tiny
config, measured). Every pair is a
positive (negative_fraction 0); no correspondence head is trained, so validation
is cross-modal retrieval.

Paper scale (prepared data with labels; set the classifier to its classes):
  python -m avjax.main --config=configs/cosine.py --workdir=/ckpt/cosine \\
      --config.data.dir=/data/prepared --config.model.classifier_classes=<classes>
CPU-sized run on the embedded default dataset (12 classes):
  python -m avjax.main --config=configs/cosine.py:tiny --workdir=/tmp/cosine
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(
      model=dict(name="avenet", embed_dim=128, calibration="distance", classifier_classes=0),
      losses={"cosine_embedding": 1.0, "shared_classifier": 0.0}, arg=arg)
  c.loss_kwargs.cosine_embedding = dict(margin=0.2)
  if common.parse_arg(arg).tiny:
    # The embedded dataset's 12 classes; with lambda = 10 the tiny run reached test
    # nDCG@30 aud-im 0.90-0.92 over two seeds, against 0.57 at lambda = 1 and 0.31
    # with the cosine term alone (README).
    c.model.classifier_classes = 12
    c.losses.shared_classifier = 10.0
  return common.without_correspondence(
      c, evaluator="retrieval", best_metric=f"retrieval_aud_im_ndcg@{c.evals.retrieval.k}")
