"""Odd-One-Out (Fernando, Bilen, Gavves & Gould, CVPR 2017): which of N
sub-sequences of a clip has its frames out of order? Each is encoded by the sum of
its consecutive frames' feature differences (the paper's fusion), and the N
encodings decide. A video pretext baseline on the frame tower alone
(avjax/models/pretext_video.py); validation is the frame linear probe on each
clip's middle frame, beside random init.

Paper scale (the paper's N = 6 sub-sequences of 4 frames, from 10 frames under a
1 s window of prepared data):
  python -m avjax.main --config=configs/odd_one_out.py --workdir=/ckpt/o3n \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded dataset's time-structured splits (4 sub-sequences of
3 frames, 16 stacks a batch):
  python -m avjax.main --config=configs/odd_one_out.py:tiny --workdir=/tmp/o3n
"""
from configs import common


def get_config(arg=None):
  c = common.frame_order_config("odd_one_out", arg, clips=6, clip_length=4)
  if common.parse_arg(arg).tiny:
    # Every sub-sequence's frames go through the tower: 6 x 4 per stack is 24
    # frames where the other video tasks take 3 or 8. 4 x 3 of 16 stacks keeps a
    # step near theirs.
    c.model.update(clips=4, clip_length=3)
    c.batch_size = 16
  return c
