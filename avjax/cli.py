"""What the command-line entry points share: flag parsing that reports a bad
config in one line, user errors said in one line, and keeping TensorFlow off
the accelerators."""
from __future__ import annotations

import functools
import json
import os
import sys

from absl import flags, logging

_VERBOSE = flags.DEFINE_bool("verbose", False, "on an error, show the traceback "
                             "(or set AVJAX_VERBOSE=1)")


def verbose() -> bool:
  return os.environ.get("AVJAX_VERBOSE", "") not in ("", "0") or (
      flags.FLAGS.is_parsed() and _VERBOSE.value)


def one_line(e: BaseException) -> str:
  """An exception as one line: its message with whitespace folded, TensorFlow's
  graph-node suffixes dropped."""
  text = str(getattr(e, "message", "") or e)
  if isinstance(e, KeyError) and e.args:
    text = str(e.args[0])
  return " ".join(text.split("[[")[0].split()) or type(e).__name__


# What a user can cause (bad paths, values, data, a busy workdir): said in one
# line. Anything else is a bug, also said in one line but with its type.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, KeyError)


def with_one_line_errors(name: str, main):
  """Wraps an entry point: an exception exits non-zero with `name: message` on one
  line (--verbose or AVJAX_VERBOSE=1 shows the traceback instead)."""
  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except SystemExit:
      raise
    except KeyboardInterrupt:
      print(f"{name}: interrupted", file=sys.stderr)
      raise SystemExit(130) from None
    except Exception as e:
      if verbose():
        raise
      user = isinstance(e, USER_ERRORS) or type(e).__module__.startswith(
          ("avjax", "data_pipelines")) or _is_tf_data_error(e)
      kind = "" if user else f"unexpected {type(e).__name__}: "
      sys.exit(f"{name}: {kind}{one_line(e)}" + ("" if user else " (--verbose for the traceback)"))
  return wrapped


def run_argparse(name: str, parse_args, main, argv=None) -> None:
  """Runs an argparse entry point (`main(parse_args(argv))`) with user errors said
  in one line; its `--verbose` flag shows the traceback instead."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  keep_keras_out()
  args = parse_args(argv)
  if args.verbose:
    os.environ["AVJAX_VERBOSE"] = "1"
  with_one_line_errors(name, main)(args)


def video_command_parser(description: str, *, video: str, workdir: str, output: str):
  """The flags every command that runs a trained workdir on one video shares (the
  video, --workdir, --output, --checkpoint, --verbose)."""
  import argparse
  p = argparse.ArgumentParser(description=description)
  p.add_argument("video", help=video)
  p.add_argument("--workdir", required=True, help=workdir)
  p.add_argument("--output", required=True, help=output)
  p.add_argument("--checkpoint", default="best", help="best, latest, or a step")
  p.add_argument("--verbose", action="store_true", help="on an error, show the traceback")
  return p


def parse_positive(parser, argv, names):
  """parser.parse_args(argv), with each of the flags `names` required positive
  (argparse's one-line usage error otherwise)."""
  args = parser.parse_args(argv)
  for name in names:
    if getattr(args, name) <= 0:
      parser.error(f"--{name} must be positive, got {getattr(args, name)}")
  return args


def _is_tf_data_error(e: BaseException) -> bool:
  return type(e).__module__.startswith("tensorflow") and hasattr(e, "message")


def run(name: str, main, pass_through=None) -> None:
  """Runs an absl entry point with the config flag's errors and user errors
  said in one line (`name: message`). Where `pass_through(argv)` is true, flags
  absl does not know reach main's argv (another library's options) instead of
  being an error; main must then check them."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  keep_keras_out()
  from absl import app

  def parser(argv):
    if pass_through is not None and pass_through(argv):
      return parse_flags(argv, known_only=True)
    return parse_flags(argv)

  app.run(with_one_line_errors(name, main), flags_parser=parser)


def keep_keras_out():
  """Importing TensorFlow imports Keras, and with it scikit-learn, only to fill
  a SavedModel optimiser registry: 3.5 s of TensorFlow's 13 s import on the AVX2
  VM, in every command. The commands use no Keras, so they do not load it (a
  process that imported Keras already keeps it)."""
  sys.modules.setdefault("keras", None)


def hide_accelerators_from_tf():
  """tf.data runs on the CPU; without this TF would reserve GPU memory JAX needs."""
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")


def quiet_logging():
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)


def parse_flags(argv, known_only: bool = False):
  """absl flag parsing, with config errors said in one line instead of a traceback."""
  try:
    return flags.FLAGS(argv, known_only=known_only)
  except (AttributeError, KeyError, ValueError, TypeError, OSError, ImportError,
          flags.Error) as e:
    sys.exit(f"config error: {config_error_detail(e, argv)}")


class ConfigFileError(ValueError):
  pass


def loaded_config(holder):
  """The --config flag's config, or ConfigFileError naming the file and why it
  could not be loaded (ml_collections defers that error to the first use)."""
  value = holder.value
  try:
    value.get("seed")  # an unloadable file gives an object that raises when used
  except OSError as e:
    arg = flags.FLAGS[holder.name].config_filename
    path = arg.split(":")[0]
    cause = e.__cause__ or e
    lines = [l.strip() for l in str(cause).splitlines() if l.strip()]
    why = "no such file" if not os.path.exists(path) else (lines[-1] if lines else type(cause).__name__)
    raise ConfigFileError(f"--config={arg}: {why}") from None
  return value


def config_error_detail(e: BaseException, argv) -> str:
  """One line for what went wrong loading --config and its overrides."""
  overrides = [a for a in argv[1:] if a.startswith("--config.")]
  inner = e
  while isinstance(inner, AttributeError) and inner.args and isinstance(inner.args[0], KeyError):
    inner = inner.args[0]
  if isinstance(inner, KeyError) and inner.args:  # a key the locked config does not have
    first, *hint = str(inner.args[0]).replace("\\n", "\n").splitlines()
    key = first.strip("'\"\\ ")
    named = [o.split("=")[0] for o in overrides if o.split("=")[0].endswith("." + key)]
    where = named[0] if named else f"config key {key!r}"
    hint = " ".join(h.strip(" '\"\\") for h in hint if h.strip(" '\"\\"))
    return f"{where}: no such key in the config" + (f" ({hint})" if hint else "")
  text = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\'", "'")
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  # A config file that raised: its last line is the exception; else keep it all.
  detail = lines[-1] if "Traceback" in text else " ".join(lines)
  return detail + (f" (overrides: {' '.join(overrides)})" if overrides else "")


def load_workdir_config(workdir: str):
  """The config a training run saved in its workdir (config.json), as a ConfigDict."""
  import ml_collections
  from data_pipelines import fs
  path = fs.join(workdir, "config.json")
  if not fs.exists(path):
    raise FileNotFoundError(f"{path}: not found; is {workdir!r} a training workdir?")
  return ml_collections.ConfigDict(json.loads(fs.read_text(path)))


def print_table(title: str, metrics: dict) -> None:
  width = max([len(k) for k in metrics] + [6])
  print(title)
  for k, v in metrics.items():
    print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
