"""What the command-line entry points share: flag parsing that reports a bad
config in one line, and keeping TensorFlow off the accelerators."""
from __future__ import annotations

import json
import os
import sys

from absl import flags, logging


def hide_accelerators_from_tf():
  """tf.data runs on the CPU; without this TF would reserve GPU memory JAX needs."""
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")


def quiet_logging():
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)


def parse_flags(argv):
  """absl flag parsing, with config errors said in one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, ValueError, TypeError, flags.Error) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    text = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\'", "'")
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    # A config file that raised: its last line is the exception; else keep it all.
    detail = lines[-1] if "Traceback" in text else " ".join(lines)
    sys.exit(f"config error: {detail}" + (f" (overrides: {' '.join(overrides)})" if overrides else ""))


def load_workdir_config(workdir: str):
  """The config a training run saved in its workdir (config.json), as a ConfigDict."""
  import ml_collections
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: not found; is {workdir!r} a training workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def print_table(title: str, metrics: dict) -> None:
  width = max([len(k) for k in metrics] + [6])
  print(title)
  for k, v in metrics.items():
    print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
