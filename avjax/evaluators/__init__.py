"""Evaluators: small classes with run(variables) -> {name: value}, from config.evals."""
from avjax.evaluators.avc import AVCAccuracy

EVALUATORS = {"avc": AVCAccuracy}


def build(name, eval_config, **kwargs):
  if name not in EVALUATORS:
    raise ValueError(f"config.evals.{name}: unknown evaluator; known: {sorted(EVALUATORS)}")
  return EVALUATORS[name](eval_config, **kwargs)
