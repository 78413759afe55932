"""A config's values checked when it is built, before any data is touched.

Locked ConfigDicts already refuse keys that do not exist; this refuses values
that cannot work (a batch of 0, a negative learning rate, a loss or model that
does not exist), each in one line naming the key.
"""
from __future__ import annotations

from avjax import evaluators, losses, models


class ConfigError(ValueError):
  pass


def _require(ok: bool, key: str, value, must: str) -> None:
  if not ok:
    raise ConfigError(f"config.{key}={value!r}: {must}")


def check_data(config) -> None:
  from avjax import input as input_lib
  d = config.data
  _require(d.fps > 0, "data.fps", d.fps, "must be positive")
  _require(d.sample_rate > 0, "data.sample_rate", d.sample_rate, "must be positive")
  _require(0 < d.crop <= d.resize, "data.crop", d.crop,
           f"must be positive and at most config.data.resize={d.resize}")
  _require(d.shuffle_buffer >= 1, "data.shuffle_buffer", d.shuffle_buffer, "must be at least 1")
  try:
    input_lib.reader_spec(d)  # the spectrogram framing and the pairing settings
  except ValueError as e:
    raise ConfigError(str(e) if str(e).startswith("config.") else f"config.data.spectrogram: {e}")


def check_sound_targets(config) -> None:
  """The ambient-sound settings agree: targets kind, loss and the model's outputs."""
  from data_pipelines import sound_targets
  d = config.data
  kind = d.get("sound_targets", "")
  if not kind:
    return
  _require(kind in sound_targets.KINDS, "data.sound_targets", kind,
           f"must be '' (none) or one of {sound_targets.KINDS}")
  _require(d.sound_features in sound_targets.FEATURES, "data.sound_features", d.sound_features,
           f"must be one of {sound_targets.FEATURES}")
  _require(d.sound_k >= 2, "data.sound_k", d.sound_k, "must be at least 2")
  loss = {"clusters": "sound_cluster_xent", "bits": "sound_bits_xent"}[kind]
  _require(float(config.losses.get(loss, 0.0)) > 0, f"losses.{loss}",
           config.losses.get(loss, 0.0), f"must be positive with data.sound_targets={kind!r}")
  _require(config.model.get("num_targets", d.sound_k) == d.sound_k, "model.num_targets",
           config.model.get("num_targets"), f"must equal config.data.sound_k={d.sound_k}")


def check_model(config):
  """-> the model (building it is the check)."""
  try:
    return models.build(config.model)
  except (TypeError, ValueError) as e:
    raise ConfigError(str(e) if str(e).startswith("config.") else f"config.model: {e}") from None


def check_inputs(config, model) -> None:
  """The reader gives what the model takes: a waveform model needs
  data.audio='waveform', a frame-stack model data.frame_stack >= 1."""
  audio, frames = models.audio_input(model), models.frame_input(model)
  _require(config.data.audio == audio, "data.audio", config.data.audio,
           f"model {config.model.name!r} takes the {audio!r}")
  if "sample_rate" in config.model:  # a model that computes on the reader's waveform
    _require(config.model.sample_rate == config.data.sample_rate, "model.sample_rate",
             config.model.sample_rate, f"must be data.sample_rate ({config.data.sample_rate})")
  if frames == "frame_stack":
    _require(config.data.frame_stack >= 1, "data.frame_stack", config.data.frame_stack,
             f"model {config.model.name!r} takes a stack of frames: set it to their number")


def check_evals(config, names=None) -> None:
  for name in names if names is not None else config.evals:
    if name not in evaluators.EVALUATORS:
      raise ConfigError(f"config.evals.{name}: unknown evaluator; known: "
                        f"{sorted(evaluators.EVALUATORS)}")
    cfg = config.evals[name]
    _require(cfg.every >= 0, f"evals.{name}.every", cfg.every, "must be 0 (off) or positive")
    _require(cfg.batch_size > 0, f"evals.{name}.batch_size", cfg.batch_size, "must be positive")


def check_training(config, model) -> None:
  _require(config.batch_size > 0, "batch_size", config.batch_size, "must be positive")
  _require(config.total_steps > 0, "total_steps", config.total_steps, "must be positive")
  _require(not config.data.both_examples or config.batch_size % 2 == 0, "batch_size",
           config.batch_size, "must be even with data.both_examples (each clip is two examples)")
  _require(config.log_every > 0, "log_every", config.log_every, "must be positive")
  profile = config.get("profile") or {}
  if profile and profile.num_steps:
    _require(profile.num_steps > 0, "profile.num_steps", profile.num_steps, "must be >= 0 (0 = off)")
    _require(profile.start_step >= 1, "profile.start_step", profile.start_step,
             "must be a step, from 1")
  _require(config.checkpoint.every > 0, "checkpoint.every", config.checkpoint.every,
           "must be positive")
  _require(config.checkpoint.keep >= 1, "checkpoint.keep", config.checkpoint.keep,
           "must be at least 1")
  o, s = config.optimizer, config.schedule
  _require(o.name in ("adam", "adamw"), "optimizer.name", o.name, "must be adam or adamw")
  _require(o.lr > 0, "optimizer.lr", o.lr, "must be positive (a negative rate climbs the loss)")
  _require(o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay, "must be >= 0")
  _require(o.grad_clip_norm >= 0, "optimizer.grad_clip_norm", o.grad_clip_norm,
           "must be >= 0 (0 = off)")
  _require(s.name in ("constant", "warmup_cosine"), "schedule.name", s.name,
           "must be constant or warmup_cosine")
  _require(s.warmup_steps >= 0, "schedule.warmup_steps", s.warmup_steps, "must be >= 0")
  weights = {}
  for name, w in config.losses.items():
    if name not in losses.LOSSES:
      raise ConfigError(f"config.losses.{name}: unknown loss; known: {sorted(losses.LOSSES)}")
    _require(float(w) >= 0, f"losses.{name}", w, "a loss weight must be >= 0")
    if float(w):
      weights[name] = float(w)
  if not weights:
    raise ConfigError("config.losses: every loss has weight 0")
  for name in config.loss_kwargs:
    if name not in losses.LOSSES:
      raise ConfigError(f"config.loss_kwargs.{name}: unknown loss; known: {sorted(losses.LOSSES)}")
  losses.check_for_model(weights, model.correspondence, config.model.name,
                         getattr(model, "classifier_classes", 0))


def check_teachers(config, model) -> None:
  """Distillation settings agree: the loss, the teachers and the student's heads
  (their classes are checked against the checkpoints when the trainer loads them)."""
  from avjax import checkpoint  # orbax: only for configs that reach this far
  teachers = config.get("teachers") or {}
  uses = float(config.losses.get("soundnet_kl", 0.0)) > 0
  _require(not uses or len(teachers) > 0, "teachers", dict(teachers),
           "losses.soundnet_kl needs at least one teacher")
  if uses:
    heads = tuple(getattr(model, "head_classes", ()))
    _require(len(heads) == len(teachers), "model.head_classes", heads,
             f"needs one entry per teacher ({', '.join(teachers)})")
  for name, t in teachers.items():
    _require(checkpoint.is_choice(t.checkpoint), f"teachers.{name}.checkpoint", t.checkpoint,
             "must be best, latest or a step")
  init_from = config.get("init_from")
  if init_from is not None and init_from.workdir:
    _require(checkpoint.is_choice(init_from.checkpoint), "init_from.checkpoint",
             init_from.checkpoint, "must be best, latest or a step")


def check(config, *, training: bool = True):
  """Raises ConfigError for the first value that cannot work; -> the model."""
  check_data(config)
  check_sound_targets(config)
  model = check_model(config)
  check_inputs(config, model)
  check_evals(config)
  if training:
    check_training(config, model)
    check_teachers(config, model)
  return model
