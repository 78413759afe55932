"""A supervised frame classifier: SoundNet's teacher (configs/soundnet.py).

The VGG vision subnetwork, max-pooled, and a linear layer trained with softmax
cross-entropy on the clips' class labels (losses.frame_class_xent), as the
SoundNet paper's teachers were ImageNet and Places CNNs: labels train the
teacher only. Validation is the frame linear probe; `frame_class_logits` is
what a SoundNet config distils (config.teachers.<name>.output).

Paper scale (prepared data with labels; set the classifier to its classes):
  python -m avjax.main --config=configs/frame_classifier.py --workdir=/ckpt/teacher \\
      --config.data.dir=/data/prepared --config.model.classifier_classes=<classes>
CPU-sized run on the embedded default dataset (12 classes):
  python -m avjax.main --config=configs/frame_classifier.py:tiny --workdir=/tmp/teacher
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="frame_classifier", classifier_classes=0),
                         losses={"frame_class_xent": 1.0}, arg=arg)
  c.evals.linear_probe.modalities = "frame"
  c.evals.linear_probe.random_init = False
  c.evals.clustering.modalities = "frame"
  del c.model["audio_widths"]  # frames only
  if common.parse_arg(arg).tiny:
    c.model.classifier_classes = 12  # the embedded dataset's classes
  return common.without_correspondence(c, evaluator="linear_probe",
                                       best_metric="linear_probe_frame_accuracy_mean")
