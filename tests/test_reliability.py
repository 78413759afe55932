"""What a demanding user breaks: two jobs on one workdir, a shard truncated mid-run,
a corrupt checkpoint, stale shards, and bad command lines (each said in one line)."""
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from avjax import workdir as workdir_lib
from data_pipelines import ingest
from data_pipelines import reader as reader_lib
from tests.conftest import ROOT, run_python, tiny_config

SCRIPT = os.path.join(ROOT, "tests", "scripts", "train_until.py")
ENV = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
ENV.pop("XLA_FLAGS", None)


def small_overrides(data_dir):
  return [f"--config.data.dir={data_dir}", "--config.data.resize=40", "--config.data.crop=32",
          "--config.model.vision_widths=(4,8,8,8)", "--config.model.audio_widths=(4,8,8,8)",
          "--config.batch_size=8", "--config.evals.avc.batch_size=8",
          "--config.progress_bar=False"]


# ----------------------------------------------------------------------------
# A workdir belongs to one job
# ----------------------------------------------------------------------------
def test_a_second_job_on_a_workdir_is_refused_naming_the_first(data_dir, tmp_path):
  work, release = tmp_path / "w", tmp_path / "release"
  first = subprocess.Popen([sys.executable, SCRIPT, str(data_dir), str(work), "4", "--every", "2",
                            "--hold_at", "3", str(release)], env=ENV, cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    while not os.path.exists(f"{work}.holding") and time.time() < deadline:
      assert first.poll() is None, first.communicate()[1][-3000:]
      time.sleep(0.2)
    with open(work / "config.json") as f:
      config_before = f.read()
    r = run_python(["-m", "avjax.main", "--config=configs/avenet.py:tiny", f"--workdir={work}",
                    *small_overrides(data_dir)], cwd=ROOT)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr[-3000:]
    assert f"pid {first.pid}" in lines[0] and socket.gethostname() in lines[0], lines[0]
    assert "in use by another job" in lines[0]
    # Nothing of the first job's changed (its checkpoints are checked when it ends).
    with open(work / "config.json") as f:
      assert f.read() == config_before
  finally:
    release.touch()
    out, err = first.communicate(timeout=300)
  assert first.returncode == 0, err[-3000:]
  assert sorted(d for d in os.listdir(work / "checkpoints") if d.isdigit()) == ["2", "4"]
  assert not os.path.exists(work / "lock.json")  # released at the end


def test_lock_liveness_rules(tmp_path):
  """A live holder on this host is refused; a dead pid or a stale heartbeat from
  another host is taken over; a takeover is noticed by the old holder."""
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    now = time.time()
    live = workdir_lib.Holder(socket.gethostname(), sleeper.pid, now, now - 3600, "x")
    lock = workdir_lib.Lock(str(tmp_path), settle_s=0.01)
    lock._write(live, exclusive=False)
    with pytest.raises(workdir_lib.WorkdirError, match=f"pid {sleeper.pid}"):
      lock.acquire()
  finally:
    sleeper.kill()
    sleeper.wait()
  lock.acquire()  # the same holder, its pid now gone: taken over
  assert lock.read().token == lock.me.token
  lock.release()
  now = time.time()
  fresh = workdir_lib.Holder("other-host", 1, now, now, "y")
  lock = workdir_lib.Lock(str(tmp_path), settle_s=0.01, stale_after_s=60)
  lock._write(fresh, exclusive=False)
  with pytest.raises(workdir_lib.WorkdirError, match="other-host"):
    lock.acquire()
  lock._write(workdir_lib.Holder("other-host", 1, now - 600, now - 120, "y"), exclusive=False)
  lock.acquire()  # its heartbeat is two minutes old: the job is gone
  beating = workdir_lib.Lock(str(tmp_path), heartbeat_s=0.05)
  beating.me = lock.me  # the holder, with a fast heartbeat
  beating._start_heartbeat()
  lock._write(workdir_lib.Holder("third-host", 2, now, time.time(), "z"), exclusive=False)
  time.sleep(0.5)
  with pytest.raises(workdir_lib.WorkdirError, match="another job took this workdir"):
    beating.check()
  beating.release()


def test_a_different_config_is_refused_unless_asked(data_dir, tmp_path):
  from avjax import train
  config = tiny_config("avenet", data_dir, total_steps=2, log_every=1)
  train.train_and_evaluate(config, str(tmp_path))
  config.optimizer.lr = 0.5
  config.total_steps = 3
  with pytest.raises(workdir_lib.WorkdirError, match=r"optimizer.lr: 0.002 -> 0.5.*total_steps: 2 -> 3"):
    train.train_and_evaluate(config, str(tmp_path))
  config.progress_bar = True  # display only: never a change
  metrics = train.train_and_evaluate(config, str(tmp_path), config_changes_ok=True)
  assert "avc_accuracy" in metrics
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["optimizer"]["lr"] == 0.5


# ----------------------------------------------------------------------------
# A crash never loses a saved checkpoint; a corrupt one falls back
# ----------------------------------------------------------------------------
def test_a_shard_truncated_mid_run_is_named_and_the_last_save_completes(data_dir, tmp_path):
  data = tmp_path / "data"
  shutil.copytree(data_dir, data)
  shard = sorted((data / "train").glob("*.tfrecord"))[1]
  work = tmp_path / "w"
  r = run_python([SCRIPT, str(data), str(work), "40", "--every", "1", "--shuffle_buffer", "1",
                  "--truncate_at", "2", str(shard)])
  lines = r.stderr.strip().splitlines()
  assert r.returncode != 0, r.stderr[-3000:]
  assert lines[-1].startswith(f"train_until: {shard}: record ") and "truncated" in lines[-1], \
      r.stderr[-3000:]
  names = os.listdir(work / "checkpoints")
  assert not [n for n in names if "tmp" in n], names  # no save left half-written
  last = max(int(n) for n in names if n.isdigit())
  assert last >= 2
  restored = read_state(work, last)  # the newest save reads back whole
  assert int(restored["step"]) == last


def read_state(workdir, step):
  import orbax.checkpoint as ocp
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))


def corrupt_truncate(step_dir):
  arrays = [os.path.join(d, f) for d, _, fs in os.walk(step_dir / "state") for f in fs
            if os.sep + "d" + os.sep in os.path.join(d, f)]
  biggest = max(arrays, key=os.path.getsize)
  os.truncate(biggest, os.path.getsize(biggest) // 3)


def corrupt_metadata(step_dir):
  os.remove(step_dir / "state" / "_METADATA")


def test_unreadable_checkpoints_fall_back(data_dir, tmp_path, capsys):
  """The latest checkpoint truncated and the one before it without metadata: the
  run says so once for each, resumes from the third, and ends bitwise equal to
  an uninterrupted run."""
  from avjax import train
  config = tiny_config("avenet", data_dir, total_steps=6, log_every=1)
  config.checkpoint.update(every=2, keep=5, async_save=False)
  config.evals.avc.every = 10**9
  train.train_and_evaluate(config, str(tmp_path / "straight"))
  work = tmp_path / "w"
  shutil.copytree(tmp_path / "straight", work)
  corrupt_truncate(work / "checkpoints" / "6")
  corrupt_metadata(work / "checkpoints" / "4")
  # An orphaned save a kill left behind is cleaned up too.
  (work / "checkpoints" / "8.orbax-checkpoint-tmp-1234").mkdir()
  capsys.readouterr()
  train.train_and_evaluate(config, str(work))
  out, err = capsys.readouterr()
  said = [l for l in out.splitlines() if "unreadable" in l]
  assert len(said) == 2, out
  assert said[0].startswith("checkpoint 6 is unreadable (cannot read array "), said
  assert said[1].startswith("checkpoint 4 is unreadable (FileNotFoundError: state/_METADATA "
                            "missing)"), said
  assert "resumed from step 2" in out
  assert "Traceback" not in err and "Event loop is closed" not in err, err[-2000:]
  moved = sorted(os.listdir(f"{work}/checkpoints.unreadable"))
  assert [m.split(".")[0] for m in moved] == ["4", "6"]
  assert all(os.path.exists(f"{work}/checkpoints.unreadable/{m}/restore_errors.txt") for m in moved)
  assert sorted(os.listdir(work / "checkpoints")) == ["2", "4", "6"]
  a = jax.tree_util.tree_leaves_with_path(read_state(tmp_path / "straight", 6))
  b = dict(jax.tree_util.tree_leaves_with_path(read_state(work, 6)))
  assert len(a) > 10
  for path, x in a:
    np.testing.assert_array_equal(np.asarray(x), np.asarray(b[path]),
                                  err_msg=jax.tree_util.keystr(path))


# ----------------------------------------------------------------------------
# Shards match their manifest
# ----------------------------------------------------------------------------
def test_a_stale_shard_beside_a_manifest_is_refused_by_name(data_dir, tmp_path):
  split = tmp_path / "train"
  shutil.copytree(data_dir / "train", split)
  stale = split / "clips-00000-of-00009.tfrecord"
  shutil.copy(sorted(split.glob("*.tfrecord"))[0], stale)
  with pytest.raises(reader_lib.DataError, match=r"not in its manifest.*clips-00000-of-00009"):
    reader_lib.resolve_files(str(tmp_path), "train")
  stale.unlink()
  missing = sorted(split.glob("*.tfrecord"))[-1]
  missing.unlink()
  with pytest.raises(reader_lib.DataError, match=f"missing: .*{missing.name}"):
    reader_lib.resolve_files(str(tmp_path), "train")


def test_prepare_refuses_another_jobs_output_unless_overwrite(videos_dir, tmp_path):
  src = videos_dir / "validation"
  out = tmp_path / "out"
  settings = ingest.PrepareSettings(sample_rate=8000, frame_size=40, spectrogram=None)
  kw = dict(labels_csv=str(src / "labels.csv"), settings=settings, workers=1, quiet=True)
  ingest.prepare(str(src), str(out), files_per_shard=5, **kw)  # 2 shards
  assert sorted(p.name for p in out.glob("*.tfrecord")) == [
      "clips-00000-of-00002.tfrecord", "clips-00001-of-00002.tfrecord"]
  with pytest.raises(ingest.PrepareError, match="clips-00000-of-00002.tfrecord.*--overwrite"):
    ingest.prepare(str(src), str(out), files_per_shard=4, **kw)  # 3 shards
  other = ingest.PrepareSettings(sample_rate=8000, frame_size=32, spectrogram=None)
  with pytest.raises(ingest.PrepareError, match="another prepare job"):
    ingest.prepare(str(src), str(out), files_per_shard=5, **{**kw, "settings": other})
  manifest = ingest.prepare(str(src), str(out), files_per_shard=4, overwrite=True, **kw)
  assert sorted(manifest["shards"]) == sorted(p.name for p in out.glob("*.tfrecord"))
  assert len(manifest["shards"]) == 3
  assert reader_lib.resolve_files(str(tmp_path), "out")  # and they read as a split


# ----------------------------------------------------------------------------
# Every user error is one line
# ----------------------------------------------------------------------------
def bad_command_lines(data_dir, work, ckpt_workdir):
  """{case: (arguments, what its one line must say[, environment])}; training cases
  get a workdir each."""
  n = iter(range(100))
  closed_port = _closed_port()
  no_storage = {"STORAGE_EMULATOR_HOST": f"http://localhost:{closed_port}"}
  train = lambda: ["-m", "avjax.main", f"--workdir={work}/train{next(n)}"]
  tiny = "--config=configs/avenet.py:tiny"
  ev = ["-m", "avjax.evaluate", tiny, *small_overrides(data_dir)]
  return {
      "missing config file": ([*train(), "--config=configs/nosuch.py"], "configs/nosuch.py: no such file"),
      "zero batch": ([*train(), tiny, "--config.batch_size=0"], "config.batch_size=0"),
      "negative batch": ([*train(), tiny, "--config.batch_size=-1"], "config.batch_size=-1"),
      "negative lr": ([*train(), tiny, "--config.optimizer.lr=-0.1"], "config.optimizer.lr=-0.1"),
      "unknown model": ([*train(), tiny, "--config.model.name=foo"], "config.model.name: unknown model 'foo'"),
      "unknown loss": ([*train(), tiny, "--config.losses.foo_loss=1"], "--config.losses.foo_loss: no such key"),
      "profile before step 1": ([*train(), tiny, "--config.profile.num_steps=2",
                                 "--config.profile.start_step=0"], "config.profile.start_step=0"),
      "config typo": ([*train(), tiny, "--config.optimizer.lrr=1"], 'Did you mean "lr"'),
      "empty split": ([*train(), tiny, *small_overrides(data_dir), "--config.data.train_split=nosuch"],
                      "no TFRecord shards match"),
      # Both splits globs: an eval split left to the embedded dataset would first
      # generate it where the cache lacks it (a fresh machine), a line of its own.
      "glob without dir": ([*train(), tiny, "--config.data.train_split=/nonexistent/*.tfrecord",
                            "--config.data.eval_split=/nonexistent/*.tfrecord"],
                           "no TFRecord shards match '/nonexistent/*.tfrecord'"),
      "evaluate, no checkpoints": ([*ev, f"--workdir={work}/none"], "checkpoints: not found; train first"),
      "evaluate, bad split": ([*ev, f"--workdir={ckpt_workdir}", "--split=nosuch"],
                              "no TFRecord shards match"),
      "evaluate, bad step": ([*ev, f"--workdir={ckpt_workdir}", "--checkpoint=7"],
                             "checkpoint '7': use best, latest or one of the steps"),
      "embed, empty folder": (["-m", "avjax.embed", "audio", f"{work}/empty", f"--workdir={ckpt_workdir}",
                               f"--output={work}/emb"], "no input files in"),
      "embed, missing file": (["-m", "avjax.embed", "audio", f"{work}/nope.wav",
                               f"--workdir={ckpt_workdir}", f"--output={work}/emb"],
                              "nope.wav: no such file"),
      "prepare, bad input": (["-m", "avjax.prepare", f"--input={work}/none", f"--output={work}/p"],
                             "not a directory or an existing .csv file"),
      "prepare, nothing decodable": (["-m", "avjax.prepare", f"--input={work}/garbage",
                                      f"--output={work}/g", "--workers=1"],
                                     f"{work}/g: no clip prepared; all 2 input file(s) were skipped"),
      "prepare, overlapping time splits": (["-m", "avjax.prepare", f"--input={work}/garbage",
                                            f"--output={work}/s", "--splits=a=0:0.6,b=0.5:1"],
                                           "--splits 'a=0:0.6,b=0.5:1': ranges 0.0:0.6 and 0.5:1.0 overlap"),
      "the library module run as a command": (["-m", "data_pipelines.ingest", f"--input={work}"],
                                              "is a library module: run avjax-prepare"),
      "workdir is a file": (["-m", "avjax.main", tiny, *small_overrides(data_dir),
                             f"--workdir={work}/a_file"], f"--workdir={work}/a_file: is a file"),
      "workdir cannot be written": (["-m", "avjax.main", tiny, *small_overrides(data_dir),
                                     "--workdir=/proc/avjax-work"],
                                    "--workdir=/proc/avjax-work: cannot write there"),
      "export, hop between samples": (["-m", "avjax.export", f"--workdir={ckpt_workdir}",
                                       f"--output={work}/x", "--hop=0.00001"],
                                      "--hop=1e-05: must be a whole number of samples"),
      "export, unknown platform": (["-m", "avjax.export", f"--workdir={ckpt_workdir}",
                                    f"--output={work}/x", "--platforms=cpu,metal"],
                                   "--platforms=cpu,metal: choose from cpu,cuda,tpu"),
      # Storage that takes no connection (a local port nothing listens on): said at
      # once, naming the URL, instead of after a minute of the client's retries.
      "gs:// data, storage unreachable": (
          [*train(), tiny, "--config.data.dir=gs://b/prepared"],
          f"gs://b/prepared/train/*.tfrecord*: cannot reach localhost:{closed_port}",
          no_storage),
      "gs:// workdir, storage unreachable": (
          ["-m", "avjax.main", tiny, *small_overrides(data_dir), "--workdir=gs://b/work"],
          f"gs://b/work: cannot reach localhost:{closed_port}", no_storage),
      "prepare, gs:// input unreachable": (
          ["-m", "avjax.prepare", "--input=gs://b/videos", f"--output={work}/q"],
          f"gs://b/videos: cannot reach localhost:{closed_port}", no_storage),
  }


def _closed_port() -> int:
  """A localhost port that was free a moment ago: nothing listens on it."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_bad_command_lines_fail_in_one_line(data_dir, tmp_path):
  from avjax import train
  ckpt = tmp_path / "trained"
  config = tiny_config("avenet", data_dir, total_steps=1, log_every=1)
  train.train_and_evaluate(config, str(ckpt))
  work = tmp_path / "work"
  (work / "empty").mkdir(parents=True)
  (work / "garbage").mkdir()
  for name in ("a.mp4", "b.mkv"):  # named as videos, holding no video
    (work / "garbage" / name).write_bytes(b"not a video" * 100)
  (work / "a_file").write_text("")
  cases = bad_command_lines(data_dir, work, ckpt)

  def timed_run(case):
    args, _, *env = case
    start = time.monotonic()
    r = run_python(args, env_overrides=env[0] if env else None, cwd=ROOT)
    return r, time.monotonic() - start

  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = dict(zip(cases, pool.map(timed_run, cases.values())))
  for name, (args, expected, *_) in cases.items():
    r, seconds = results[name]
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode != 0, (name, r.stdout[-1000:])
    assert len(lines) == 1 and expected in lines[0], (name, r.stderr[-2000:])
    assert seconds < 120, (name, seconds)  # said promptly, not after retries
  # --verbose shows the traceback instead.
  r = run_python([*cases["evaluate, bad step"][0], "--verbose"], cwd=ROOT)
  assert r.returncode != 0 and "Traceback" in r.stderr


# Runs module argv[1] as __main__ the way a shell starts it: SIGINT handled by
# Python and unblocked. A test worker's disposition may differ (an ignored or
# blocked signal is inherited across exec, and the command then runs to its end
# and exits 0); resetting it in the child itself needs no fork-time hook, which
# is unsafe in a threaded process.
AS_FROM_A_SHELL = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def test_ctrl_c_in_prepare_is_one_line_and_exit_130(videos_dir, tmp_path):
  """Ctrl-C reaches the terminal's whole process group, pool workers included:
  the command says it was interrupted, in one line, and exits 130."""
  src = videos_dir / "validation"
  many = tmp_path / "many"
  many.mkdir()
  videos = sorted(src.glob("*.mp4"))
  for i in range(1000):  # enough work that the signal lands mid-job, on an idle machine too
    (many / f"{i:03d}.mp4").symlink_to(videos[i % len(videos)])
  out = tmp_path / "out"
  args = [f"--input={many}", f"--output={out}", "--workers=2", "--sample_rate=8000",
          "--frame_size=40"]
  proc = subprocess.Popen([sys.executable, "-c", AS_FROM_A_SHELL, "avjax.prepare", *args],
                          cwd=ROOT, env=ENV, start_new_session=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 120
  while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.2)
  time.sleep(2)
  assert proc.poll() is None, "prepare finished before it could be interrupted"
  os.killpg(proc.pid, signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  lines = [l for l in stderr.splitlines() if l.strip()]
  assert proc.returncode == 130, stderr[-2000:]
  assert lines == ["avjax-prepare: interrupted"], stderr[-2000:]


def test_missing_data_leaves_the_workdir_for_the_corrected_command(data_dir, tmp_path):
  """A first start that fails on missing data records no config, so the same
  workdir takes the corrected command without --config_changes_ok."""
  work = tmp_path / "w"
  args = ["-m", "avjax.main", "--config=configs/avenet.py:tiny", f"--workdir={work}",
          *small_overrides(data_dir), "--config.total_steps=1"]
  wrong = [a.replace(f"--config.data.dir={data_dir}", f"--config.data.dir={tmp_path}/nodata")
           for a in args]
  r = run_python(wrong, cwd=ROOT)
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode != 0 and len(lines) == 1 and "nodata" in lines[0], r.stderr[-2000:]
  assert not (work / "config.json").exists()
  r = run_python(args, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
