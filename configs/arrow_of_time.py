"""Arrow of time (Pickup et al., CVPR 2014; Wei, Lim, Zisserman & Freeman, CVPR
2018): is a stack of frames played forwards or backwards? A video pretext
baseline on the frame tower alone (avjax/models/pretext_video.py); validation is
the frame linear probe on each clip's middle frame, beside random init.

Paper scale (10 frames under a 1 s window of prepared data):
  python -m avjax.main --config=configs/arrow_of_time.py --workdir=/ckpt/arrow \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded dataset's time-structured splits:
  python -m avjax.main --config=configs/arrow_of_time.py:tiny --workdir=/tmp/arrow
"""
from configs import common


def get_config(arg=None):
  return common.frame_order_config("arrow_of_time", arg)
