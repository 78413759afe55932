"""gs:// end to end, against a real storage server on localhost (gcp-storage-emulator).

Every step runs as the user runs it, a command in its own process, with data
and workdir in a bucket: prepare -> train (killed, then resumed from the
bucket's checkpoint) -> evaluate -> embed, and bad input (a missing object, an
unreadable video, a bucket that does not exist) said in one line naming the URL.
TensorFlow's own GCS client cannot be pointed at an emulator (its endpoints are
compiled in); with STORAGE_EMULATOR_HOST set, avjax gives it local copies of the
shards instead, so everything else here talks to the emulator.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import (FRAME_SIZE, ROOT, SAMPLE_RATE, TINY_SPECTROGRAM, TRAIN, VAL,
                            run_python)

BUCKET = "avjax-test"
SCRIPT = os.path.join(ROOT, "tests", "scripts", "train_until.py")

# One worker runs this module: its emulator and bucket fixtures are built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_cloud_storage")]

# The emulator, with two fixes:
# - its downloads omit the x-goog-generation header that real GCS sends with every
#   object read, and without which TensorStore (orbax's array storage) refuses the
#   read ("Malformed StorageGeneration");
# - it parses gcsfs's small (multipart) uploads with Python's email parser, which
#   takes a last content byte of "\r" for half of the line break before the closing
#   boundary and drops it (a wav file came back one byte short); the content is
#   cut at gcsfs's own framing instead, "\n--" and the boundary.
# The server still stores, lists, ranges and fails as it does.
EMULATOR = """
import json
import time
from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects
download = objects.download
read_data = server._read_data

def read_data_binary_safe(handler, query):
  ctype = handler.headers.get("Content-Type") or ""
  if not ctype.startswith("multipart/related"):
    return read_data(handler, query)
  raw = server._decode_raw_data(server._read_raw_data(handler), handler)
  boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()
  meta_part, content_part = raw.split(b"--" + boundary + b"\\n", 2)[1:]
  meta = meta_part.split(b"\\n\\n", 1)[1].rsplit(b"\\n", 1)[0]
  head, content = content_part.split(b"\\n\\n", 1)
  content = content[:content.rindex(b"\\n--" + boundary + b"--")]
  types = [h.split(b":", 1)[1].strip().decode() for h in head.split(b"\\n")
           if h.lower().startswith(b"content-type:")]
  return {{"meta": json.loads(meta), "content": content,
           "content-type": types[0] if types else "application/octet-stream"}}

server._read_data = read_data_binary_safe

def download_with_generation(request, response, storage, *args, **kwargs):
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    response["x-goog-generation"] = str(obj["generation"])
    response["x-goog-metageneration"] = str(obj.get("metageneration", 1))
  except Exception:
    pass  # a missing object: the emulator's own handler answers 404
  return download(request, response, storage, *args, **kwargs)

objects.download = download_with_generation
from gcp_storage_emulator.server import create_server
create_server("localhost", {port}, in_memory=True, default_bucket="{bucket}").start()
time.sleep(10**6)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator():
  """A GCS emulator on localhost holding one bucket; the environment the
  commands run in points gcsfs, orbax and TensorStore at it."""
  port = _free_port()
  proc = subprocess.Popen([sys.executable, "-c", EMULATOR.format(port=port, bucket=BUCKET)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  host = f"http://localhost:{port}"
  deadline = time.time() + 30
  while time.time() < deadline:
    try:
      socket.create_connection(("localhost", port), timeout=1).close()
      break
    except OSError:
      time.sleep(0.2)
  else:
    proc.kill()
    pytest.fail("the storage emulator did not start")
  env = {"STORAGE_EMULATOR_HOST": host, "EPATH_USE_TF": "false",
         "TENSORSTORE_GCS_HTTP_URL": host, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  yield host
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  proc.kill()
  proc.wait()


@pytest.fixture(scope="module")
def gcs(emulator):
  import gcsfs
  return gcsfs.GCSFileSystem(endpoint_url=emulator, token="anon", use_listings_cache=False)


def _cli(args, **kw):
  return run_python(args, **kw)


def _last_line(r) -> str:
  return (r.stderr.strip().splitlines() or [""])[-1]


def _prepare(split: str, extra=()):
  return _cli(["-m", "avjax.prepare", f"--input=gs://{BUCKET}/videos/{split}",
               f"--output=gs://{BUCKET}/prepared/{split}",
               f"--labels=gs://{BUCKET}/videos/{split}/labels.csv",
               f"--sample_rate={SAMPLE_RATE}", f"--frame_size={FRAME_SIZE}",
               "--stft={},{},{}".format(TINY_SPECTROGRAM.win_length, TINY_SPECTROGRAM.hop_length,
                                        TINY_SPECTROGRAM.n_fft),
               "--workers=2", "--files_per_shard=6", *extra])


def test_prepare_train_resume_evaluate_embed_in_a_bucket(emulator, gcs, videos_dir):
  for split in (TRAIN, VAL):
    gcs.put(str(videos_dir / split.name), f"{BUCKET}/videos/{split.name}", recursive=True)
  gcs.pipe(f"{BUCKET}/videos/{TRAIN.name}/broken.mp4", b"not a video" * 100)
  for split in (TRAIN, VAL):
    r = _prepare(split.name)
    assert r.returncode == 0, r.stderr[-3000:]
  report = gcs.cat(f"{BUCKET}/prepared/{TRAIN.name}/skipped.csv").decode()
  assert "broken.mp4,cannot decode" in report
  assert len(gcs.glob(f"{BUCKET}/prepared/{TRAIN.name}/clips-*.tfrecord")) == 5

  data, work = f"gs://{BUCKET}/prepared", f"gs://{BUCKET}/work"
  killed = _cli([SCRIPT, data, work, "6", "--kill_after", "2", "--every", "2"])
  assert killed.returncode == -9, killed.stderr[-3000:]
  assert gcs.exists(f"{BUCKET}/work/checkpoints/2")
  resumed = _cli([SCRIPT, data, work, "6", "--every", "2"])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from step 2" in resumed.stdout
  assert gcs.exists(f"{BUCKET}/work/checkpoints/6")
  assert gcs.exists(f"{BUCKET}/work/config.json")
  assert any("tfevents" in p for p in gcs.find(f"{BUCKET}/work"))

  evaluated = _cli(["-m", "avjax.evaluate", "--config=configs/avenet.py:tiny", f"--workdir={work}",
                    f"--config.data.dir={data}", f"--config.data.resize={FRAME_SIZE}",
                    "--config.data.crop=32", "--config.model.vision_widths=(4,8,8,8)",
                    "--config.model.audio_widths=(4,8,8,8)", "--config.evals.avc.batch_size=8",
                    "--checkpoint=latest", "--evals=avc"], cwd=ROOT)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert "avc_accuracy" in evaluated.stdout
  written = gcs.find(f"{BUCKET}/work/eval")
  assert f"{BUCKET}/work/eval/metrics_{VAL.name}_step6.json" in written, written
  video = f"gs://{BUCKET}/videos/{VAL.name}/" + sorted(
      p for p in os.listdir(videos_dir / VAL.name) if p.endswith(".mp4"))[0]
  embedded = _cli(["-m", "avjax.embed", "audio", video, f"--workdir={work}",
                   f"--output=gs://{BUCKET}/embeddings", "--checkpoint=latest"])
  assert embedded.returncode == 0, embedded.stderr[-3000:]
  [npz] = gcs.glob(f"{BUCKET}/embeddings/*.npz")
  emb = np.load(io.BytesIO(gcs.cat(npz)))["embedding"]
  assert emb.ndim == 2 and emb.shape[0] > 5 and np.all(np.isfinite(emb))


def test_bad_bucket_input_is_one_line_naming_the_url(emulator, gcs):
  r = _cli(["-m", "avjax.prepare", f"--input=gs://{BUCKET}/no/such/folder",
            f"--output=gs://{BUCKET}/out", "--workers=1"])
  assert r.returncode != 0
  assert _last_line(r) == (f"avjax-prepare: --input 'gs://{BUCKET}/no/such/folder': not a "
                           "directory or an existing .csv file")
  gcs.pipe(f"{BUCKET}/one/clip.mp4", b"\x00" * 1000)
  r = _cli(["-m", "avjax.prepare", f"--input=gs://{BUCKET}/one",
            "--output=gs://no-such-bucket-avjax/out", "--workers=1"])
  assert r.returncode != 0
  assert _last_line(r) == ("avjax-prepare: gs://no-such-bucket-avjax/out: bucket "
                           "'no-such-bucket-avjax' does not exist")
  r = _cli([SCRIPT, f"gs://{BUCKET}/no/data", f"gs://{BUCKET}/w", "2"])
  assert r.returncode != 0
  assert f"gs://{BUCKET}/no/data" in _last_line(r) and _last_line(r).startswith("train_until: ")
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_separate_reads_a_video_from_a_bucket_and_writes_its_wavs_there(emulator, gcs, data_dir,
                                                                         videos_dir, tmp_path):
  """avjax-separate with a gs:// video and a gs:// output folder: the wavs and the
  objects CSV land in the bucket."""
  from avjax import train
  from tests.conftest import tiny_config
  work = str(tmp_path / "separation")
  config = tiny_config("separation", data_dir, total_steps=2, log_every=1)
  config.model.update(unet_widths=(4, 8, 8), channels=4)
  config.evals.separation.every = 0
  train.train_and_evaluate(config, work)
  name = sorted(p for p in os.listdir(videos_dir / VAL.name) if p.endswith(".mp4"))[0]
  gcs.put(str(videos_dir / VAL.name / name), f"{BUCKET}/separate/{name}")
  r = _cli(["-m", "avjax.separate", f"gs://{BUCKET}/separate/{name}", f"--workdir={work}",
            f"--output=gs://{BUCKET}/separated", "--checkpoint=latest", "--min_distance=1",
            "--min_fraction=0"])
  assert r.returncode == 0, r.stderr[-3000:]
  stem = name[:-4]
  written = gcs.find(f"{BUCKET}/separated")
  assert f"{BUCKET}/separated/{stem}_objects.csv" in written, written
  wavs = [p for p in written if p.endswith(".wav")]
  assert 1 <= len(wavs) <= 2
  import soundfile
  audio, rate = soundfile.read(io.BytesIO(gcs.cat(wavs[0])))
  assert rate == SAMPLE_RATE and abs(len(audio) - 1.4 * rate) <= 0.25 * rate


def test_sonorize_reads_a_video_from_a_bucket_and_writes_its_wav_there(emulator, gcs, data_dir,
                                                                       videos_dir, tmp_path):
  """avjax-sonorize with a gs:// video and a gs:// wav: the predicted sound lands in
  the bucket, as long as the video."""
  from avjax import train
  from tests.conftest import tiny_config
  work = str(tmp_path / "sonorization")
  config = tiny_config("sonorization", data_dir, total_steps=2, log_every=1)
  config.data.update(train_split="train", eval_split="validation", frame_stack=5)
  config.data.spectrogram.seconds = 0.2
  config.model.update(spacetime_widths=(4, 8), vision_widths=(4, 8), lstm_size=8)
  config.evals.sonorization.every = 0
  train.train_and_evaluate(config, work)
  name = sorted(p for p in os.listdir(videos_dir / VAL.name) if p.endswith(".mp4"))[0]
  gcs.put(str(videos_dir / VAL.name / name), f"{BUCKET}/sonorize/{name}")
  r = _cli(["-m", "avjax.sonorize", f"gs://{BUCKET}/sonorize/{name}", f"--workdir={work}",
            f"--output=gs://{BUCKET}/sonorized/out.wav", "--checkpoint=latest"])
  assert r.returncode == 0, r.stderr[-3000:]
  import soundfile
  audio, rate = soundfile.read(io.BytesIO(gcs.cat(f"{BUCKET}/sonorized/out.wav")))
  # 1.4 s of video in windows of 0.2 s: seven windows' worth of sound.
  assert rate == SAMPLE_RATE and abs(len(audio) - 1.4 * rate) <= 0.01 * rate


def test_the_probe_reads_a_tfds_dataset_prepared_in_a_bucket(emulator, gcs, data_dir, tmp_path):
  """`linear_probe.tfds.data_dir=gs://...`: a dataset that TFDS prepared, copied
  into the bucket, is found by name there and probed; one that is not there is
  named by its URL. `manual_dir=gs://...`: TFDS prepares it from files in the
  bucket. Each probe runs in a process of its own (tests/scripts/tfds_probe.py)."""
  import json
  import tensorflow_datasets as tfds
  from data_pipelines import synthetic
  from tests.tfds_builders import PER_CLASS, AvjaxTones, write_wavs
  for split in PER_CLASS:
    write_wavs(tmp_path / "files", split)
  AvjaxTones(data_dir=str(tmp_path / "tfds")).download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "files")))
  gcs.put(str(tmp_path / "tfds" / "avjax_tones"), f"{BUCKET}/tfds/avjax_tones", recursive=True)
  gcs.put(str(tmp_path / "files"), f"{BUCKET}/tones_files", recursive=True)
  script = os.path.join(ROOT, "tests", "scripts", "tfds_probe.py")
  cache = {"AVJAX_CACHE": str(tmp_path / "cache")}

  def probe(**tfds_keys):
    keys = dict(name="avjax_tones", split="test", train_split="train", **tfds_keys)
    return _cli([script, str(data_dir), str(tmp_path / "w"), json.dumps(keys)],
                env_overrides=cache)

  r = probe(data_dir=f"gs://{BUCKET}/tfds")
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert out["linear_probe_examples"] == len(synthetic.CLASSES) * PER_CLASS["test"]
  # Random 1-D conv features separate these timbres (test_tfds_probe.py).
  assert out["linear_probe_random_init_audio_accuracy_mean"] > 3 / len(synthetic.CLASSES)
  r = probe(data_dir=str(tmp_path / "tfds_from_bucket"), download=True,
            manual_dir=f"gs://{BUCKET}/tones_files")
  assert r.returncode == 0, r.stderr[-3000:]
  assert json.loads(r.stdout.strip().splitlines()[-1]) == out  # the same examples
  r = probe(data_dir=f"gs://{BUCKET}/no-tfds")
  assert r.returncode != 0
  assert _last_line(r) == (f"tfds_probe: tfds 'avjax_tones' is not prepared in gs://{BUCKET}/"
                           "no-tfds; prepare it (tfds build) or set download=True")
