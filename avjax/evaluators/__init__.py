"""Evaluators: small classes with run(variables) -> {name: value}, from config.evals."""
from avjax.evaluators.avc import AVCAccuracy
from avjax.evaluators.clustering import Clustering
from avjax.evaluators.linear_probe import LinearProbe
from avjax.evaluators.localisation import Localisation
from avjax.evaluators.retrieval import Retrieval

EVALUATORS = {"avc": AVCAccuracy, "retrieval": Retrieval, "localisation": Localisation,
              "linear_probe": LinearProbe, "clustering": Clustering}


def enabled(evals_config) -> dict:
  """The configured evaluators that run: `every` 0 switches one off."""
  return {name: cfg for name, cfg in evals_config.items() if cfg.every > 0}


def build(name, eval_config, **kwargs):
  if name not in EVALUATORS:
    raise ValueError(f"config.evals.{name}: unknown evaluator; known: {sorted(EVALUATORS)}")
  return EVALUATORS[name](eval_config, **kwargs)


def build_all(eval_configs: dict, config, *, model, mesh) -> dict:
  """{name: evaluator} for `eval_configs` (a subset of config.evals), reading config.data."""
  return {name: build(name, cfg, model=model, mesh=mesh, data_config=config.data,
                      default_split=config.data.eval_split, seed=config.seed)
          for name, cfg in eval_configs.items()}
