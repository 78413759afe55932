"""L3-Net ("Look, Listen and Learn", ICCV 2017) on audio-visual correspondence.

Paper scale (set config.data.dir to prepared data):
  python -m avjax.main --config=configs/l3.py --workdir=/ckpt/l3 --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset:
  python -m avjax.main --config=configs/l3.py:tiny --workdir=/tmp/l3
"""
from configs import common


def get_config(arg=None):
  # contrastive_dim + infonce: the plateau fix (README); set both to 0 for the
  # paper's pure AVC objective.
  return common.base_config(model=dict(name="l3", fusion_hidden=128, contrastive_dim=128),
                            losses={"avc_softmax_xent": 1.0, "infonce": 1.0}, arg=arg)
