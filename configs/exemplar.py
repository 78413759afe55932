"""Exemplar networks (Dosovitskiy, Springenberg, Riedmiller & Brox, "Discriminative
Unsupervised Feature Learning with Convolutional Neural Networks", NeurIPS 2014),
in the lecture's form: a surrogate-class classifier over a sampled set of
exemplars. An image pretext baseline on the frame tower alone
(avjax/models/pretext.py).

The first `num_exemplars` patches the training stream shows fill a bank; each
step transforms exemplars drawn from it heavily (random resized crop, flip,
colour distortion) and the tower, through one linear layer, says which exemplar
each came from. Validation is the frame linear probe on whole frames, beside
random init.

Paper scale (8,000 exemplars of 32 px):
  python -m avjax.main --config=configs/exemplar.py --workdir=/ckpt/exemplar \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset (1,000 exemplars of 32 px from 64 px crops):
  python -m avjax.main --config=configs/exemplar.py:tiny --workdir=/tmp/exemplar
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="exemplar", num_exemplars=8000, patch=32,
                                    crop_scale=(0.3, 1.0), colour_strength=1.0),
                         losses={"exemplar_xent": 1.0}, arg=arg)
  del c.model["audio_widths"]  # frames only
  c.evals.linear_probe.modalities = "frame"
  c.evals.clustering.modalities = "frame"
  if common.parse_arg(arg).tiny:
    c.model.update(num_exemplars=1000, colour_strength=0.5)
  return common.without_correspondence(c, evaluator="linear_probe",
                                       best_metric="linear_probe_frame_accuracy_mean")
