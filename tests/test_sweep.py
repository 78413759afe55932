"""avjax-sweep: sweeps as configs, run, killed and resumed, tabulated and plotted."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from avjax import hyper
from tests.conftest import ROOT, run_python

# One worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("test_sweep")

CONFIG = os.path.join(ROOT, "tests", "scripts", "sweep_config.py")
RUNS = ("lr=0.001/seed0", "lr=0.003/seed0")


def sweep_args(root, data_dir, *extra, arg=""):
  return ["-m", "avjax.sweep", f"--config={CONFIG}{':' + arg if arg else ''}",
          f"--workdir={root}", f"--config.data.dir={data_dir}", *extra]


def table_without_wall_time(root) -> list[list[str]]:
  with open(os.path.join(root, "results.csv")) as f:
    rows = list(csv.reader(f))
  wall = rows[0].index("wall_s")
  return [r[:wall] + r[wall + 1:] for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("sweep_whole")
  r = run_python(sweep_args(root, data_dir))
  assert r.returncode == 0, r.stderr[-3000:]
  return root, r.stdout


# ----------------------------------------------------------------------------
# Points
# ----------------------------------------------------------------------------
def test_product_zip_and_seeds_name_every_run():
  lr = hyper.axis("lr", "optimizer.lr", [1e-3, 2e-3])
  neg = hyper.axis("neg", "data.negatives", ["stream", "in_batch"])
  prod = hyper.product(lr, neg)
  assert [p.name for p in prod] == ["lr=0.001,neg=stream", "lr=0.001,neg=in_batch",
                                    "lr=0.002,neg=stream", "lr=0.002,neg=in_batch"]
  assert prod[1].overrides == {"optimizer.lr": 1e-3, "data.negatives": "in_batch"}
  zipped = hyper.zip_axes(lr, neg)
  assert [p.overrides for p in zipped] == [{"optimizer.lr": 1e-3, "data.negatives": "stream"},
                                           {"optimizer.lr": 2e-3, "data.negatives": "in_batch"}]
  sweep = hyper.Sweep(points=zipped, seeds=3)
  assert len(sweep.runs()) == 6 and sweep.runs()[:2] == ["lr=0.001,neg=stream/seed0",
                                                         "lr=0.001,neg=stream/seed1"]
  with pytest.raises(ValueError, match="lengths"):
    hyper.zip_axes(lr, neg[:1])
  with pytest.raises(ValueError, match="more than once"):
    hyper.Sweep(points=[*lr, *lr])
  with pytest.raises(ValueError, match="both set"):
    hyper.product(lr, lr)


def test_overrides_reach_the_config_and_unknown_keys_name_the_point():
  from configs import avenet
  base = avenet.get_config("tiny")
  out = hyper.apply_overrides(base, {"optimizer.lr": 5e-3, "model.embed_dim": 32}, "sweep point 'x'")
  assert out.optimizer.lr == 5e-3 and out.model.embed_dim == 32
  assert base.optimizer.lr != 5e-3  # the base is not changed
  with pytest.raises(ValueError, match=r"sweep point 'x': config key 'optimizer.lrr' does not exist"):
    hyper.apply_overrides(base, {"optimizer.lrr": 1.0}, "sweep point 'x'")
  with pytest.raises(ValueError, match=r"config key 'optimiser'"):
    hyper.apply_overrides(base, {"optimiser.lr": 1.0}, "sweep point 'x'")
  with pytest.raises(ValueError, match=r"config key 'optimizer.lr'"):
    hyper.apply_overrides(base, {"optimizer.lr": "fast"}, "sweep point 'x'")


def test_every_ablation_config_builds_its_points():
  from avjax import config_check
  import importlib
  for name in ("shortcut", "architecture", "objective", "negatives", "embedding", "localisation",
               "supervision"):
    path = os.path.join(ROOT, "configs", "ablations", f"{name}.py")
    module = importlib.import_module(f"configs.ablations.{name}")
    sweep = hyper.load_sweep(f"{path}:tiny")
    assert sweep.seeds == 3 and sweep.headline
    hyper.check_all(module.get_config("tiny"), sweep)
    for p in sweep.points:  # each point changes what it says
      config = hyper.run_config(module.get_config("tiny"), sweep, f"{p.name}/seed1")
      assert config.seed == 1
      config_check.check(config)


def test_supervision_points_see_the_same_examples_and_probe_only_at_the_end():
  from configs.ablations import supervision
  sweep = supervision.get_sweep("tiny")
  base = supervision.get_config("tiny")
  for p in sweep.points:
    config = hyper.run_config(base, sweep, f"{p.name}/seed0")
    assert (config.batch_size, config.total_steps) == (supervision.BATCH, base.total_steps), p.name
    assert all(e.every == 0 for e in config.evals.values()), p.name
  for ev in sweep.evaluations:  # random init is the sweep's own run, not the probe's
    assert ev.overrides["evals.linear_probe.random_init"] is False


# ----------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_trains_evaluates_tabulates_and_plots(uninterrupted, data_dir):
  root, out = uninterrupted
  rows = table_without_wall_time(root)
  header, body = rows[0], rows[1:]
  assert header[:4] == ["point", "seed", "weights", "steps"]
  assert [(r[0], r[2]) for r in body] == [("lr=0.001", "trained"), ("lr=0.001", "random_init"),
                                          ("lr=0.003", "trained"), ("lr=0.003", "random_init")]
  acc = header.index("val/avc_accuracy"), header.index("offgrid/avc_accuracy")
  for r in body:
    assert all(0.0 <= float(r[i]) <= 1.0 for i in acc)
  # The two points trained differently, and differ from their initialisation.
  assert body[0][acc[0]] != body[2][acc[0]]
  assert body[0][acc[0]] != body[1][acc[0]]
  md = open(os.path.join(root, "results.md")).read()
  assert "| lr=0.001 | trained | 1 |" in md and "**" in md and "random_init" in md
  with open(os.path.join(root, "results.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  for rid in RUNS:  # ordinary training workdirs, evaluated under both settings
    evals = os.listdir(os.path.join(root, rid, "eval"))
    assert any(e.endswith("_offgrid.json") for e in evals), evals
  # Run again: nothing left to do, nothing retrained.
  before = {rid: os.path.getmtime(os.path.join(root, rid, "sweep_result.json")) for rid in RUNS}
  r = run_python(sweep_args(root, data_dir))
  assert r.returncode == 0, r.stderr[-2000:]
  assert "2 runs, 2 already finished" in r.stdout
  assert before == {rid: os.path.getmtime(os.path.join(root, rid, "sweep_result.json"))
                    for rid in RUNS}


@pytest.mark.slow
def test_killed_sweep_resumes_without_retraining_and_tabulates_the_same(uninterrupted, data_dir,
                                                                         tmp_path):
  root = tmp_path / "sweep"
  whole_root, _ = uninterrupted
  # The first run is the uninterrupted sweep's, finished: the sweep is killed in
  # the middle of its second run.
  shutil.copytree(whole_root / RUNS[0], root / RUNS[0])
  first = root / RUNS[0] / "sweep_result.json"
  first_mtime = os.path.getmtime(first)
  log_size = os.path.getsize(root / RUNS[0] / "sweep.log")
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)
  proc = subprocess.Popen([sys.executable, *sweep_args(root, data_dir)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  second_ckpt = root / RUNS[1] / "checkpoints" / "10"
  deadline = time.time() + 400
  while not second_ckpt.exists() and time.time() < deadline:
    assert proc.poll() is None, "the sweep ended before it could be killed"
    time.sleep(0.01)
  # Only the sweep is killed: its runs must die with it (else the re-run would
  # find the second run's workdir locked).
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not (root / RUNS[1] / "sweep_result.json").exists(), \
      "not killed in the middle of the second run"

  r = run_python(sweep_args(root, data_dir))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "2 runs, 1 already finished" in r.stdout
  # Neither the killed sweep nor the re-run ran the finished run again.
  assert os.path.getmtime(first) == first_mtime
  assert os.path.getsize(root / RUNS[0] / "sweep.log") == log_size
  assert "resumed from step 10" in open(root / RUNS[1] / "sweep.log").read()
  assert table_without_wall_time(root) == table_without_wall_time(whole_root)
  assert open(root / "results.md").read() == open(whole_root / "results.md").read()


def test_print_commands_and_slurm_run_nothing(data_dir, tmp_path):
  root = tmp_path / "sweep"
  r = run_python(sweep_args(root, data_dir, "--print_commands"))
  assert r.returncode == 0, r.stderr[-2000:]
  lines = r.stdout.strip().splitlines()
  assert len(lines) == 2
  for line, rid in zip(lines, RUNS):
    assert f"--point={rid}" in line and f"--config.data.dir={data_dir}" in line
  assert not root.exists()

  r = run_python(sweep_args(root, data_dir, "--launcher=slurm"))
  assert r.returncode == 0, r.stderr[-2000:]
  assert sorted(os.listdir(root)) == ["sweep.sbatch"]
  script = open(root / "sweep.sbatch").read()
  assert "#SBATCH --array=0-1" in script
  assert "RUNS=(lr=0.001/seed0 lr=0.003/seed0)" in script
  assert '--point="${RUNS[$SLURM_ARRAY_TASK_ID]}"' in script
  r = subprocess.run(["bash", "-n", str(root / "sweep.sbatch")], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr


def test_misspelt_override_fails_before_any_training(data_dir, tmp_path):
  root = tmp_path / "sweep"
  r = run_python(sweep_args(root, data_dir, arg="typo"))
  assert r.returncode != 0
  last = r.stderr.strip().splitlines()[-1]
  assert last == ("avjax-sweep: sweep point 'lr=0.001': config key 'optimizer.lrr' "
                  "does not exist"), r.stderr[-2000:]
  assert not root.exists()
