"""AVE-Net ("Objects that Sound", ECCV 2018) on audio-visual correspondence.

Paper scale (set config.data.dir to prepared data):
  python -m avjax.main --config=configs/avenet.py --workdir=/ckpt/avenet \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset:
  python -m avjax.main --config=configs/avenet.py:tiny --workdir=/tmp/avenet
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(
      model=dict(name="avenet", embed_dim=128, calibration="distance", calibration_scale=5.0),
      losses={"avc_softmax_xent": 1.0, "infonce": 1.0}, arg=arg)
  return c
