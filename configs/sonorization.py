"""Sonorization: the sound predicted from silent video (Owens et al., "Visually
Indicated Sounds", CVPR 2016; avjax/models/sonorization.py).

Per frame of a stack, an RGB stream and a spacetime stream (grey previous, current
and next frames) feed an LSTM that regresses 3 steps of the window's cochleagram
(40 ERB bands plus low and high, envelopes ^0.3) under the paper's robust loss
log(eps + ||s - s_hat||^2). No labels. Validation is the sonorization evaluator
(avjax/evaluators/sonorization.py): material and action probes on the predicted
sound beside the real sound's, and the onset error.

Paper scale (2 s windows at 29.97 fps: 60 frames, 180 cochleagram steps at 90 Hz;
22,050 Hz audio; an LSTM of 256). Not the paper's: VGG streams trained from scratch
(the paper: AlexNets from ImageNet), no PCA of the features.
  python -m avjax.main --config=configs/sonorization.py --workdir=/ckpt/sonorization \\
      --config.data.dir=/data/prepared
Speech from silent video (Ephrat et al. 2017) is the log-mel variant on face crops:
  --config=configs/sonorization.py:target=log_mel
CPU-sized run on the embedded dataset's struck and scraped objects (hits_*: 2 s
clips, 1 s windows of 25 frames at 25 fps, 32 px, 8 kHz):
  python -m avjax.main --config=configs/sonorization.py:tiny --workdir=/tmp/sonorization
  python -m avjax.evaluate --config=configs/sonorization.py:tiny --workdir=/tmp/sonorization \\
      --split=hits_test --evals=sonorization
  avjax-sonorize --workdir=/tmp/sonorization video.mp4 --output=/tmp/predicted.wav
"""
from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg)
  c = common.base_config(model=dict(
      name="sonorization", spacetime_widths=common.PAPER_WIDTHS, lstm_size=256,
      steps_per_frame=3, target=a.get("target", "cochleagram"), n_mels=64),
      losses={"sonorization_robust": 1.0}, arg=arg)
  del c.model["audio_widths"]  # the sound is the target, not an input
  d = c.data
  d.update(audio="waveform", fps=29.97, sample_rate=22050, frame_stack=60, examples_per_clip=4)
  d.spectrogram.seconds = 2.0
  # The target is computed from the reader's waveform at the data's rate: one value.
  c.model.sample_rate = d.get_ref("sample_rate")
  c.batch_size = 64
  c.optimizer.grad_clip_norm = 5.0
  if a.tiny:
    d.update(train_split="hits_train", eval_split="hits_validation", fps=25.0,
             sample_rate=8000, frame_stack=25)
    d.spectrogram.seconds = 1.0
    # 32 px crops (of frames prepared at 40): the slab and the stick span much of
    # the frame, and each example runs both streams over 25 frames.
    d.resize, d.crop = 40, 32
    c.model.update(vision_widths=(16, 32, 64), spacetime_widths=(16, 32, 64), lstm_size=64)
    c.batch_size = 16
    c.total_steps = 1200
  c = common.without_correspondence(c, evaluator="sonorization",
                                    best_metric="sonorization_material_accuracy")
  c.evals.sonorization.every = c.checkpoint.every
  return c
