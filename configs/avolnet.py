"""AVOL-Net ("Objects that Sound", ECCV 2018): correspondence by localisation (MIL).

Paper scale (set config.data.dir to prepared data):
  python -m avjax.main --config=configs/avolnet.py --workdir=/ckpt/avol \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset:
  python -m avjax.main --config=configs/avolnet.py:tiny --workdir=/tmp/avol
"""
from configs import common


def get_config(arg=None):
  return common.base_config(
      model=dict(name="avolnet", embed_dim=128, calibration="distance", calibration_scale=10.0),
      losses={"avc_sigmoid_xent": 1.0, "infonce": 1.0}, arg=arg)
