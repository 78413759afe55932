"""The evaluate command and embedding extraction, on a briefly trained tiny AVOL-Net."""
import json
import os
import shutil
import wave

import numpy as np
import pytest
from PIL import Image

from avjax import embed, evaluate, train
from tests.conftest import VAL, run_python, tiny_config

# One worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("test_evaluate")

ALL_EVALS = ["avc", "retrieval", "localisation", "linear_probe", "clustering"]


def eval_config(data_dir):
  config = tiny_config("avolnet", data_dir, total_steps=4)
  config.checkpoint.every = 2
  config.checkpoint.async_save = False
  for name in ALL_EVALS:
    config.evals[name].batch_size = 8
  config.evals.retrieval.k = 5
  config.evals.retrieval.pictures = 2
  config.evals.localisation.pictures = 3
  config.evals.linear_probe.max_iter = 50
  config.evals.clustering.num_clusters = 3
  return config


@pytest.fixture(scope="module")
def workdir(data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("avol")
  train.train_and_evaluate(eval_config(data_dir), str(out))
  return out


def test_evaluate_writes_metrics_events_and_pictures(data_dir, workdir):
  record = evaluate.evaluate(eval_config(data_dir), str(workdir), evals=ALL_EVALS,
                             split="validation")
  m = record["metrics"]
  assert record["step"] in (2, 4) and set(record["splits"].values()) == {"validation"}
  assert m["avc_examples"] == 2 * VAL.num_clips and m["localisation_examples"] == VAL.num_clips
  for key in ("retrieval_aud_im_ndcg@5", "localisation_pointing", "localisation_ciou_fixed",
              "localisation_ciou_median", "localisation_auc_fixed", "localisation_ap50_median",
              "linear_probe_audio_accuracy_mean", "linear_probe_random_init_frame_accuracy_std",
              "clustering_audio_nmi", "clustering_frame_ari", "clustering_frame_accuracy"):
    assert 0.0 <= m[key] <= 1.0, key
  with open(workdir / "eval" / f"metrics_validation_step{record['step']}.json") as f:
    assert json.load(f)["metrics"] == m
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(workdir / "eval"))
  names = sorted(os.path.basename(p) for p in record["pictures"])
  assert names == ["localisation.png", "retrieval_aud_im_000.png", "retrieval_aud_im_001.png",
                   "retrieval_im_im_000.png", "retrieval_im_im_001.png"]
  for p in record["pictures"]:
    with Image.open(p) as im:
      assert im.format == "PNG" and im.size[0] > 100


def test_inference_needs_no_optimiser(data_dir, workdir, tmp_path, monkeypatch):
  """avjax-evaluate and avjax-embed read parameters and batch statistics only:
  an optimiser or schedule unlike training's changes nothing, and no update
  function (nor optimiser) is built."""
  def forbidden(*args, **kwargs):
    raise AssertionError("inference built the training update")
  monkeypatch.setattr(train, "make_update_fn", forbidden)
  monkeypatch.setattr(train, "make_optimizer", forbidden)
  config = eval_config(data_dir)
  reference = evaluate.evaluate(config, str(workdir), evals=["avc"], checkpoint="latest",
                                pictures=False)["metrics"]
  other = eval_config(data_dir)
  other.optimizer.update(name="adamw", lr=0.5, b1=0.5)
  other.schedule.update(name="warmup_cosine", warmup_steps=3)
  record = evaluate.evaluate(other, str(workdir), evals=["avc"], checkpoint="latest",
                             pictures=False)
  assert record["metrics"] == reference and record["step"] == 4

  copy = tmp_path / "workdir"
  shutil.copytree(workdir, copy)
  with open(copy / "config.json") as f:
    saved = json.load(f)
  saved["optimizer"].update(name="adamw", lr=0.5, b1=0.5)
  saved["schedule"].update(name="warmup_cosine", warmup_steps=3)
  with open(copy / "config.json", "w") as f:
    json.dump(saved, f)
  frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), np.uint8)
  a = embed.Embedder(str(workdir), checkpoint="latest", batch_size=4).embed_frames(frames)
  b = embed.Embedder(str(copy), checkpoint="latest", batch_size=4).embed_frames(frames)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (3, 128) and np.all(np.isfinite(a))


def test_evaluate_cli_random_init_and_checkpoint_choice(data_dir, workdir):
  args = ["-m", "avjax.evaluate", "--config=configs/avolnet.py:tiny", f"--workdir={workdir}",
          f"--config.data.dir={data_dir}", "--config.data.resize=40", "--config.data.crop=32",
          "--config.model.vision_widths=(4,8,8,8)", "--config.model.audio_widths=(4,8,8,8)",
          "--config.evals.avc.batch_size=8", "--evals=avc", "--nopictures"]
  r = run_python(args + ["--random_init"], cwd=os.path.dirname(os.path.dirname(__file__)))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "random init (avc: validation)" in r.stdout and "avc_accuracy" in r.stdout
  assert os.path.exists(workdir / "eval" / "metrics_validation_random_init.json")
  r = run_python(args + ["--checkpoint=3"], cwd=os.path.dirname(os.path.dirname(__file__)))
  assert r.returncode != 0 and "checkpoint '3': use best, latest or one of the steps [2, 4]" in r.stderr


# ----------------------------------------------------------------------------
def test_linear_probe_with_a_test_fold_scores_only_it(data_dir, videos_dir, workdir, tmp_path):
  """An official split (avjax-import ucf101's folds.csv): fit on `train`, score
  `test`, and leave out the videos the split does not use ("")."""
  names = sorted(p.name for p in (videos_dir / "validation").glob("*.mp4"))
  n = len(names) // 3
  folds = ["test" if i < n else "" if i < 2 * n else "train" for i in range(len(names))]
  (tmp_path / "folds.csv").write_text(
      "filename,split1\n" + "".join(f"{a},{b}\n" for a, b in zip(names, folds)))
  config = eval_config(data_dir)
  config.evals.linear_probe.update(folds_csv=str(tmp_path / "folds.csv"), fold_column="split1",
                                   test_fold="test", random_init=False)
  m = evaluate.evaluate(config, str(workdir), evals=["linear_probe"], split="validation",
                        pictures=False)["metrics"]
  assert m["linear_probe_folds"] == 1 and m["linear_probe_examples"] == n
  assert 0.0 <= m["linear_probe_audio_accuracy_mean"] <= 1.0


# avjax-embed
# ----------------------------------------------------------------------------
def write_wav(path, seconds, rate=16000):
  t = np.arange(int(seconds * rate)) / rate
  pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(pcm.tobytes())


@pytest.fixture(scope="module")
def media(videos_dir, tmp_path_factory):
  """Two clips of the session's videos, a 2.35 s wav, a PNG, and a broken mp4."""
  d = tmp_path_factory.mktemp("media")
  mp4s = sorted(p for p in os.listdir(videos_dir / "validation") if p.endswith(".mp4"))[:2]
  for name in mp4s:
    shutil.copy(videos_dir / "validation" / name, d / name)
  write_wav(d / "tone.wav", 2.35)
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 80, 3), np.uint8)).save(d / "pic.png")
  (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
  return d, mp4s


def test_embed_audio_video_and_image_files(workdir, media, tmp_path):
  d, mp4s = media
  emb = embed.Embedder(str(workdir), batch_size=8)
  dim = 128
  files = embed.expand_inputs([str(d / n) for n in [*mp4s, "tone.wav", "broken.mp4"]])
  written, skipped = embed.embed_files("audio", files, emb, str(tmp_path / "audio"), hop=0.25,
                                       log=lambda m: None)
  assert [os.path.basename(f) for f, _ in skipped] == ["broken.mp4"]
  assert "cannot decode" in skipped[0][1] or "no audio" in skipped[0][1]
  tone = np.load(tmp_path / "audio" / "tone.npz")
  np.testing.assert_allclose(tone["timestamps"], np.arange(10) * 0.25)  # 0 .. 2.25 within 2.35 s
  assert tone["embedding"].shape == (10, dim)
  np.testing.assert_allclose(np.linalg.norm(tone["embedding"], axis=1), 1.0, rtol=1e-4)
  clip = np.load(tmp_path / "audio" / mp4s[0].replace(".mp4", ".npz"))
  assert clip["embedding"].shape == (len(clip["timestamps"]), dim) and len(clip["timestamps"]) >= 5
  with open(tmp_path / "audio" / "skipped.csv") as f:
    assert "broken.mp4" in f.read()

  # Batching across files gives what each file gives alone.
  alone, _ = embed.embed_files("audio", [str(d / "tone.wav")], emb, str(tmp_path / "alone"),
                               hop=0.25)
  np.testing.assert_allclose(np.load(alone[0])["embedding"], tone["embedding"], rtol=1e-5, atol=1e-6)

  written, skipped = embed.embed_files("video", [str(d / n) for n in [*mp4s, "tone.wav"]], emb,
                                       str(tmp_path / "video"), rate=5.0, log=lambda m: None)
  assert len(written) == 2 and skipped[0][1] == "no video stream"
  v = np.load(tmp_path / "video" / mp4s[0].replace(".mp4", ".npz"))
  n = len(v["timestamps"])
  assert n == 7  # 1.4 s clips at 5 frames/s: 0, 0.2, ..., 1.2
  np.testing.assert_allclose(v["timestamps"], np.arange(n) / 5.0, atol=1e-6)
  assert v["embedding"].shape == (n, dim) and v["audio_embedding"].shape == (n, dim)

  written, skipped = embed.embed_files("image", [str(d / "pic.png"), str(d / "tone.wav")], emb,
                                       str(tmp_path / "image"), log=lambda m: None)
  img = np.load(written[0])
  assert img["embedding"].shape == (1, dim) and img["timestamps"].tolist() == [0.0]
  assert "cannot read image" in skipped[0][1]


def test_embed_cli_reports_the_broken_file(workdir, media, tmp_path):
  d, _ = media
  r = run_python(["-m", "avjax.embed", "audio", str(d), f"--workdir={workdir}",
                  f"--output={tmp_path}", "--batch_size=8"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert "skipped " + str(d / "broken.mp4") in r.stderr
  assert "skipped " + str(d / "pic.png") in r.stderr   # an image has no audio track
  assert "embedded 3 of 5 files" in r.stdout
  assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".npz")) == sorted(
      n.replace(".mp4", ".npz").replace(".wav", ".npz") for n in os.listdir(d)
      if n.endswith((".mp4", ".wav")) and n != "broken.mp4")


@pytest.mark.parametrize("chunk", [1, 37, 1000, 10**6])
@pytest.mark.parametrize("size,hop", [(100, 0.25), (101, 0.1), (64, 1.0)])
def test_streamed_windows_equal_cutting_the_whole_signal(chunk, size, hop):
  """Windows from a stream of chunks are those cut from the whole zero-padded
  signal: centres 0, hop, ... up to the end, window i from round(i*hop*rate) - S//2."""
  rate = 100
  x = np.random.default_rng(size).normal(size=237).astype(np.float32)
  n = int(np.floor(len(x) / rate / hop + 1e-9)) + 1
  padded = np.pad(x, (size // 2, size))
  starts = np.round(np.arange(n) * hop * rate).astype(int)
  expected = np.stack([padded[s:s + size] for s in starts])
  got = list(embed.stream_windows((x[i:i + chunk] for i in range(0, len(x), chunk)), rate, size, hop))
  np.testing.assert_allclose([t for t, _ in got], np.arange(n) * hop)
  np.testing.assert_array_equal(np.stack([w for _, w in got]), expected)


def test_every_named_evaluator_imports_from_its_own_module():
  """The registry names classes without importing them (the config check stays free
  of TensorFlow); each name must still resolve, in avjax/evaluators/<name>.py."""
  from avjax import evaluators
  from avjax.evaluators import base
  for name in evaluators.EVALUATORS:
    cls = evaluators.evaluator_class(name)
    assert cls.__module__ == f"avjax.evaluators.{name}" and issubclass(cls, base.Evaluator), name
