"""avjax-export: a tiny AVE-Net's towers as TensorFlow SavedModels, lowered on this
CPU host for CPU and TPU, loaded in a process where JAX cannot be imported, give
what avjax-embed gives for the same audio and image."""
import json
import wave

import numpy as np
import pytest
from PIL import Image

from avjax import train
from tests.conftest import ROOT, run_python, tiny_config

pytestmark = pytest.mark.xdist_group("test_savedmodel")

HOP = 0.25

# Runs in a fresh process: JAX and avjax are blocked, TensorFlow alone loads and
# runs the SavedModels.
TF_ONLY = """
import sys, wave
sys.modules["jax"] = sys.modules["jaxlib"] = sys.modules["avjax"] = None
import numpy as np
import tensorflow as tf
from PIL import Image
export, wav, png, out = sys.argv[1:]
with wave.open(wav) as w:
  pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
audio = tf.saved_model.load(export + "/audio")
image = tf.saved_model.load(export + "/image")
got = audio.embed_audio(tf.constant(pcm[None] / 32768.0, tf.float32))
frames = image.embed_frames(tf.constant(np.asarray(Image.open(png).convert("RGB"))[None]))
np.savez(out, audio=got["embedding"].numpy()[0], timestamps=got["timestamps"].numpy(),
         image=frames["embedding"].numpy(), sample_rate=audio.sample_rate.numpy(),
         hop=audio.hop_samples.numpy(), size=audio.embedding_size.numpy())
"""


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("savedmodel")
  config = tiny_config("avenet", data_dir, total_steps=2, log_every=1)
  train.train_and_evaluate(config, str(root / "work"))
  r = run_python(["-m", "avjax.export", f"--workdir={root / 'work'}", f"--output={root / 'export'}",
                  "--platforms=cpu,tpu", f"--hop={HOP}", "--tflite"], cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "exported checkpoint step 2 for cpu,tpu" in r.stdout, r.stdout
  return root, config


def write_wav(path, seconds: float, rate: int) -> None:
  t = np.arange(int(seconds * rate)) / rate
  pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t) * 32767).astype(np.int16)
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(pcm.tobytes())


def test_savedmodel_without_jax_gives_avjax_embed_s_embeddings(exported, tmp_path):
  root, config = exported
  record = json.loads((root / "export" / "export.json").read_text())
  assert record["platforms"] == ["cpu", "tpu"] and set(record["towers"]) == {"audio", "image"}
  rate = record["towers"]["audio"]["sample_rate"]
  write_wav(tmp_path / "tone.wav", 2.35, rate)  # at the model's rate: no resampling either side
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 80, 3), np.uint8)).save(
      tmp_path / "pic.png")
  for mode, name in (("audio", "tone.wav"), ("image", "pic.png")):
    r = run_python(["-m", "avjax.embed", mode, str(tmp_path / name), f"--workdir={root / 'work'}",
                    f"--output={tmp_path / mode}", f"--hop={HOP}"], cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
  r = run_python(["-c", TF_ONLY, str(root / "export"), str(tmp_path / "tone.wav"),
                  str(tmp_path / "pic.png"), str(tmp_path / "tf.npz")], cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  got = np.load(tmp_path / "tf.npz")
  audio, image = np.load(tmp_path / "audio" / "tone.npz"), np.load(tmp_path / "image" / "pic.npz")
  assert got["audio"].shape == audio["embedding"].shape == (10, got["size"])  # 0 .. 2.25 s
  np.testing.assert_allclose(got["timestamps"], audio["timestamps"], atol=1e-6)
  np.testing.assert_allclose(got["audio"], audio["embedding"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["image"], image["embedding"], rtol=1e-5, atol=1e-6)
  assert int(got["sample_rate"]) == rate and int(got["hop"]) == round(HOP * rate)
  assert (root / "export" / "audio.tflite").stat().st_size > 0  # converted and checked on export


# ----------------------------------------------------------------------------
# The HEAR 2021 API (avjax.hear), over the export and over the live workdir
# ----------------------------------------------------------------------------
def test_hear_api_over_the_export_and_the_workdir(exported):
  from avjax import hear
  root, _ = exported
  saved = hear.load_model(str(root / "export"))
  live = hear.load_model(str(root / "work"))
  assert saved.sample_rate == live.sample_rate == 16000  # the tiny config's 8 kHz, doubled
  assert saved.scene_embedding_size == saved.timestamp_embedding_size == 128
  rng = np.random.default_rng(0)
  short = rng.uniform(-1, 1, (3, 1600)).astype(np.float32)  # 0.1 s: under one window
  emb, ts = hear.get_timestamp_embeddings(short, saved)
  assert emb.shape == (3, 3, 128) and ts.shape == (3, 3)  # centres 0, 50, 100 ms
  np.testing.assert_allclose(ts.numpy()[0], [0, 50, 100])
  live_emb, _ = hear.get_timestamp_embeddings(short, live)
  np.testing.assert_allclose(emb.numpy(), live_emb.numpy(), rtol=1e-5, atol=1e-6)
  scene = hear.get_scene_embeddings(short, saved)
  np.testing.assert_allclose(scene.numpy(), emb.numpy().mean(1), rtol=1e-6)
  long = rng.uniform(-1, 1, (1, 16000 * 30)).astype(np.float32)  # streamed in batches
  emb, ts = hear.get_timestamp_embeddings(long, saved)
  assert emb.shape == (1, 601, 128) and float(ts[0, -1]) == 30000.0
  assert np.isfinite(emb.numpy()).all()
