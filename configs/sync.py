"""Audio-visual synchronisation (Owens & Efros, "Audio-Visual Scene Analysis with
Self-Supervised Multisensory Features", ECCV 2018; andrewowens/multisensory
shift_params.py / shift_net.py): is the sound in sync with the frames?

A stack of frames and the raw waveform under it (mu-law compressed) are fused
early in a 3-D conv net (avjax/models/sync.py). Negatives are the clip's own
audio shifted by at least config.data.min_shift seconds (negatives="shifted"),
so the network must find the motion that goes with the sound; the class
activation map of its logit layer localises the sound. Validation is sync
accuracy (the AVC evaluator on aligned vs shifted audio); `--evals=localisation`
on a boxed sync split scores the map.

Paper scale: 4.2 s of frames at 29.97 fps (125 frames, 224 px crops from 256) and
of audio at 21 kHz, shifts of 2.2 s or more within 10 s clips:
  python -m avjax.main --config=configs/sync.py --workdir=/ckpt/sync \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded dataset's time-structured splits (3 s clips, 1 s
windows of 8 frames, shifts of 0.4 s or more; the logit is the mean of the CAM's
top 10% cells, not of all of them):
  python -m avjax.main --config=configs/sync.py:tiny --workdir=/tmp/sync
Own footage, split by time (avjax-prepare --splits=train=...,validation=...), from
that run's weights:
  python -m avjax.main --config=configs/sync.py:tiny,init=/tmp/sync --workdir=/tmp/own \
      --config.data.dir=/data/prepared
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(
      name="sync", stem_width=64, stem_kernel=(5, 7, 7), stem_strides=(2, 2, 2),
      video_widths=(64, 64), video_strides=((1, 1, 1), (2, 2, 2)),
      sound_stem_width=64, sound_widths=(128, 128, 256), sound_fuse_width=128,
      merge_hidden=512, merge_width=128, fused_widths=(128, 128, 256, 256, 512, 512),
      # conv5_1 keeps its spatial resolution, as the paper's CAM model does.
      fused_strides=((1, 1, 1), (1, 1, 1), (2, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1)),
      # The logit from the time-averaged CAM (maths.pool_map): "mean", the paper's
      # global average pooling, or "topk" / "lse" / "max".
      pooling="mean", pooling_temperature=1.0, pooling_topk=0.1),
      losses={"avc_sigmoid_xent": 1.0}, arg=arg)
  for key in ("vision_widths", "audio_widths"):  # its own video and sound nets
    del c.model[key]
  d = c.data
  # both_examples: each 125-frame stack decoded serves its in-sync and its shifted
  # example, as in the paper's reader (shift_params.py); a batch of B holds B / 2 clips.
  d.update(audio="waveform", negatives="shifted", min_shift=2.2, negative_fraction=0.5,
           fps=29.97, sample_rate=21000, frame_stack=125, examples_per_clip=1,
           both_examples=True)
  d.spectrogram.seconds = 4.2
  c.optimizer.update(grad_clip_norm=5.0)
  c.checkpoint.best_metric = "avc_accuracy"
  args = common.parse_arg(arg)
  if args.tiny:
    # One example per clip: on a CPU the step, not the decoding of 8 small frames,
    # bounds the rate, and 32 clips a batch see more scenes than 16 twice.
    d.update(train_split="sync_train", eval_split="sync_validation", fps=25.0, sample_rate=8000,
             frame_stack=8, min_shift=0.4, both_examples=False)
    d.spectrogram.seconds = 1.0
    c.batch_size = 32
    c.model.update(
        stem_width=16, stem_kernel=(1, 5, 5), stem_strides=(1, 2, 2),
        video_widths=(16,), video_strides=((1, 2, 2),),
        sound_stem_width=16, sound_widths=(32, 32), sound_fuse_width=16,
        merge_hidden=64, merge_width=32, fused_widths=(32,), fused_strides=((2, 1, 1),),
        # Top-k pooling of the 8x8 CAM: crowded pointing and sync accuracy rose over
        # the mean's on two seeds (docs/methods.md, synchronisation).
        pooling="topk")
  if args.get("init"):
    # Own footage (`:tiny,init=WORKDIR`): the whole network starts from a sync run on
    # other data (the embedded scenes), and the data's own splits are "train" and
    # "validation" (avjax-prepare --splits). From scratch, the tiny network stayed
    # near chance on the real-sound development set (docs/methods.md).
    # 600 steps scored higher on held-out time than 1,200 on two seeds.
    c.init_from.update(workdir=args.init, modules="*")
    d.update(train_split="train", eval_split="validation")
    c.total_steps = 600
  return c
