"""Shuffle & Learn (Misra, Zitnick & Hebert, ECCV 2016): is a triplet of frames in
temporal order? Five frames a < b < c < d < e of a stack give the positive (b, c,
d) and the negatives (b, a, d), (b, e, d); only the batch's higher-motion stacks
count, as the paper samples high-motion windows. A video pretext baseline on the
frame tower alone (avjax/models/pretext_video.py); validation is the frame linear
probe on each clip's middle frame, beside random init.

Paper scale (10 frames under a 1 s window of prepared data):
  python -m avjax.main --config=configs/shuffle_and_learn.py --workdir=/ckpt/shuffle \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded dataset's time-structured splits:
  python -m avjax.main --config=configs/shuffle_and_learn.py:tiny --workdir=/tmp/shuffle
"""
from configs import common


def get_config(arg=None):
  return common.frame_order_config("shuffle_and_learn", arg)
