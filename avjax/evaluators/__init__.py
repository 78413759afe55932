"""Evaluators: small classes with run(variables) -> {name: value}, from config.evals.

Each is given the model's functions (avjax.predict.ModelFns), never the model,
and runs on its own schedule, `config.evals.<name>.every` steps.
"""
import importlib

# name (also its module, avjax/evaluators/<name>.py) -> class name, imported when
# built: the config check names evaluators without importing TensorFlow, so a bad
# command line fails in a fraction of the time.
EVALUATORS = {"avc": "AVCAccuracy", "retrieval": "Retrieval", "localisation": "Localisation",
              "linear_probe": "LinearProbe", "clustering": "Clustering",
              "sync_offsets": "SyncOffsets", "separation": "Separation",
              "active_speaker": "ActiveSpeaker", "sonorization": "Sonorization"}


def evaluator_class(name: str):
  return getattr(importlib.import_module(f"avjax.evaluators.{name}"), EVALUATORS[name])


def enabled(evals_config) -> dict:
  """The configured evaluators that run: `every` 0 switches one off."""
  return {name: cfg for name, cfg in evals_config.items() if cfg.every > 0}


def build(name, eval_config, **kwargs):
  if name not in EVALUATORS:
    raise ValueError(f"config.evals.{name}: unknown evaluator; known: {sorted(EVALUATORS)}")
  return evaluator_class(name)(eval_config, **kwargs)


def build_all(eval_configs: dict, config, *, fns, mesh, default_split: str = "") -> dict:
  """{name: evaluator} for `eval_configs` (a subset of config.evals), on
  config.data's readers; `fns` are the model's predict.ModelFns. An evaluator
  without a split of its own reads `default_split` (else config.data.eval_split)."""
  return {name: build(name, cfg, fns=fns, mesh=mesh, data_config=config.data,
                      default_split=default_split or config.data.eval_split, seed=config.seed)
          for name, cfg in eval_configs.items()}
