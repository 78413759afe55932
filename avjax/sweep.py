"""Run a sweep: avjax-sweep --config=configs/ablations/objective.py:tiny --workdir=ROOT

The config file defines `get_sweep(arg)` beside `get_config(arg)` (see
avjax/hyper.py). Each run (point x seed) trains in ROOT/<point>/seed<k>/ with
the ordinary trainer, then runs the sweep's evaluations and writes
`sweep_result.json` there; a run with that file is finished and skipped, an
interrupted one resumes from its checkpoint. At the end (or with --collect) the
results go to ROOT/results.csv, ROOT/results.md and ROOT/results.png.

  --parallel=N          N runs at a time, the cores split between them
  --print_commands      one shell command per run; runs nothing
  --launcher=slurm      writes ROOT/sweep.sbatch (an array job); runs nothing
  --point=P/seedK       runs one run (what the commands above run)
  --config.KEY=VALUE    overrides every point's base config (say config.data.dir)
"""
from __future__ import annotations

import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import time

from absl import flags
from ml_collections import config_flags

from avjax import cli, hyper
from data_pipelines import fs

_CONFIG = config_flags.DEFINE_config_file("config", None, "sweep config file[:arg]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "the sweep's root folder (local or gs://)")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "runs at a time on this machine")
_PRINT_COMMANDS = flags.DEFINE_bool("print_commands", False, "print one command per run")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "slurm"],
                              "local: run here; slurm: write an sbatch array script")
_COLLECT = flags.DEFINE_bool("collect", False, "only gather finished runs into the tables")
_POINT = flags.DEFINE_string("point", None, "run only this run, <point>/seed<k>")
flags.mark_flags_as_required(["config", "workdir"])

RESULT = "sweep_result.json"
PROGRESS = "sweep_progress.json"  # wall time spent so far, for runs that are resumed


# ----------------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------------
def execute_run(base, sweep: hyper.Sweep, root: str, rid: str) -> dict:
  """Trains run `rid` (resuming), evaluates it, writes its sweep_result.json."""
  from avjax.evaluators import runner
  from avjax import train
  workdir = fs.join(root, rid)
  result_path = fs.join(workdir, RESULT)
  if fs.exists(result_path):
    return json.loads(fs.read_text(result_path))
  point, seed = hyper.parse_run_id(rid)
  config = hyper.run_config(base, sweep, rid)
  from avjax.models import conv
  conv.configure_process(config.model.conv)  # as avjax-train does, before JAX's backends
  fs.makedirs(workdir)
  share_compilations(root)
  clock = _Clock(fs.join(workdir, PROGRESS))
  train.train_and_evaluate(config, workdir, step_hook=clock.tick)
  metrics, init_metrics = {}, {}
  for ev in sweep.evaluations:
    ev_config = hyper.evaluation_config(config, ev, point)
    rec = runner.evaluate(ev_config, workdir, evals=list(ev.evals), split=ev.split,
                              checkpoint=sweep.checkpoint, pictures=False, name=ev.name)
    metrics.update({f"{ev.name}/{k}": v for k, v in rec["metrics"].items()})
    step = rec["step"]
    if sweep.random_init:
      rec = runner.evaluate(ev_config, workdir, evals=list(ev.evals), split=ev.split,
                                random_init=True, pictures=False, name=ev.name)
      init_metrics.update({f"{ev.name}/{k}": v for k, v in rec["metrics"].items()})
  result = {"point": point, "seed": seed, "steps": config.total_steps, "evaluated_step": step,
            "wall_s": clock.total(), "metrics": metrics, "random_init_metrics": init_metrics,
            "overrides": {k: _jsonable(v) for k, v in sweep.point(point).overrides.items()}}
  fs.write_text(result_path, json.dumps(result, indent=1))
  return result


def share_compilations(root: str) -> None:
  """The runs of a local sweep compile the same programs (every seed, and most
  points): one persistent XLA cache under ROOT serves them all, unless the user
  set their own."""
  import jax
  if fs.is_url(root) or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  jax.config.update("jax_compilation_cache_dir", os.path.join(root, ".xla_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _jsonable(v):
  return list(v) if isinstance(v, tuple) else v


class _Clock:
  """Wall time of a run over all its attempts: each attempt adds its own,
  saved every 10 s, so a killed attempt loses at most that much."""

  def __init__(self, path: str):
    self.path = path
    self.before = json.loads(fs.read_text(path))["wall_s"] if fs.exists(path) else 0.0
    self.start = self.last_save = time.time()

  def total(self) -> float:
    return self.before + time.time() - self.start

  def tick(self, step: int) -> None:
    del step
    if time.time() - self.last_save > 10:
      fs.write_text(self.path, json.dumps({"wall_s": self.total()}))
      self.last_save = time.time()


# ----------------------------------------------------------------------------
# Many runs
# ----------------------------------------------------------------------------
def run_command(config_arg: str, root: str, rid: str, overrides: list[str]) -> list[str]:
  """The command that runs one run, from any directory."""
  path, colon, arg = config_arg.partition(":")
  return [sys.executable, "-m", "avjax.sweep", f"--config={os.path.abspath(path)}{colon}{arg}",
          f"--workdir={fs.absolute(root)}", f"--point={rid}", *overrides]


def core_groups(n: int) -> list[set[int]]:
  """This process's cores dealt into n groups (n at most the number of cores)."""
  cores = sorted(os.sched_getaffinity(0))
  n = max(1, min(n, len(cores)))
  return [set(cores[i::n]) for i in range(n)]


def _child_setup(cores: set[int]):
  def setup():
    os.sched_setaffinity(0, cores)
    # A killed sweep takes its runs with it (Linux: PR_SET_PDEATHSIG = 1).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
  return setup


def run_locally(config_arg: str, root: str, todo: list[str], overrides: list[str],
                parallel: int) -> list[str]:
  """Runs `todo` as subprocesses, `parallel` at a time, each on its own cores;
  -> the runs that failed. Each run's output goes to ROOT/<run>/sweep.log."""
  free = core_groups(parallel)
  pending, running, failed = list(todo), {}, []
  total, done = len(todo), 0
  while pending or running:
    while pending and free:
      rid, cores = pending.pop(0), free.pop(0)
      log_path = os.path.join(root, rid, "sweep.log")
      os.makedirs(os.path.dirname(log_path), exist_ok=True)
      log = open(log_path, "a")
      proc = subprocess.Popen(run_command(config_arg, root, rid, overrides), stdout=log,
                              stderr=subprocess.STDOUT, preexec_fn=_child_setup(cores))
      running[proc] = (rid, cores, log, time.time())
      print(f"started {rid} on cores {sorted(cores)} (log: {log_path})", flush=True)
    finished = [p for p in running if p.poll() is not None]
    for proc in finished:
      rid, cores, log, t0 = running.pop(proc)
      log.close()
      free.append(cores)
      done += 1
      if proc.returncode:
        failed.append(rid)
        print(f"[{done}/{total}] FAILED {rid}: {_last_line(log.name)}", flush=True)
      else:
        print(f"[{done}/{total}] finished {rid} in {time.time() - t0:.0f} s", flush=True)
    if not finished:
      time.sleep(0.5)
  return failed


def _last_line(path: str) -> str:
  with open(path, errors="replace") as f:
    lines = [l.strip() for l in f.read().splitlines() if l.strip()]
  return lines[-1] if lines else "(no output)"


def slurm_script(config_arg: str, root: str, runs: list[str], overrides: list[str]) -> str:
  """An sbatch array job: task i runs run i (finished runs exit at once)."""
  cmd = run_command(config_arg, root, "RUN", overrides)
  cmd = [shlex.quote(c) for c in cmd]
  cmd[cmd.index("--point=RUN")] = '--point="${RUNS[$SLURM_ARRAY_TASK_ID]}"'
  lines = ["#!/bin/bash",
           "#SBATCH --job-name=avjax-sweep",
           f"#SBATCH --array=0-{len(runs) - 1}",
           # Slurm writes logs to a shared file system, not a bucket.
           f"#SBATCH --output={'' if fs.is_url(root) else fs.absolute(root) + '/'}slurm-%A_%a.log",
           "# Add your cluster's --partition, --gres, --cpus-per-task and --time here.",
           "set -euo pipefail",
           "RUNS=(" + " ".join(shlex.quote(r) for r in runs) + ")",
           " ".join(cmd)]
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# Tables and plot
# ----------------------------------------------------------------------------
def gather(root: str, sweep: hyper.Sweep) -> list[dict]:
  """The finished runs' results, in sweep order."""
  out = []
  for rid in sweep.runs():
    path = fs.join(root, rid, RESULT)
    if fs.exists(path):
      out.append(json.loads(fs.read_text(path)))
  return out


def csv_rows(results: list[dict]) -> tuple[list[str], list[list]]:
  """One row per run and weights (trained, random_init), every metric."""
  names = []
  for r in results:
    for k in [*r["metrics"], *r["random_init_metrics"]]:
      if k not in names:
        names.append(k)
  header = ["point", "seed", "weights", "steps", "wall_s", *names]
  rows = []
  for r in results:
    rows.append([r["point"], r["seed"], "trained", r["steps"], round(r["wall_s"], 1),
                 *[r["metrics"].get(n, "") for n in names]])
    if r["random_init_metrics"]:
      rows.append([r["point"], r["seed"], "random_init", 0, "",
                   *[r["random_init_metrics"].get(n, "") for n in names]])
  return header, rows


def summary(results: list[dict], sweep: hyper.Sweep) -> tuple[list[str], list[dict]]:
  """Per point and weights: mean and std over seeds of each headline metric."""
  import numpy as np
  metrics = list(sweep.headline) or sorted({k for r in results for k in r["metrics"]})
  rows = []
  for weights, field in (("trained", "metrics"), ("random_init", "random_init_metrics")):
    for p in sweep.points:
      rs = [r for r in results if r["point"] == p.name and r[field]]
      if not rs:
        continue
      row = {"point": p.name, "weights": weights, "seeds": len(rs), "stats": {}}
      for m in metrics:
        vals = [r[field][m] for r in rs if m in r[field]]
        if vals:
          row["stats"][m] = (float(np.mean(vals)), float(np.std(vals)))
      rows.append(row)
  return metrics, rows


def markdown(metrics: list[str], rows: list[dict]) -> str:
  """Mean ± std over seeds; the best trained mean per column in bold."""
  best = {m: max((r["stats"][m][0] for r in rows if r["weights"] == "trained"
                  and m in r["stats"]), default=None) for m in metrics}
  lines = ["| point | weights | seeds | " + " | ".join(metrics) + " |",
           "|---|---|---|" + "---|" * len(metrics)]
  for r in rows:
    cells = []
    for m in metrics:
      if m not in r["stats"]:
        cells.append("")
        continue
      mean, std = r["stats"][m]
      cell = f"{mean:.4f} ± {std:.4f}"
      bold = r["weights"] == "trained" and best[m] is not None and mean == best[m]
      cells.append(f"**{cell}**" if bold else cell)
    lines.append(f"| {r['point']} | {r['weights']} | {r['seeds']} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(metrics: list[str], rows: list[dict], path: str) -> None:
  """Grouped bars: one group per headline metric, one bar per point (trained,
  mean ± std over seeds), random initialisation as a hollow bar beside it."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  trained = [r for r in rows if r["weights"] == "trained"]
  init = {r["point"]: r for r in rows if r["weights"] == "random_init"}
  n = max(len(trained), 1)
  width = 0.8 / n
  x = np.arange(len(metrics))
  fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) * max(1, n / 2)), 4))
  for i, r in enumerate(trained):
    pos = x - 0.4 + width * (i + 0.5)
    mean = [r["stats"].get(m, (np.nan, 0))[0] for m in metrics]
    std = [r["stats"].get(m, (np.nan, 0))[1] for m in metrics]
    ax.bar(pos, mean, width * 0.9, yerr=std, capsize=3, label=r["point"])
    if r["point"] in init:
      base = [init[r["point"]]["stats"].get(m, (np.nan, 0))[0] for m in metrics]
      ax.bar(pos, base, width * 0.9, fill=False, edgecolor="black", linestyle="--",
             linewidth=0.8, label="random init" if i == 0 else None)
  ax.set_xticks(x)
  ax.set_xticklabels(metrics, rotation=15, ha="right", fontsize=8)
  ax.legend(fontsize=7)
  ax.set_title(f"mean ± std over seeds ({rows[0]['seeds'] if rows else 0} per point)")
  fig.tight_layout()
  local = path if not fs.is_url(path) else os.path.join(_tmpdir(), "results.png")
  fig.savefig(local, dpi=120)
  plt.close(fig)
  if local != path:
    fs.put(local, path)


def _tmpdir() -> str:
  import tempfile
  return tempfile.mkdtemp(prefix="avjax-sweep-")


def collect(root: str, sweep: hyper.Sweep) -> dict:
  """Writes results.csv, results.md and results.png under root; -> their paths."""
  import csv
  import io
  results = gather(root, sweep)
  header, rows = csv_rows(results)
  buf = io.StringIO()
  csv.writer(buf).writerows([header, *rows])
  fs.write_text(fs.join(root, "results.csv"), buf.getvalue())
  metrics, summary_rows = summary(results, sweep)
  missing = len(sweep.runs()) - len(results)
  md = markdown(metrics, summary_rows)
  if missing:
    md += f"\n{missing} of {len(sweep.runs())} runs not finished yet.\n"
  fs.write_text(fs.join(root, "results.md"), md)
  paths = {"csv": fs.join(root, "results.csv"), "md": fs.join(root, "results.md")}
  if summary_rows:
    plot(metrics, summary_rows, fs.join(root, "results.png"))
    paths["png"] = fs.join(root, "results.png")
  return paths


# ----------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------
def config_overrides(argv: list[str]) -> list[str]:
  """The --config.KEY=VALUE flags given, for the runs' own command lines."""
  return [a for a in argv if a.startswith("--config.")]


def main(argv):
  del argv
  config_arg = flags.FLAGS["config"].config_filename
  root = _WORKDIR.value
  base = cli.loaded_config(_CONFIG)
  sweep = hyper.load_sweep(config_arg)
  overrides = config_overrides(sys.argv)
  if _POINT.value:
    cli.quiet_logging()
    cli.hide_accelerators_from_tf()
    hyper.parse_run_id(_POINT.value)
    hyper.check_all(base, sweep)
    result = execute_run(base, sweep, root, _POINT.value)
    cli.print_table(f"{_POINT.value}:", result["metrics"])
    return
  if _COLLECT.value:
    _say_collected(collect(root, sweep))
    return
  hyper.check_all(base, sweep)  # before anything runs or is written
  runs = sweep.runs()
  if _PRINT_COMMANDS.value:
    for rid in runs:
      print(shlex.join(run_command(config_arg, root, rid, overrides)))
    return
  if _LAUNCHER.value == "slurm":
    fs.makedirs(root)
    path = fs.join(root, "sweep.sbatch")
    fs.write_text(path, slurm_script(config_arg, root, runs, overrides))
    print(f"wrote {path} ({len(runs)} runs): sbatch {path}; then avjax-sweep "
          f"--config={config_arg} --workdir={root} --collect")
    return
  if fs.is_url(root):
    raise ValueError(f"--workdir={root}: local runs keep their logs on this machine; use a "
                     "local --workdir, or --launcher=slurm / --print_commands for a bucket")
  todo = [r for r in runs if not fs.exists(fs.join(root, r, RESULT))]
  print(f"{len(runs)} runs, {len(runs) - len(todo)} already finished", flush=True)
  failed = run_locally(config_arg, root, todo, overrides, _PARALLEL.value)
  _say_collected(collect(root, sweep))
  if failed:
    sys.exit(f"avjax-sweep: {len(failed)} runs failed: {', '.join(failed)} "
             f"(see {root}/<run>/sweep.log)")


def _say_collected(paths: dict) -> None:
  print(fs.read_text(paths["md"]))
  print("wrote " + ", ".join(paths.values()))


def run():
  cli.run("avjax-sweep", main)


if __name__ == "__main__":
  run()
