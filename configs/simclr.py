"""SimCLR (Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive
Learning of Visual Representations", ICML 2020): an image pretext baseline on the
frame tower alone (avjax/models/pretext.py).

Two views of each frame (random resized crop, flip, colour distortion, made in
the jitted step: avjax/augment.py), the tower, a 2-layer projection head, and
NT-Xent over the global batch with temperature (losses.nt_xent): each view's
negatives are the other 2B - 2 views of every device. Validation is the frame
linear probe on the tower's pooled features (before the head), beside random init.

Paper scale (crop scale 0.08-1, colour strength 1, temperature 0.1 at batch 256;
Adam here as for the audio-visual methods, where the paper has LARS at batch 4096):
  python -m avjax.main --config=configs/simclr.py --workdir=/ckpt/simclr \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset:
  python -m avjax.main --config=configs/simclr.py:tiny --workdir=/tmp/simclr
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="simclr", projection=(512, 128),
                                    crop_scale=(0.08, 1.0), colour_strength=1.0),
                         losses={"nt_xent": 1.0}, arg=arg)
  del c.model["audio_widths"]  # frames only
  c.loss_kwargs.nt_xent = dict(temperature=0.1)
  c.evals.linear_probe.modalities = "frame"
  c.evals.clustering.modalities = "frame"
  if common.parse_arg(arg).tiny:
    # 64 px crops: the smallest crops of the paper's range leave a few pixels.
    c.model.update(projection=(64, 32), crop_scale=(0.2, 1.0), colour_strength=0.5)
  return common.without_correspondence(c, evaluator="linear_probe",
                                       best_metric="linear_probe_frame_accuracy_mean")
