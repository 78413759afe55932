"""SeLaVi (Asano et al., NeurIPS 2020): multi-modal self-labelling, online.

Every pair is a positive (negative_fraction 0): the model learns from clusters
that both modalities of a clip must agree on, not from correspondence, so there
is no AVC head and clustering (NMI/ARI/accuracy on held-out labels, one cluster
per class as in the paper's evaluation) is the validation metric.

Paper scale (set config.data.dir to prepared data):
  python -m avjax.main --config=configs/selavi.py --workdir=/ckpt/selavi \\
      --config.data.dir=/data/prepared --config.model.num_clusters=<classes>
CPU-sized run on the embedded default dataset (12 classes):
  python -m avjax.main --config=configs/selavi.py:tiny --workdir=/tmp/selavi
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(
      model=dict(name="selavi", embed_dim=128, num_heads=10, num_clusters=400, temperature=0.1,
                 modality_dropout=0.5,
                 # Target cluster sizes: "uniform" (equipartition), "gauss" (SeLaVi's
                 # released option, sizes ~ N(1, marginal_sd)) or "zipf" (zipf_exponent).
                 marginals="uniform", marginal_sd=0.1, zipf_exponent=1.0),
      losses={"selavi": 1.0}, arg=arg)
  c.loss_kwargs.selavi = dict(sharpness=2.0, iterations=3)
  common.without_correspondence(c, evaluator="clustering", best_metric="clustering_frame_nmi")
  if common.parse_arg(arg).tiny:
    c.model.update(num_heads=5, num_clusters=12)
  return c
