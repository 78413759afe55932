"""Ambient sound provides supervision (Owens, Wu, McDermott, Freeman, Torralba,
ECCV 2016): a frame-only network predicts the sound statistics of its clip.

Each clip's sound-texture statistics (data_pipelines/texture.py; or MFCC
mean/std, data.sound_features="mfcc") are clustered by k-means on the training
split (data.sound_k = 30 clusters, the paper's), and the network predicts the
frame's cluster with a softmax; data.sound_targets="bits" with the
sound_bits_xent loss predicts the paper's binary code (signs of the top 30
principal projections) instead. The targets are written beside the shards by
`avjax-sound-clusters` (made automatically for the embedded default dataset).
Validation is the frame linear probe: the features, not the sound prediction,
are the product.

Paper scale (set config.data.dir to prepared data, then make the targets):
  avjax-sound-clusters --data=/data/prepared --split=train --k=30
  avjax-sound-clusters --data=/data/prepared --split=validation
  python -m avjax.main --config=configs/ambient.py --workdir=/ckpt/ambient \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset:
  python -m avjax.main --config=configs/ambient.py:tiny --workdir=/tmp/ambient
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="ambient", num_targets=30, hidden=128),
                         losses={"sound_cluster_xent": 1.0}, arg=arg)
  c.data.sound_targets = "clusters"  # or "bits" (with losses sound_bits_xent)
  c.data.sound_k = 30                # clusters, or bits of the binary code
  c.data.sound_features = "texture"  # or "mfcc"
  c.evals.linear_probe.modalities = "frame"
  c.evals.linear_probe.random_init = False  # `avjax-evaluate --random_init` gives the baseline
  c.evals.clustering.modalities = "frame"
  return common.without_correspondence(c, evaluator="linear_probe",
                                       best_metric="linear_probe_frame_accuracy_mean")
