"""SoundNet (Aytar, Vondrick, Torralba, "SoundNet: Learning Sound Representations
from Unlabeled Video", NeurIPS 2016; cvondrick/soundnet main_train.lua).

An 8-layer 1-D conv net on the raw waveform (avjax/models/soundnet.py) learns
to give, at each of its output steps, the class posteriors that frozen vision
teachers give the frame under that step: KL(teacher || student) per step and
per teacher (losses.soundnet_kl). A teacher is any avjax training workdir whose
model outputs frame class logits (config.teachers.<name>: its `workdir`, the
`output` key, the `checkpoint`); the heads of config.model.head_classes follow
config.teachers' order and must match their classes. Two chains:
  - a supervised frame classifier (configs/frame_classifier.py; labels train
    the teacher only, as the paper's ImageNet / Places labels did);
  - SeLaVi's frame cluster head (output "frame_cluster_logits"): fully
    self-supervised.
Validation is the audio linear probe on pool5 features averaged over time.

Paper scale: 22,050 Hz, 20 s windows, 4 label steps (prepare clips of at least
20 s at that rate; one frame per step goes to the teachers):
  python -m avjax.main --config=configs/frame_classifier.py --workdir=/ckpt/teacher \\
      --config.data.dir=/data/prepared --config.model.classifier_classes=<classes>
  python -m avjax.main --config=configs/soundnet.py --workdir=/ckpt/soundnet \\
      --config.data.dir=/data/prepared --config.teachers.objects.workdir=/ckpt/teacher \\
      --config.model.head_classes='(<classes>,)'
CPU-sized run on the embedded default dataset (1 s windows at 8 kHz, one step):
  python -m avjax.main --config=configs/frame_classifier.py:tiny --workdir=/tmp/teacher
  python -m avjax.main --config=configs/soundnet.py:tiny --workdir=/tmp/soundnet \\
      --config.teachers.objects.workdir=/tmp/teacher
"""
import ml_collections

from configs import common

TINY_WIDTHS = (16, 32, 64, 128, 128, 256, 256)


def get_config(arg=None):
  # The paper's layers (conv1-7: channels, kernel, stride, max-pool after) and
  # conv8 heads; head_classes: one per teacher.
  c = common.base_config(model=dict(
      name="soundnet", widths=(16, 32, 64, 128, 256, 512, 1024), kernels=(64, 32, 16, 8, 4, 4, 4),
      strides=(2, 2, 2, 2, 2, 2, 2), pools=(8, 8, 1, 1, 4, 1, 1), head_kernel=8, head_stride=2,
      head_classes=(1000,)), losses={"soundnet_kl": 1.0}, arg=arg)
  for key in ("vision_widths", "audio_widths"):
    del c.model[key]  # no VGG towers
  c.data.audio = "waveform"
  c.data.sample_rate = 22050
  c.data.spectrogram.seconds = 20.0
  c.data.frame_stack = 4   # = conv8's steps for 20 s (models.soundnet.output_steps)
  c.data.negative_fraction = 0.0
  c.data.examples_per_clip = 1
  # The teachers, in the order of config.model.head_classes. `output`: the model
  # output whose softmax is the target; `checkpoint`: "best", "latest" or a step.
  c.teachers = ml_collections.ConfigDict({"objects": dict(
      workdir="", output="frame_class_logits", checkpoint="best")})
  c.evals.linear_probe.modalities = "audio"
  # The paper's protocol: pool5 features of 1 s windows, a clip's prediction the
  # mean decision value over its windows.
  c.evals.linear_probe.update(window_seconds=1.0, window_hop=1.0)
  c.evals.clustering.modalities = "audio"
  if common.parse_arg(arg).tiny:
    c.data.sample_rate = 8000
    c.data.spectrogram.seconds = 1.0
    c.data.frame_stack = 0   # one step: the teacher sees the window's centre frame
    c.evals.linear_probe.window_hop = 0.2  # 1.4 s clips: 3 overlapping 1 s windows
    c.model.update(widths=TINY_WIDTHS, pools=(4, 4, 1, 1, 2, 1, 1), head_kernel=3, head_stride=1,
                   head_classes=(12,))
  return common.without_correspondence(c, evaluator="linear_probe",
                                       best_metric="linear_probe_audio_accuracy_mean")
