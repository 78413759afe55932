"""Evaluators: small classes with run(variables) -> {name: value}, from config.evals."""
from avjax.evaluators.avc import AVCAccuracy
from avjax.evaluators.retrieval import Retrieval

EVALUATORS = {"avc": AVCAccuracy, "retrieval": Retrieval}


def enabled(evals_config) -> dict:
  """The configured evaluators that run: `every` 0 switches one off."""
  return {name: cfg for name, cfg in evals_config.items() if cfg.every > 0}


def build(name, eval_config, **kwargs):
  if name not in EVALUATORS:
    raise ValueError(f"config.evals.{name}: unknown evaluator; known: {sorted(EVALUATORS)}")
  return EVALUATORS[name](eval_config, **kwargs)
