"""Shared fixtures: a small embedded-style dataset, built once per test session."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests and the processes they start compile the same tiny models again and
# again: one persistent XLA cache for the session (keyed by the HLO, so a
# changed program never hits a stale entry) saves most of that time.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"avjax-tests-xla-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import pytest  # noqa: E402

from data_pipelines import ingest, spectrogram, synthetic  # noqa: E402

SAMPLE_RATE = 8000
FRAME_SIZE = 40
TRAIN = synthetic.SplitSpec("train", 24, seed=11)
VAL = synthetic.SplitSpec("validation", 10, seed=12)
TINY_SPECTROGRAM = spectrogram.SpectrogramSpec(sample_rate=SAMPLE_RATE, win_length=256,
                                               hop_length=160, n_fft=256)


# prepare's settings for the fixtures' splits: as the tiny configs read them (8 kHz,
# 40 px frames, and their |STFT| framing, so that their readers slice stored |STFT|).
FIXTURE_SETTINGS = ingest.PrepareSettings(sample_rate=SAMPLE_RATE, frame_size=FRAME_SIZE,
                                          spectrogram=TINY_SPECTROGRAM)


def generate_and_prepare(split: synthetic.SplitSpec, videos, prepared, *,
                         files_per_shard: int = 6) -> None:
  """`split`'s clips generated into folder `videos`, prepared into `prepared`."""
  synthetic.generate_split(split, str(videos), workers=2)
  ingest.prepare(str(videos), str(prepared), labels_csv=str(videos / "labels.csv"),
                 settings=FIXTURE_SETTINGS, files_per_shard=files_per_shard, workers=2,
                 quiet=True)


@pytest.fixture(scope="session")
def videos_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("videos")
  for split in (TRAIN, VAL):
    synthetic.generate_split(split, str(out / split.name), workers=2)
  return out


@pytest.fixture(scope="session")
def data_dir(videos_dir, tmp_path_factory):
  """Prepared splits (train, validation) at 8 kHz with 40 px frames, as the tiny configs read."""
  out = tmp_path_factory.mktemp("prepared")
  for split in (TRAIN, VAL):
    src = videos_dir / split.name
    ingest.prepare(str(src), str(out / split.name), labels_csv=str(src / "labels.csv"),
                   boxes_csv=str(src / "boxes.csv"), settings=FIXTURE_SETTINGS,
                   files_per_shard=6, workers=2, quiet=True)
  return out


def tiny_config(name: str, data_dir, *, train_split: str = "", **overrides):
  """The config's tiny variant, shrunk further so a test step takes milliseconds;
  `train_split`: the fixture's split for configs that train on another (sync)."""
  import importlib
  config = importlib.import_module(f"configs.{name}").get_config("tiny")
  config.data.dir = str(data_dir)
  if train_split:
    config.data.train_split, config.data.eval_split = train_split, "validation"
  config.data.resize, config.data.crop = FRAME_SIZE, 32
  for key in ("vision_widths", "audio_widths"):  # the VGG towers, where the model has them
    if key in config.model:
      config.model[key] = (4, 8, 8, 8)
  config.batch_size = 8
  config.evals.avc.batch_size = 8
  config.progress_bar = False
  config.update(overrides)
  return config


def one_update(config, batch: dict):
  """One jitted update of `config`'s model from its step-0 state (as the trainer
  makes them) on `batch` -> (the state before, the state after, the metrics)."""
  import jax
  from avjax import models, predict, train
  model = models.build(config.model)
  schedule = train.make_schedule(config)
  tx = train.make_optimizer(config, schedule)
  init = train.make_init_fn(predict.model_fns(model, config.data).init, tx)
  state = predict.jit_once(init)(jax.random.PRNGKey(0))
  new, metrics = jax.jit(train.make_update_fn(model, tx, schedule, config))(state, batch)
  return state, new, metrics


def init_with_output(model, rng, *inputs):
  """model.init_with_output in inference mode, compiled as one program (run
  eagerly, every op of the init compiles apart)."""
  from avjax import predict
  return predict.jit_once(lambda r, *x: model.init_with_output(r, *x, False))(rng, *inputs)


def run_python(args, env_overrides=None, **kw):
  """Runs `python ARGS` in a fresh process with the repository importable (and
  `env_overrides` set in its environment)."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **(env_overrides or {}))
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                        timeout=600, **kw)
