"""Sweeps as configs: what a config file's `get_sweep(arg)` returns.

A sweep is a list of named points, each a dict of config overrides, written as
products and zips of axes (in the style of big_vision's `get_hyper`):

  def get_sweep(arg=None):
    return hyper.Sweep(
        points=hyper.product(hyper.axis("lr", "optimizer.lr", [1e-3, 2e-3]),
                              hyper.axis("neg", "data.negatives", ["stream", "in_batch"])),
        seeds=3,
        evaluations=[hyper.Evaluation("test", split="test", evals=("avc", "retrieval"))],
        headline=("test/avc_accuracy",))

Every point runs `seeds` times (config.seed = 0 .. seeds-1) and is evaluated by
each `Evaluation`, whose metrics are named `<evaluation>/<metric>`. This module
imports nothing heavy: config files import it, and a config must load without JAX.
`avjax.sweep` is the command that runs, resumes and tabulates sweeps.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any, Iterable, Mapping, Sequence

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.=+,-]+$")


@dataclasses.dataclass(frozen=True)
class Point:
  """One configuration of the sweep: `name` is its folder under the sweep's workdir."""
  name: str
  overrides: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """Evaluators run on a split after training, with config overrides of their own
  (say `data.negatives_on_grid=False` to score on off-grid negatives)."""
  name: str
  split: str = ""
  evals: Sequence[str] = ("avc",)
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Sweep:
  points: Sequence[Point]
  seeds: int = 1
  evaluations: Sequence[Evaluation] = (Evaluation("validation"),)
  # Metrics (`<evaluation>/<metric>`) for results.md and the plot; () = all.
  headline: Sequence[str] = ()
  # Also evaluate every point's network at its initialisation, beside the trained one.
  random_init: bool = True
  # The checkpoint the evaluations load: "best" (by config.checkpoint.best_metric
  # on the validation split during training), "latest", or a step.
  checkpoint: str = "best"

  def __post_init__(self):
    names = [p.name for p in self.points]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
      raise ValueError(f"sweep: point names {dup} occur more than once")
    for n in names:
      if not _SAFE_NAME.match(n):
        raise ValueError(f"sweep: point name {n!r} must be letters, digits and _.=+,- "
                         "(it names a folder)")
    if self.seeds < 1:
      raise ValueError(f"sweep: seeds={self.seeds} must be at least 1")
    evs = [e.name for e in self.evaluations]
    if len(set(evs)) != len(evs) or not evs:
      raise ValueError(f"sweep: evaluation names {evs} must be unique and at least one")

  def runs(self) -> list[str]:
    """Every run's id `<point>/seed<k>`, point by point."""
    return [run_id(p.name, s) for p in self.points for s in range(self.seeds)]

  def point(self, name: str) -> Point:
    for p in self.points:
      if p.name == name:
        return p
    raise ValueError(f"sweep: no point named {name!r}; points: {[p.name for p in self.points]}")


def run_id(point: str, seed: int) -> str:
  return f"{point}/seed{seed}"


def parse_run_id(rid: str) -> tuple[str, int]:
  point, _, seed = rid.rpartition("/seed")
  if not point or not seed.isdigit():
    raise ValueError(f"--point={rid!r}: expected <point>/seed<k>")
  return point, int(seed)


def _value_name(v) -> str:
  if isinstance(v, (tuple, list)):
    return "x".join(map(str, v))
  return str(v)


def axis(short: str, key: str, values: Iterable, names: Sequence[str] | None = None) -> list[Point]:
  """Points setting config `key` to each value, named `short=value` (or `names`)."""
  values = list(values)
  names = list(names) if names is not None else [f"{short}={_value_name(v)}" for v in values]
  if len(names) != len(values):
    raise ValueError(f"sweep axis {short!r}: {len(names)} names for {len(values)} values")
  return [Point(n, {key: v}) for n, v in zip(names, values)]


def points(**named: Mapping[str, Any]) -> list[Point]:
  """Points written out by hand: points(avc_only={"losses.infonce": 0.0}, ...)."""
  return [Point(n, dict(o)) for n, o in named.items()]


def _merge(group: Sequence[Point]) -> Point:
  overrides: dict = {}
  for p in group:
    clash = set(overrides) & set(p.overrides)
    if clash:
      raise ValueError(f"sweep: axes both set {sorted(clash)}")
    overrides.update(p.overrides)
  return Point(",".join(p.name for p in group), overrides)


def product(*axes: Sequence[Point]) -> list[Point]:
  """Every combination of the axes' points."""
  return [_merge(group) for group in itertools.product(*axes)]


def zip_axes(*axes: Sequence[Point]) -> list[Point]:
  """The axes' points taken together, i-th with i-th (equal lengths)."""
  lengths = {len(a) for a in axes}
  if len(lengths) > 1:
    raise ValueError(f"sweep: zip_axes of axes of lengths {sorted(lengths)}")
  return [_merge(group) for group in zip(*axes)]


def with_overrides(base: Mapping[str, Any], pts: Sequence[Point]) -> list[Point]:
  """`base` overrides added to every point (a point's own value wins)."""
  return [Point(p.name, {**base, **p.overrides}) for p in pts]


# ----------------------------------------------------------------------------
# Applying overrides to a config
# ----------------------------------------------------------------------------
def apply_overrides(config, overrides: Mapping[str, Any], where: str):
  """A copy of `config` with dotted `overrides` set; a key the config does not
  have (or a value of the wrong type) is a ValueError naming `where` and the key."""
  import ml_collections
  out = ml_collections.ConfigDict(config.to_dict())  # unlocked, independent copy
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = out
    for i, part in enumerate(parents):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise ValueError(f"{where}: config key {'.'.join(parents[:i + 1])!r} "
                         f"(in override {key!r}) does not exist")
      node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"{where}: config key {key!r} does not exist")
    try:
      node[leaf] = value
    except TypeError as e:
      raise ValueError(f"{where}: config key {key!r}: {e}") from None
  return out


# ----------------------------------------------------------------------------
# Loading a sweep and building its configs (no flags here: tests and other
# commands import this module)
# ----------------------------------------------------------------------------
def load_sweep(config_arg: str) -> Sweep:
  """The `get_sweep(arg)` of `path[:arg]`."""
  import importlib.util
  path, _, arg = config_arg.partition(":")
  spec = importlib.util.spec_from_file_location("_avjax_sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"--config={config_arg}: {path} defines no get_sweep(arg)")
  sweep = module.get_sweep(arg or None)
  if not isinstance(sweep, Sweep):
    raise ValueError(f"--config={config_arg}: get_sweep returned {type(sweep).__name__}, "
                     "not avjax.hyper.Sweep")
  return sweep


def run_config(base, sweep: Sweep, rid: str):
  """The training config of run `<point>/seed<k>`."""
  name, seed = parse_run_id(rid)
  config = apply_overrides(base, sweep.point(name).overrides, f"sweep point {name!r}")
  config.seed = seed
  return config


def evaluation_config(config, ev: Evaluation, point: str):
  return apply_overrides(config, ev.overrides, f"sweep point {point!r}, evaluation {ev.name!r}")


def check_all(base, sweep: Sweep) -> None:
  """Every run's config, and its evaluations', built and checked before any
  training: a misspelt key fails here, naming the point and the key."""
  from avjax import config_check
  for p in sweep.points:
    config = run_config(base, sweep, run_id(p.name, 0))
    config_check.check(config)
    for ev in sweep.evaluations:
      ev_config = evaluation_config(config, ev, p.name)
      unknown = [n for n in ev.evals if n not in ev_config.evals]
      if unknown:
        raise ValueError(f"sweep evaluation {ev.name!r}: unknown evaluators {unknown}")
      config_check.check_evals(ev_config, list(ev.evals))
