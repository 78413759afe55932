"""Colourization (Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016):
an image pretext baseline on the frame tower alone (avjax/models/pretext.py).

The tower sees the frame's lightness (CIE L) and predicts, at each location of its
last feature map, a distribution over the quantised ab bins of the frame's colour
there (avjax/colour.py), soft-encoded over the 5 nearest bins, with class
rebalancing by the running bin distribution (losses.colour_xent). Validation is
the frame linear probe on the tower's pooled features of the grey frame, beside
random init.

Paper scale:
  python -m avjax.main --config=configs/colourization.py --workdir=/ckpt/colour \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset (its objects' hues follow their class):
  python -m avjax.main --config=configs/colourization.py:tiny --workdir=/tmp/colour
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="colourization", prior_momentum=0.99, rebalance=0.5),
                         losses={"colour_xent": 1.0}, arg=arg)
  del c.model["audio_widths"]  # frames only
  c.data.colour_jitter = 0.0  # the colours are the targets
  c.evals.linear_probe.modalities = "frame"
  c.evals.clustering.modalities = "frame"
  return common.without_correspondence(c, evaluator="linear_probe",
                                       best_metric="linear_probe_frame_accuracy_mean")
