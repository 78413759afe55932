"""Masked autoencoders (He et al., "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022): an image pretext baseline on a small ViT
(avjax/models/mae.py, avjax/models/vit.py).

The encoder sees 25% of a frame's patches; a light decoder reconstructs the
hidden 75% (pixels normalised per patch, loss on the hidden patches only). The
probe reads the encoder's mean-pooled tokens of the whole frame, beside random
init. Unlike the other baselines its backbone is a ViT, not the VGG tower.

Paper scale (ViT-B/16 encoder, 8-block 512-wide decoder; AdamW as in the paper):
  python -m avjax.main --config=configs/mae.py --workdir=/ckpt/mae \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded default dataset (8 px patches of the 64 px crop, a
4-block 128-wide encoder):
  python -m avjax.main --config=configs/mae.py:tiny --workdir=/tmp/mae
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="mae", patch=16, width=768, depth=12, num_heads=12,
                                    mlp_dim=3072, decoder_width=512, decoder_depth=8,
                                    decoder_heads=16, mask_ratio=0.75, norm_pixels=True),
                         losses={"mae_pixels": 1.0}, arg=arg)
  for key in ("vision_widths", "audio_widths"):  # a ViT of its own
    del c.model[key]
  c.optimizer.update(name="adamw", weight_decay=0.05, b2=0.95)
  c.evals.linear_probe.modalities = "frame"
  c.evals.clustering.modalities = "frame"
  if common.parse_arg(arg).tiny:
    c.model.update(patch=8, width=128, depth=4, num_heads=4, mlp_dim=512, decoder_width=64,
                   decoder_depth=2, decoder_heads=4)
    # Twice the other tiny configs' peak: at theirs the probe of the last
    # checkpoint falls back to random init's (docs/methods.md, MAE).
    c.optimizer.lr = 4e-3
  return common.without_correspondence(c, evaluator="linear_probe",
                                       best_metric="linear_probe_frame_accuracy_mean")
