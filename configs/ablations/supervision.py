"""What does sound buy over a visual-only pretext task, with the same backbone and
budget? The same VGG frame tower trained under each image and video pretext task
(rotation, relative position, colourization, exemplar, SimCLR, MAE on its own
ViT; arrow of time, shuffle & learn, odd-one-out) and under L3-Net, AVE-Net and
AV InfoNCE, each for the same number of reader examples (the base config's steps
at batch 64), then probed on held-out test
clips by its frame features alone: the frame linear probe, k-means NMI and
image-image retrieval nDCG@30 on the tower's pooled features, beside the same
network at random init. Each method trains on its tiny config's own split (the
upright glyphs for rotation and relative position, the time-structured clips for
the video tasks) and all are probed on the same test splits: the shapes' and,
on the embedded dataset, the glyphs'.

  avjax-sweep --config=configs/ablations/supervision.py:tiny --workdir=workdirs/sweep_supervision
On a user's data: add --config.data.dir=/data/prepared (and its split names).
"""
from avjax import hyper
from configs import (arrow_of_time, avcontrastive, avenet, colourization, exemplar, l3, mae,
                     odd_one_out, relative_position, rotation, shuffle_and_learn, simclr)

get_config = avenet.get_config  # the points override AVE-Net's tiny / paper config

METHODS = {"rotation": rotation, "relative_position": relative_position,
           "colourization": colourization, "exemplar": exemplar, "simclr": simclr, "mae": mae,
           "arrow_of_time": arrow_of_time, "shuffle_and_learn": shuffle_and_learn,
           "odd_one_out": odd_one_out, "l3": l3, "avenet": avenet, "avcontrastive": avcontrastive}
# Whole sections each method defines for itself; elsewhere only the leaves it changes.
WHOLE = ("model", "losses", "loss_kwargs")
LEAVES = ("data", "checkpoint", "evals", "optimizer", "schedule")
BATCH = 64  # reader examples per step, the same for every method


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def method_overrides(module, arg) -> dict:
  """The overrides that turn the base config into `module`'s: its whole model and
  losses, and every data, checkpoint and evaluation leaf it sets differently."""
  mine, base = module.get_config(arg).to_dict(), get_config(arg).to_dict()
  out = {key: mine[key] for key in WHOLE}
  for section in LEAVES:
    theirs = _flat(base[section], f"{section}.")
    out.update({k: v for k, v in _flat(mine[section], f"{section}.").items()
                if theirs.get(k) != v})
  out["batch_size"] = BATCH
  out["total_steps"] = base["total_steps"]  # the same examples for every method
  out["checkpoint.every"] = base["checkpoint"]["every"]
  # The sweep probes the last checkpoint on test itself; periodic validation
  # probes would only add to every run's time, not to its result.
  out.update({f"evals.{name}.every": 0 for name in base["evals"]})
  return out


# The sweep evaluates random init as a run of its own, so the probe need not
# fit a second one beside the trained weights.
FRAME_PROBES = {"evals.linear_probe.modalities": "frame", "evals.clustering.modalities": "frame",
                "evals.retrieval.features": "features", "evals.linear_probe.random_init": False}


def _test_splits(arg) -> list[tuple[str, str]]:
  """(evaluation name, split): the test split, and on the embedded dataset also
  its upright-glyph test split (where rotation and relative position train)."""
  out = [("test", "test")]
  if "glyphs_train" in (get_config(arg).data.train_split,
                        rotation.get_config(arg).data.train_split):
    out.append(("glyphs", "glyphs_test"))
  return out


def get_sweep(arg=None):
  return hyper.Sweep(
      points=hyper.points(**{name: method_overrides(m, arg) for name, m in METHODS.items()}),
      seeds=3,
      evaluations=[hyper.Evaluation(name, split=split,
                                    evals=("linear_probe", "clustering", "retrieval"),
                                    overrides=FRAME_PROBES)
                   for name, split in _test_splits(arg)],
      headline=tuple(f"{name}/{metric}" for name, _ in _test_splits(arg)
                     for metric in ("linear_probe_frame_accuracy_mean", "clustering_frame_nmi",
                                    "retrieval_im_im_ndcg@30")),
      checkpoint="latest")
