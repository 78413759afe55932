"""Audio-visual source separation by mix-and-separate (Zhao, Gan, Rouditchenko,
Vondrick, McDermott & Torralba, "The Sound of Pixels", ECCV 2018;
avjax/models/separation.py).

The clips of a batch are mixed in pairs in the step, and a U-Net on the
mixture's log-|STFT|, conditioned by each clip's frame, predicts the binary mask
of that clip's sound (losses.separation_bce). No labels, no stems. Validation is
the separation evaluator (avjax/evaluators/separation.py): held-out clips mixed
in pairs, SI-SDR improvement over the mixture, and mir_eval's SDR / SIR / SAR.

Paper scale (11,025 Hz, 65,535-sample windows, a 1022-point STFT with hop 256:
512 x 256 bins; a 7-level U-Net, K = 32, binary masks, weighted BCE). Not the
paper's: the VGG frame tower on one frame (the paper: ResNet-18 dilated over 3
frames), linear frequency bins (the paper warps to 256 log-frequency bins),
and Adam at one rate (the paper: SGD, 1e-3 for the U-Net and synthesiser, 1e-4
for the frame net).
  python -m avjax.main --config=configs/separation.py --workdir=/ckpt/separation \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset (8 kHz, 0.5 s windows, 128 x 32 bins),
its frame tower started from a tiny AV InfoNCE run's:
  python -m avjax.main --config=configs/avcontrastive.py:tiny --workdir=/tmp/avcontrastive
  python -m avjax.main --config=configs/separation.py:tiny --workdir=/tmp/separation \\
      --config.init_from.workdir=/tmp/avcontrastive
  python -m avjax.evaluate --workdir=/tmp/separation --evals=separation \\
      --config.evals.separation.split=test
  avjax-separate --workdir=/tmp/separation video.mp4 --output=/tmp/separated
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="separation", unet_widths=(64, 128, 256, 512, 512, 512, 512),
                                    channels=32, n_fft=1022, hop=256, sources=2,
                                    condition="synthesiser"),
                         losses={"separation_bce": 1.0}, arg=arg)
  del c.model["audio_widths"]  # the audio side is the U-Net
  c.data.audio = "waveform"
  c.data.sample_rate = 11025
  c.data.spectrogram.seconds = 65535 / 11025
  c.batch_size = 64
  c.evals.linear_probe.modalities = "frame"
  c.evals.clustering.modalities = "frame"
  if common.parse_arg(arg).tiny:
    # What measured best at equal CPU time (docs/methods.md): half-second windows
    # and batch 32 (four times the updates of 1 s at batch 64), a small U-Net
    # with K = 8, and the frame tower warm-started from an audio-visual run
    # (config.init_from; the paper starts from ImageNet weights).
    c.data.sample_rate = 8000
    c.data.spectrogram.seconds = 0.5
    # 254 points: 128 bins, as the paper's 1022 give 512; hop 128: 32 frames.
    c.model.update(unet_widths=(8, 16, 32, 64, 64), channels=8, n_fft=254, hop=128)
    c.batch_size = 32
    c.total_steps = 3000
    c.checkpoint.every = 1000
  c = common.without_correspondence(c, evaluator="separation", best_metric="separation_si_sdri")
  c.evals.separation.every = c.checkpoint.every
  return c
