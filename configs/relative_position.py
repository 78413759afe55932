"""Relative position (Doersch, Gupta & Efros, "Unsupervised Visual Representation
Learning by Context Prediction", ICCV 2015): an image pretext baseline on the
frame tower alone (avjax/models/pretext.py).

From each frame's crop, the centre patch of a 3x3 grid and one of its 8
neighbours go through the same tower; their pooled features, concatenated,
through two layers say where the neighbour lies (losses.relpos_xent). The
paper's guards against its shortcuts are on: gaps between cells and a jitter of
each patch (edge continuity), colour dropping (chromatic aberration). Validation
is the frame linear probe on whole frames, beside random init.

Paper scale (the paper's patches are 96 px with 48 px gaps from larger images;
in a 224 px crop: 52 px patches, 24 px gaps, 7 px jitter):
  python -m avjax.main --config=configs/relative_position.py --workdir=/ckpt/relpos \\
      --config.data.dir=/data/prepared
CPU-sized run on the embedded dataset's upright-glyph splits:
  python -m avjax.main --config=configs/relative_position.py:tiny --workdir=/tmp/relpos
"""
from configs import common


def get_config(arg=None):
  c = common.base_config(model=dict(name="relative_position", patch=52, gap=24, jitter=7,
                                    colour="drop", hidden=512),
                         losses={"relpos_xent": 1.0}, arg=arg)
  del c.model["audio_widths"]  # frames only
  c.evals.linear_probe.modalities = "frame"
  c.evals.clustering.modalities = "frame"
  c = common.without_correspondence(c, evaluator="linear_probe",
                                    best_metric="linear_probe_frame_accuracy_mean")
  if common.parse_arg(arg).tiny:
    c.model.update(patch=16, gap=4, jitter=2, hidden=64)  # in the 64 px crop
    # The upright-glyph splits, as for rotation: the shapes' scenes have no
    # layout that tells one patch's place from another's (docs/methods.md).
    c.data.update(train_split="glyphs_train", eval_split="glyphs_validation")
    # Its steps are cheap (16 px patches): four times the others' in the same minutes.
    c.total_steps = 4800
    c.checkpoint.every = c.evals.linear_probe.every = 1200
  return c
