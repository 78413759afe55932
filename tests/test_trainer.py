"""The trainer: mesh equivalence, exact resume after SIGKILL, config errors, NaN stops."""
import json
import os
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from avjax import checkpoint
from tests.conftest import ROOT, run_python, tiny_config

SCRIPTS = os.path.join(ROOT, "tests", "scripts")


def test_four_devices_match_one(data_dir, tmp_path):
  outs = {}
  for n in (1, 4):
    out = tmp_path / f"mesh{n}.npz"
    r = run_python([os.path.join(SCRIPTS, "mesh_steps.py"), str(n), str(data_dir), str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    outs[n] = dict(np.load(out))
  np.testing.assert_allclose(outs[1]["losses"], outs[4]["losses"], rtol=1e-5, atol=1e-6)
  assert outs[1].keys() == outs[4].keys()
  for k in outs[1]:
    np.testing.assert_allclose(outs[1][k], outs[4][k], rtol=1e-4, atol=1e-5, err_msg=k)
  # The steps did something: losses moved and are not all identical.
  assert len(set(np.round(outs[1]["losses"], 6))) > 1


def _final_state(workdir, step):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(data_dir, tmp_path):
  n = 4
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  script = os.path.join(SCRIPTS, "train_until.py")
  # The uninterrupted job in this process (one process start fewer), the killed
  # one as a separate process that really dies.
  from avjax import train
  from tests.scripts import train_until
  train.train_and_evaluate(train_until.make_config(str(data_dir), 2 * n, every=n), str(straight))
  r = run_python([script, str(data_dir), str(killed), str(2 * n), "--every", str(n),
                  "--kill_after", str(n)])
  assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-3000:])
  assert not os.path.isdir(killed / "checkpoints" / str(2 * n))
  # The killed job's lock is left behind, naming a pid that is gone.
  assert json.load(open(killed / "lock.json"))["pid"] > 0
  r = run_python([script, str(data_dir), str(killed), str(2 * n), "--every", str(n)])
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"resumed from step {n}" in r.stdout
  assert "took over the workdir lock" in r.stderr and not os.path.exists(killed / "lock.json")
  a, b = _final_state(straight, 2 * n), _final_state(killed, 2 * n)
  leaves_a = jax.tree_util.tree_leaves_with_path(a)
  leaves_b = dict(jax.tree_util.tree_leaves_with_path(b))
  assert len(leaves_a) == len(leaves_b) > 10
  for path, x in leaves_a:
    np.testing.assert_array_equal(np.asarray(x), np.asarray(leaves_b[path]),
                                  err_msg=jax.tree_util.keystr(path))
  # TensorBoard shows each step once: the resumed attempt's file starts by
  # purging what the killed one logged after step n.
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(str(killed))
  acc.Reload()
  steps = [e.step for e in acc.Scalars("train/loss")]
  assert steps == list(range(1, 2 * n + 1)), steps
  losses = {e.step: e.value for e in acc.Scalars("train/loss")}
  acc_straight = event_accumulator.EventAccumulator(str(straight))
  acc_straight.Reload()
  assert losses == {e.step: e.value for e in acc_straight.Scalars("train/loss")}


def test_a_profile_of_two_steps_is_written_and_changes_no_number(data_dir, tmp_path):
  """config.profile traces steps 3-4 (a trace file per host, TensorBoard's
  layout); the run with it off gives the same loss at step 10 and the same
  parameters, bit for bit."""
  from tensorboard.backend.event_processing import event_accumulator

  from avjax import train
  runs = {}
  for name, num_steps in (("off", 0), ("on", 2)):
    config = tiny_config("avenet", data_dir, total_steps=10, log_every=10)
    config.checkpoint.update(every=10, async_save=False)
    config.profile.update(start_step=3, num_steps=num_steps)
    train.train_and_evaluate(config, str(tmp_path / name))
    acc = event_accumulator.EventAccumulator(str(tmp_path / name))
    acc.Reload()
    runs[name] = {e.step: e.value for e in acc.Scalars("train/loss")}
  assert list(runs["off"]) == [10] and runs["on"] == runs["off"]
  traces = list((tmp_path / "on" / "profile" / "plugins" / "profile").glob("*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0, traces
  assert not (tmp_path / "off" / "profile").exists()
  a, b = _final_state(tmp_path / "off", 10), _final_state(tmp_path / "on", 10)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_config_typo_is_rejected_naming_the_key(tmp_path):
  r = run_python(["-m", "avjax.main", "--config=configs/avenet.py:tiny", f"--workdir={tmp_path}",
            "--config.optimizer.lrr=0.1"], cwd=ROOT)
  assert r.returncode != 0
  assert "lrr" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_locked_config_rejects_new_keys():
  from configs import avenet
  c = avenet.get_config("tiny")
  c.lock()
  with pytest.raises(AttributeError, match="batchsize"):
    c.batchsize = 3


def test_nonfinite_loss_stops_with_the_step(data_dir, tmp_path):
  from avjax import train
  config = tiny_config("avenet", data_dir, total_steps=6, log_every=3)
  config.optimizer.lr = 1e30  # blows up within a step or two
  config.evals.avc.every = 10**9
  with pytest.raises(train.NonFiniteError, match=r"at step \d"):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.path.isdir(tmp_path / "checkpoints" / "6")
  steps = [d for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
  assert steps == []


@pytest.mark.parametrize("name", ["l3", "avenet", "avolnet"])
def test_one_config_trains_and_evaluates(name, data_dir, tmp_path):
  from avjax import train
  config = tiny_config(name, data_dir, total_steps=2, log_every=1)
  config.checkpoint.every = 2
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert 0.0 <= metrics["avc_accuracy"] <= 1.0
  assert metrics["avc_examples"] == 2 * 10  # every validation clip, once positive, once negative
  assert os.path.isdir(tmp_path / "checkpoints" / "2")
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))


@pytest.mark.parametrize("marginals", ["uniform", "gauss"])
def test_selavi_trains_and_is_judged_by_its_clusters(data_dir, tmp_path, capsys, marginals):
  """No correspondence head: the clustering evaluator scores the cluster heads'
  own assignments, and its NMI picks the best checkpoint."""
  from avjax import train
  config = tiny_config("selavi", data_dir, total_steps=4, log_every=1)
  config.model.marginals = marginals
  config.checkpoint.every = 2
  config.evals.clustering.update(every=2, batch_size=8)
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert "avc_accuracy" not in metrics
  for m in ("frame", "audio"):
    assert 0.0 <= metrics[f"clustering_{m}_nmi"] <= 1.0
    assert 0.0 <= metrics[f"clustering_{m}_accuracy"] <= 1.0
  printed = re.findall(r"step (\d+): .*clustering_frame_nmi=([0-9.]+)", capsys.readouterr().out)
  nmi = {int(step): float(v) for step, v in printed}
  assert sorted(nmi) == [2, 4]
  best = checkpoint.make_manager(str(tmp_path), config).best_step()
  assert nmi[best] == max(nmi.values())


def test_avc_evaluator_refuses_a_model_without_a_correspondence_head(data_dir, tmp_path):
  from avjax import train
  config = tiny_config("selavi", data_dir, total_steps=2)
  config.evals.avc.every = 2
  with pytest.raises(ValueError, match="config.evals.avc: SeLaVi has no correspondence head"):
    train.train_and_evaluate(config, str(tmp_path))


def test_contrastive_config_validates_by_retrieval(data_dir, tmp_path):
  from avjax import train
  config = tiny_config("avcontrastive", data_dir, total_steps=2, log_every=1)
  config.checkpoint.every = 2
  config.evals.retrieval.update(every=2, batch_size=8)
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert "avc_accuracy" not in metrics
  assert 0.0 <= metrics[config.checkpoint.best_metric] <= 1.0


@pytest.mark.slow
def test_two_processes_train_as_one_job(data_dir, tmp_path):
  """A multi-host rehearsal: 2 processes, jax.distributed, per-host shards."""
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  overrides = [f"--config.data.dir={data_dir}", "--config.data.resize=40", "--config.data.crop=32",
               "--config.model.vision_widths=(4,8,8,8)", "--config.model.audio_widths=(4,8,8,8)",
               "--config.batch_size=8", "--config.evals.avc.batch_size=8",
               "--config.evals.retrieval.every=4", "--config.evals.retrieval.batch_size=8",
               "--config.evals.retrieval.k=5", "--config.evals.clustering.every=4",
               "--config.evals.clustering.batch_size=8",
               "--config.total_steps=4", "--config.checkpoint.every=2",
               "--config.progress_bar=False"]
  procs = [subprocess.Popen(
      [sys.executable, "-m", "avjax.main", "--multihost", f"--coordinator=localhost:{port}",
       "--num_processes=2", f"--process_id={i}", "--config=configs/avenet.py:tiny",
       f"--workdir={tmp_path}", *overrides],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  # Each host evaluated its own shards; together every clip counted once.
  assert re.search(r"avc_examples +20\n", outs[0][0]), outs[0][0]
  assert sorted(os.listdir(tmp_path / "checkpoints"))[:2] == ["2", "4"]
  # The gathering evaluators saw every host's clips: one process evaluating the
  # same checkpoint gets the same figures.
  with open(tmp_path / "final_metrics.json") as f:
    two = json.load(f)
  r = run_python(["-m", "avjax.evaluate", "--config=configs/avenet.py:tiny",
                  f"--workdir={tmp_path}", "--checkpoint=4", "--evals=retrieval,clustering",
                  "--nopictures", *overrides])
  assert r.returncode == 0, r.stderr[-3000:]
  one = json.load(open(next((tmp_path / "eval").glob("metrics_*_step4.json"))))["metrics"]
  for k, v in one.items():
    assert k in two, k
    tol = 1e-5 if k.startswith("retrieval") else 0.05  # k-means may move a tie
    assert abs(two[k] - v) <= tol, (k, two[k], v)


def test_retrieval_evaluator_reports_four_directions(data_dir, tmp_path):
  from avjax import train
  config = tiny_config("avenet", data_dir, total_steps=2, log_every=1)
  config.evals.retrieval.every = 2
  config.evals.retrieval.batch_size = 8
  config.evals.retrieval.k = 5
  metrics = train.train_and_evaluate(config, str(tmp_path))
  for direction in ("im_im", "im_aud", "aud_im", "aud_aud"):
    assert 0.0 <= metrics[f"retrieval_{direction}_ndcg@5"] <= 1.0
    assert 0.0 <= metrics[f"retrieval_{direction}_recall@5"] <= 1.0
  assert "avc_accuracy" in metrics  # both evaluators ran


def test_rerun_of_a_finished_job_evaluates_the_restored_state(data_dir, tmp_path):
  from avjax import train
  config = tiny_config("avenet", data_dir, total_steps=2, log_every=1)
  config.checkpoint.every = 2
  first = train.train_and_evaluate(config, str(tmp_path))
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again == first


def test_best_checkpoint_is_ranked_at_every_evaluation(data_dir, tmp_path, capsys):
  """Saves every 3 steps, AVC every 2: each evaluation saves the state it scored,
  so "best" is the highest accuracy printed, whichever step it fell on."""
  from avjax import train
  config = tiny_config("avenet", data_dir, total_steps=7, log_every=1)
  config.optimizer.lr = 3e-3
  config.checkpoint.update(every=3, keep=10)
  config.evals.avc.every = 2
  train.train_and_evaluate(config, str(tmp_path))
  printed = re.findall(r"step (\d+): avc_accuracy=([0-9.]+)", capsys.readouterr().out)
  accuracy = {int(step): float(v) for step, v in printed}
  assert sorted(accuracy) == [2, 4, 6, 7]
  mngr = checkpoint.make_manager(str(tmp_path), config)
  assert set(accuracy) <= set(mngr.all_steps())  # each evaluated state is on disk
  assert 3 in mngr.all_steps()                   # and the regular saves too
  assert accuracy[mngr.best_step()] == max(accuracy.values())
  assert checkpoint.checkpoint_step(mngr, "best") == mngr.best_step()


def test_evaluators_run_on_their_own_schedules(data_dir, tmp_path, capsys):
  from avjax import train
  config = tiny_config("avenet", data_dir, total_steps=4, log_every=1)
  config.evals.avc.every = 3
  config.evals.retrieval.update(every=2, batch_size=8, k=5)
  metrics = train.train_and_evaluate(config, str(tmp_path))
  lines = dict(re.findall(r"step (\d+): (.*)", capsys.readouterr().out))
  assert "avc_accuracy" not in lines["2"] and "retrieval_im_aud_ndcg@5" in lines["2"]
  assert "avc_accuracy" in lines["3"] and "retrieval" not in lines["3"]
  assert "avc_accuracy" in lines["4"] and "retrieval_im_aud_ndcg@5" in lines["4"]  # the end: all
  assert {"avc_accuracy", "retrieval_im_aud_ndcg@5"} <= set(metrics)


def test_a_loss_that_does_not_fit_the_head_is_a_config_error(data_dir, tmp_path):
  from avjax import train
  config = tiny_config("avolnet", data_dir, total_steps=1)
  config.losses.avc_softmax_xent = 1.0
  with pytest.raises(ValueError, match="config.losses.avc_softmax_xent: model 'avolnet' has a "
                                       "sigmoid head; use avc_sigmoid_xent"):
    train.train_and_evaluate(config, str(tmp_path))


def test_cosine_config_trains_on_labels_and_validates_by_retrieval(data_dir, tmp_path):
  """The labelled baseline: training batches carry the clips' multi-hot labels,
  which its losses read; the shared classifier needs its classes."""
  from avjax import config_check, train
  config = tiny_config("cosine", data_dir, total_steps=2, log_every=1)
  config.losses.shared_classifier = 0.5
  config.model.classifier_classes = 3
  with pytest.raises(ValueError, match=r"classifier_classes=3: the training data has \d+ classes"):
    train.train_and_evaluate(config, str(tmp_path / "wrong"))
  with open(data_dir / "train" / "manifest.json") as f:
    config.model.classifier_classes = len(json.load(f)["labels"])
  config.checkpoint.every = 2
  config.evals.retrieval.update(every=2, batch_size=8)
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert "avc_accuracy" not in metrics
  assert 0.0 <= metrics[config.checkpoint.best_metric] <= 1.0
  config.model.classifier_classes = 0
  with pytest.raises(ValueError, match="config.losses.shared_classifier: the model has no shared"):
    config_check.check(config)
