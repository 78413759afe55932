"""Rotation prediction (Gidaris, Singh & Komodakis, ICLR 2018): an image pretext
baseline on the frame tower alone (avjax/models/pretext.py).

Every frame is shown at 0, 90, 180 and 270 degrees in the same batch and the
tower's max-pooled features, through one linear layer, say which (a 4-way
softmax, losses.rotation_xent). No sound is used: it is the baseline that says
what sound adds over a visual-only pretext task with the same backbone.
Validation is the frame linear probe beside the same network at random init.

Paper scale (the paper's batch: 128 images, each in its four rotations; SGD in
the paper, Adam here as for the audio-visual methods):
  python -m avjax.main --config=configs/rotation.py --workdir=/ckpt/rotation \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded dataset's upright-glyph splits:
  python -m avjax.main --config=configs/rotation.py:tiny --workdir=/tmp/rotation
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="rotation"), losses={"rotation_xent": 1.0}, arg=arg)
  del c.model["audio_widths"]  # frames only
  c.batch_size = 128
  c.evals.linear_probe.modalities = "frame"
  c.evals.clustering.modalities = "frame"
  if common.parse_arg(arg).tiny:
    c.batch_size = 32  # x4 rotations: the 128 frames of the other tiny configs' batches
    # The embedded dataset's upright-glyph splits: its shapes are mostly symmetric
    # under quarter or half turns, so which way is up is not in them
    # (docs/methods.md, baselines without sound).
    c.data.update(train_split="glyphs_train", eval_split="glyphs_validation")
  return common.without_correspondence(c, evaluator="linear_probe",
                                       best_metric="linear_probe_frame_accuracy_mean")
