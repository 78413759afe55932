"""prepare on a folder that mixes good and broken files."""
import collections
import csv
import json
import os

import av
import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import dmvr, ingest, spectrogram, synthetic
from data_pipelines import reader as reader_lib
from tests.conftest import ROOT, run_python

# One worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("test_prepare")

VIDEO = synthetic.VideoSpec(size=48, seconds=1.6)


def _write_audio_only(path):
  with av.open(path, "w") as c:
    s = c.add_stream("aac", rate=48000)
    s.layout = "mono"
    f = av.AudioFrame.from_ndarray(np.zeros((1, 48000 * 2), np.float32), format="fltp",
                                   layout="mono")
    f.sample_rate = 48000
    c.mux(s.encode(f))
    c.mux(s.encode(None))


def _write_video_only(path):
  with av.open(path, "w") as c:
    s = c.add_stream("libx264", rate=25)
    s.width = s.height = 48
    s.pix_fmt = "yuv420p"
    for _ in range(50):
      c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((48, 48, 3), np.uint8), format="rgb24")))
    c.mux(s.encode())


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("mixed")
  split = synthetic.SplitSpec("good", 5, seed=5)
  good = []
  for i in range(split.num_clips):
    frames, wav, _, _ = synthetic.make_scene(split, i, VIDEO)
    name = f"good_{i}" + (".mp4", ".mkv", ".webm", ".avi", ".mp4")[i]
    if name.endswith(".webm"):  # webm needs VP9/Opus: write through the same helper via mp4
      name = name.replace(".webm", ".mp4")
    synthetic.write_mp4(str(root / name), frames, wav, VIDEO)
    good.append(name)
  # A long one, cut into several clips by --clip_seconds.
  long_video = synthetic.VideoSpec(size=48, seconds=3.0)
  frames, wav, _, _ = synthetic.make_scene(split, 99, long_video)
  synthetic.write_mp4(str(root / "long.mp4"), frames, wav, long_video)
  good.append("long.mp4")
  with open(root / "good_0.mp4", "rb") as f:
    data = f.read()
  broken = {
      "empty.mp4": "",
      "truncated.mp4": "",
      "not_media.mp4": "",
      "garbage.mkv": "",
      "audio_only.mp4": "no video stream",
      "video_only.mp4": "no audio track",
      "short.mp4": "too short",
  }
  (root / "empty.mp4").write_bytes(b"")
  (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
  (root / "not_media.mp4").write_text("this is a text file, not a video\n" * 20)
  (root / "garbage.mkv").write_bytes(np.random.default_rng(0).bytes(5000))
  _write_audio_only(str(root / "audio_only.mp4"))
  _write_video_only(str(root / "video_only.mp4"))
  short = synthetic.VideoSpec(size=48, seconds=0.6)
  frames, wav, _, _ = synthetic.make_scene(split, 7, short)
  synthetic.write_mp4(str(root / "short.mp4"), frames, wav, short)
  with open(root / "labels.csv", "w") as f:
    f.write("file,label\n" + "".join(f"{g},cat;dog\n" if i == 0 else f"{g},bird\n"
                                     for i, g in enumerate(good)))
  with open(root / "boxes.csv", "w") as f:
    f.write("file,ymin,xmin,ymax,xmax,time\ngood_1.mkv,0.1,0.2,0.5,0.6,0.8\n")
  return root, good, broken


def _run(root, out, **kw):
  return ingest.prepare(str(root), str(out), labels_csv=str(root / "labels.csv"),
                         boxes_csv=str(root / "boxes.csv"),
                         settings=ingest.PrepareSettings(sample_rate=16000, frame_size=32,
                                                          clip_seconds=kw.pop("clip_seconds", 10.0)),
                         files_per_shard=4, workers=2, quiet=True, **kw)


def _records(out):
  files = sorted(str(p) for p in out.glob("*.tfrecord"))
  return [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def test_good_clips_kept_and_broken_reported(mixed_folder, tmp_path):
  root, good, broken = mixed_folder
  manifest = _run(root, tmp_path / "out")
  assert manifest["num_clip_files"] == len(good)
  assert manifest["num_skipped"] == len(broken)
  with open(tmp_path / "out" / ingest.REPORT) as f:
    report = {r["file"]: r["reason"] for r in csv.DictReader(f)}
  assert set(report) == set(broken)
  for name, must_mention in broken.items():
    assert report[name], name
    assert must_mention in report[name], (name, report[name])
  names = sorted({r.context.feature[dmvr.FILENAME].bytes_list.value[0].decode()
                  for r in _records(tmp_path / "out")})
  assert names == sorted(good)
  with open(tmp_path / "out" / ingest.MANIFEST) as f:
    on_disk = json.load(f)
  assert on_disk["labels"] == ["bird", "cat", "dog"]
  assert sum(on_disk["shards"].values()) == on_disk["num_clips"] == len(_records(tmp_path / "out"))


def test_record_layout_is_dmvr(mixed_folder, tmp_path):
  root, good, _ = mixed_folder
  _run(root, tmp_path / "out")
  by_name = {r.context.feature[dmvr.FILENAME].bytes_list.value[0].decode(): r
             for r in _records(tmp_path / "out")}
  r = by_name["good_0.mp4"]
  frames = r.feature_lists.feature_list[dmvr.FRAMES].feature
  assert len(frames) == 40  # 1.6 s at 25 fps
  image = tf.io.decode_jpeg(frames[0].bytes_list.value[0]).numpy()
  assert image.shape == (32, 32, 3)
  wav = np.array(r.feature_lists.feature_list[dmvr.WAVEFORM].feature[0].float_list.value)
  assert abs(len(wav) - 1.6 * 16000) < 0.05 * 16000
  assert np.sqrt(np.mean(wav ** 2)) > 1e-3  # the audio is not silent
  assert list(r.context.feature[dmvr.LABEL_TEXT].bytes_list.value) == [b"cat", b"dog"]
  assert list(r.context.feature[dmvr.LABEL_INDEX].int64_list.value) == [1, 2]
  boxed = by_name["good_1.mkv"].context.feature
  assert list(boxed["clip/box/ymin"].float_list.value) == pytest.approx([0.1])
  assert list(boxed[dmvr.BOX_TIME_US].int64_list.value) == [800000]
  # The whole clip's |STFT| beside the waveform, with its framing.
  ctx = r.context.feature
  assert [ctx[k].int64_list.value[0] for k in dmvr.STFT_KEYS] == [480, 240, 512]
  assert ctx[dmvr.NUM_SAMPLES].int64_list.value[0] == len(wav)
  magnitude = np.frombuffer(ctx[dmvr.MAGNITUDE].bytes_list.value[0], "<f4").reshape(-1, 257)
  expected = spectrogram.stft_magnitude(wav.astype(np.float32), spectrogram.SpectrogramSpec(
      sample_rate=16000)).numpy()
  np.testing.assert_allclose(magnitude, expected, rtol=1e-6, atol=1e-7)
  with open(tmp_path / "out" / ingest.MANIFEST) as f:
    assert json.load(f)["spectrogram"] == {"sample_rate": 16000, "win_length": 480,
                                           "hop_length": 240, "n_fft": 512}


def test_no_spectrogram_and_bad_stft_flag(mixed_folder, tmp_path):
  root, _, _ = mixed_folder
  r = run_python(["-m", "avjax.prepare", "--input", str(root), "--output", str(tmp_path / "o"),
                  "--sample_rate", "16000", "--frame_size", "32", "--no_spectrogram",
                  "--workers", "1"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert all(dmvr.MAGNITUDE not in r.context.feature for r in _records(tmp_path / "o"))
  with open(tmp_path / "o" / ingest.MANIFEST) as f:
    assert json.load(f)["spectrogram"] is None
  for stft, message in (("512,256", "--stft '512,256': expected three integers"),
                        ("1024,240,512", "--stft '1024,240,512': win_length 1024 > n_fft 512")):
    r = run_python(["-m", "avjax.prepare", "--input", str(root), "--output", str(tmp_path / "p"),
                    "--stft", stft])
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith(
        f"avjax-prepare: {message}"), r.stderr[-2000:]


def test_long_video_is_cut_into_clips(mixed_folder, tmp_path):
  root, _, _ = mixed_folder
  manifest = _run(root, tmp_path / "out", clip_seconds=1.2)
  starts = sorted(r.context.feature[dmvr.START_US].int64_list.value[0]
                  for r in _records(tmp_path / "out")
                  if r.context.feature[dmvr.FILENAME].bytes_list.value[0] == b"long.mp4")
  assert starts == [0, 1200000]  # 3.0 s -> 1.2 + 1.2, the 0.6 s tail is too short
  assert manifest["num_clips"] == manifest["num_clip_files"] + 1  # long.mp4 gives two


def test_rerun_finishes_interrupted_job_only(mixed_folder, tmp_path):
  root, _, _ = mixed_folder
  out = tmp_path / "out"
  first = _run(root, out)
  shards = sorted(out.glob("*.tfrecord"))
  mtimes = {p: p.stat().st_mtime_ns for p in shards}
  # Simulate an interruption: one shard never finished.
  victim = shards[1]
  victim.unlink()
  os.unlink(str(victim) + ".done.json")
  second = _run(root, out)
  assert second["num_clips"] == first["num_clips"]
  for p in shards:
    if p != victim:
      assert p.stat().st_mtime_ns == mtimes[p], f"{p.name} was rewritten"
  assert victim.exists()


def test_bad_label_csv_names_file_and_line(tmp_path):
  bad = tmp_path / "boxes.csv"
  bad.write_text("file,ymin,xmin,ymax,xmax\na.mp4,0.1,0.2,1.5,0.3\n")
  with pytest.raises(ingest.PrepareError, match=r"boxes.csv:2"):
    ingest.read_boxes(str(bad))


def test_prepare_with_a_config_stores_what_its_reader_slices(mixed_folder, tmp_path):
  """--config takes frame rate, sample rate, frame size and |STFT| framing from the
  training config, so the config's reader slices the stored |STFT|."""
  root, good, _ = mixed_folder
  out = tmp_path / "out"
  r = run_python(["-m", "avjax.prepare", "--input", str(root), "--output", str(out),
                  "--config=configs/avenet.py:tiny", "--config.data.resize=40",
                  "--config.data.crop=32", "--workers=2"],
                 cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(out / ingest.MANIFEST) as f:
    manifest = json.load(f)
  assert manifest["spectrogram"] == {"sample_rate": 8000, "win_length": 256, "hop_length": 160,
                                     "n_fft": 256}
  assert (manifest["settings"]["fps"], manifest["settings"]["frame_size"]) == (25.0, 40)
  from avjax import input as input_lib
  from configs import avenet
  config = avenet.get_config("tiny")
  config.data.resize, config.data.crop = 40, 32
  files = reader_lib.resolve_files(str(tmp_path), "out")
  assert reader_lib.Reader(files, spec=input_lib.reader_spec(config.data), batch_size=2,
                           seed=0).spec.stored_spectrogram
  # The config decides these: giving them too is a one-line error.
  r = run_python(["-m", "avjax.prepare", "--input", str(root), "--output", str(tmp_path / "p"),
                  "--config=configs/avenet.py:tiny", "--sample_rate=16000"], cwd=ROOT)
  assert r.returncode != 0 and r.stderr.strip().splitlines() == [
      "avjax-prepare: --sample_rate: --config decides these; override --config.data.* instead"]
  # Clips too short for the config's windows are refused before any work.
  r = run_python(["-m", "avjax.prepare", "--input", str(root), "--output", str(tmp_path / "p"),
                  "--config=configs/sync.py:tiny", "--clip_seconds=1.5"], cwd=ROOT)
  assert r.returncode != 0 and r.stderr.strip().splitlines() == [
      "avjax-prepare: --clip_seconds=1.5: the config's windows need clips of at least 1.8 s "
      "(config.data.spectrogram.seconds plus twice config.data.min_shift)"]


@pytest.mark.parametrize("name, tiny, seconds", [("avenet", True, 10.0), ("sync", False, 10.0),
                                                 ("soundnet", False, 20.0)])
def test_a_config_prepares_clips_that_hold_its_windows(name, tiny, seconds):
  """Prepare's clips hold the config's window (and sync's shifts on both sides):
  the default 10 s, or longer where the window is (SoundNet's 20 s)."""
  import importlib
  from avjax import input as input_lib
  config = importlib.import_module(f"configs.{name}").get_config("tiny" if tiny else None)
  settings = input_lib.prepare_settings(config.data)
  assert settings.clip_seconds == seconds >= input_lib.shortest_clip(config.data)
  assert input_lib.prepare_settings(config.data, clip_seconds=30.0).clip_seconds == 30.0


def _shard_bytes(out):
  return {p.name: p.read_bytes() for p in sorted(out.glob("*.tfrecord"))}


def test_streaming_prepare_writes_the_records_of_a_whole_file_decode(mixed_folder, tmp_path):
  """Clip-by-clip decoding, and long files split into time ranges decoded by
  seeking, write the records that decoding each file whole wrote, and skip the
  same files for the same reasons."""
  from tests import whole_decode
  root, good, broken = mixed_folder
  # 3 s at 1 s clips: long.mp4 is 3 ranges of a clip (seeks to 1 s and 2 s).
  ranged = _run(root, tmp_path / "ranged", clip_seconds=1.0, range_seconds=1.0)
  whole = _run(root, tmp_path / "whole", clip_seconds=1.0, range_seconds=None)
  assert _shard_bytes(tmp_path / "ranged") == _shard_bytes(tmp_path / "whole")
  assert ranged == whole
  settings = ingest.PrepareSettings(sample_rate=16000, frame_size=32, clip_seconds=1.0)
  units = ingest.plan_units("long.mp4", str(root), settings, 1.0)
  assert [(u.first_frame, u.end_frame) for u in units] == [(0, 25), (25, 50), (50, None)]
  written = collections.defaultdict(list)
  for r in _raw_records(tmp_path / "ranged"):
    name = tf.train.SequenceExample.FromString(r).context.feature[dmvr.FILENAME].bytes_list.value[0]
    written[name.decode()].append(r)
  label_map = {"bird": 0, "cat": 1, "dog": 2}
  for name in good:
    labels = ["cat", "dog"] if name == good[0] else ["bird"]
    boxes = [(0.1, 0.2, 0.5, 0.6, 0.8)] if name == "good_1.mkv" else []
    assert written[name] == whole_decode.whole_file_records(
        str(root), name, settings, label_map, labels, boxes), name
  assert len(written["long.mp4"]) == 3
  with open(tmp_path / "ranged" / ingest.REPORT) as f:
    report = {r["file"]: r["reason"] for r in csv.DictReader(f)}
  for name in broken:
    with pytest.raises(Exception) as e:
      whole_decode.whole_file_records(str(root), name, settings)
    assert report[name] == ingest.skip_reason(e.value), name


def test_later_ranges_start_first_and_results_come_back_in_order():
  import concurrent.futures
  units = [ingest.Unit("a")] + [ingest.Unit("b", i) for i in range(10)] + [ingest.Unit("c")]
  order = ingest.costliest_first(units, window=4)
  assert order == [0, 4, 3, 2, 1, 8, 7, 6, 5, 10, 9, 11]
  started = []

  def work(k):
    started.append(k)
    return k * 10

  with concurrent.futures.ThreadPoolExecutor(1) as pool:  # one worker: starts in submission order
    assert list(ingest._ordered_map(pool, work, list(range(12)), 4, order)) == \
        [k * 10 for k in range(12)]
  assert started == order


def _raw_records(out):
  files = sorted(str(p) for p in out.glob("*.tfrecord"))
  return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def test_beam_pipeline_writes_what_local_prepare_writes(mixed_folder, tmp_path):
  """The Beam pipeline on the DirectRunner, in multi-process mode: the same
  serialized records (order aside), the same skipped files for the same reasons,
  and a manifest the reader accepts."""
  from data_pipelines import beam_ingest
  root, good, broken = mixed_folder
  local = _run(root, tmp_path / "local", clip_seconds=1.0, range_seconds=1.0)
  beam = beam_ingest.run(
      str(root), str(tmp_path / "beam"), labels_csv=str(root / "labels.csv"),
      boxes_csv=str(root / "boxes.csv"),
      settings=ingest.PrepareSettings(sample_rate=16000, frame_size=32, clip_seconds=1.0),
      files_per_shard=4, range_seconds=1.0, quiet=True,
      beam_args=["--runner=DirectRunner", "--direct_num_workers=2",
                 "--direct_running_mode=multi_processing"])
  assert sorted(_raw_records(tmp_path / "beam")) == sorted(_raw_records(tmp_path / "local"))
  reports = []
  for out in ("local", "beam"):
    with open(tmp_path / out / ingest.REPORT) as f:
      reports.append(sorted((r["file"], r["reason"]) for r in csv.DictReader(f)))
  assert reports[0] == reports[1] and {f for f, _ in reports[0]} == set(broken)
  assert {k: v for k, v in beam.items() if k != "shards"} == {
      k: v for k, v in local.items() if k != "shards"}
  assert sorted(beam["shards"]) == sorted(local["shards"])
  files = reader_lib.resolve_files(str(tmp_path), "beam")  # checks them against the manifest
  assert len(files) == len(local["shards"])


def test_beam_options_are_checked(mixed_folder, tmp_path):
  root, _, _ = mixed_folder
  r = run_python(["-m", "avjax.prepare", "--input", str(root), "--output", str(tmp_path / "o"),
                  "--runner=DirectRunner", "--direct_num_wrokers=2"])
  assert r.returncode != 0
  assert r.stderr.strip().splitlines()[-1] == (
      "avjax-prepare: --direct_num_wrokers: neither an avjax-prepare flag nor a Beam pipeline option")
  r = run_python(["-m", "avjax.prepare", "--input", str(root), "--output", str(tmp_path / "o"),
                  "--direct_num_workers=2"])
  assert r.returncode != 0 and "direct_num_workers" in r.stderr.strip().splitlines()[-1]
  r = run_python(["-m", "avjax.prepare", "--input", str(root), "--output", str(tmp_path / "o"),
                  "--runner=DirectRunner", "--threads=2"])
  assert r.returncode != 0 and "--threads" in r.stderr.strip().splitlines()[-1]


def _write_mkv_with_pcm(path, frames, waveform, fps, rate):
  """Video + float PCM audio (which, unlike AAC, carries NaN through)."""
  with av.open(path, "w") as c:
    vs = c.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    aus = c.add_stream("pcm_f32le", rate=rate)
    aus.layout = "mono"
    for f in frames:
      c.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
    c.mux(vs.encode())
    for start in range(0, len(waveform), 1024):
      af = av.AudioFrame.from_ndarray(waveform[None, start:start + 1024], format="flt", layout="mono")
      af.sample_rate = rate
      c.mux(aus.encode(af))
    c.mux(aus.encode(None))


def test_a_file_failing_in_a_later_range_is_cut_back_out(tmp_path):
  """Ranges 0 and 1 of a_nan.mkv decode and are appended to the shard before range
  2 meets NaN audio: the shard is cut back to where the file began, and holds only
  the next file's records, as decoding it whole would."""
  from tests import whole_decode
  root = tmp_path / "in"
  root.mkdir()
  split = synthetic.SplitSpec("x", 2, seed=3)
  video = synthetic.VideoSpec(size=48, seconds=3.0)
  frames, wav, _, _ = synthetic.make_scene(split, 0, video)
  wav = wav.copy()
  wav[int(2.5 * video.sample_rate):int(2.6 * video.sample_rate)] = np.nan
  _write_mkv_with_pcm(str(root / "a_nan.mkv"), frames, wav, video.fps, video.sample_rate)
  frames, wav, _, _ = synthetic.make_scene(split, 1, video)
  synthetic.write_mp4(str(root / "b_good.mp4"), frames, wav, video)
  settings = ingest.PrepareSettings(sample_rate=16000, frame_size=32, clip_seconds=1.0)
  assert len(ingest.plan_units("a_nan.mkv", str(root), settings, 1.0)) == 3
  manifest = ingest.prepare(str(root), str(tmp_path / "out"), settings=settings, workers=2,
                             quiet=True, range_seconds=1.0)
  assert manifest["num_skipped"] == 1 and manifest["num_clips"] == 3
  with open(tmp_path / "out" / ingest.REPORT) as f:
    assert list(csv.reader(f))[1] == ["a_nan.mkv", "audio holds NaN or Inf samples"]
  assert _raw_records(tmp_path / "out") == whole_decode.whole_file_records(
      str(root), "b_good.mp4", settings)
  with pytest.raises(Exception, match="NaN"):
    whole_decode.whole_file_records(str(root), "a_nan.mkv", settings)


@pytest.mark.parametrize("rate", [16000, 22050])
def test_a_range_resampled_from_near_its_start_has_the_whole_decodes_samples(tmp_path, rate):
  """audio_from starts the resampler a second before a range, on a period of the
  rate ratio, after decoding (not resampling) what comes before: the samples from
  the range on are the whole decode's, bit for bit (the AAC encoder's noise
  substitution makes the decoder's output depend on every frame before)."""
  from data_pipelines import decode
  split = synthetic.SplitSpec("x", 1, seed=11)
  video = synthetic.VideoSpec(size=32, seconds=6.0)
  frames, wav, _, _ = synthetic.make_scene(split, 0, video)
  path = str(tmp_path / "six.mp4")
  synthetic.write_mp4(path, frames, wav, video)
  with av.open(path) as c:
    whole = np.concatenate(list(decode._audio_chunks(c, c.streams.audio[0], rate)))
  for seconds in (0.5, 2.3, 4.1):
    keep_from = int(seconds * rate)
    with av.open(path) as c:
      chunks, start = decode.audio_from(c, c.streams.audio[0], rate, keep_from)
      ranged = np.concatenate(list(chunks))
    assert start <= keep_from - decode.RESAMPLER_WARMUP_SECONDS * rate or start == 0
    assert (start > 0) == (seconds > 1.5)
    np.testing.assert_array_equal(ranged[keep_from - start:], whole[keep_from:])


def test_one_scaler_per_stream_gives_each_frames_own_conversion(tmp_path):
  """decode._frames_at reuses one scaler, on any number of threads: its frames are
  what a fresh conversion of each decoded frame gives, pixel for pixel."""
  from data_pipelines import decode
  path = str(tmp_path / "noise.mp4")
  rng = np.random.default_rng(0)
  with av.open(path, "w") as c:
    s = c.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
    for _ in range(8):
      image = rng.integers(0, 255, (180, 320, 3), np.uint8)
      c.mux(s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    c.mux(s.encode())
  w, h = decode._resized_shape(320, 180, 64)
  with av.open(path) as c:
    expected = [f.to_ndarray(width=w, height=h, format="rgb24") for f in c.decode(video=0)]
  assert len(expected) == 8 and expected[0].shape == (64, w, 3)
  for threads in (1, 2, 0):
    with av.open(path) as c:
      got = list(decode._frames_at(c, c.streams.video[0], 25.0, 64, threads=threads))
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected)), threads


def test_timed_labels_hold_only_for_the_clips_of_their_segment(tmp_path):
  """`file,label,start,end` (an AVE event) labels the clips whose middle falls
  in [start, end); a bare label labels every clip of the file."""
  root = tmp_path / "videos"
  root.mkdir()
  video = synthetic.VideoSpec(size=48, seconds=3.0)
  frames, wav, _, _ = synthetic.make_scene(synthetic.SplitSpec("t", 1, seed=3), 0, video)
  synthetic.write_mp4(str(root / "event.mp4"), frames, wav, video)
  (root / "labels.csv").write_text("file,label,start,end\nevent.mp4,dog barking,1.2,2.6\n"
                                   "event.mp4,park\n")
  manifest = ingest.prepare(str(root), str(tmp_path / "out"), labels_csv=str(root / "labels.csv"),
                            settings=ingest.PrepareSettings(sample_rate=16000, frame_size=32,
                                                            clip_seconds=1.0),
                            workers=1, quiet=True)
  assert manifest["labels"] == ["dog barking", "park"]
  by_start = {}
  for r in _records(tmp_path / "out"):
    ctx = r.context.feature
    start = ctx[dmvr.START_US].int64_list.value[0] / 1e6
    by_start[start] = sorted(v.decode() for v in ctx[dmvr.LABEL_TEXT].bytes_list.value)
  assert by_start == {0.0: ["park"], 1.0: ["dog barking", "park"], 2.0: ["dog barking", "park"]}
  with pytest.raises(ingest.PrepareError, match=r"labels.csv:2: needs 0 <= start < end"):
    (root / "labels.csv").write_text("file,label,start,end\nevent.mp4,dog,2.0,1.0\n")
    ingest.read_labels(str(root / "labels.csv"))


def test_time_splits_are_disjoint_and_recorded(tmp_path):
  """--splits train=0:0.5,validation=0.5:1 takes each file's first and second
  halves: no clip of one split overlaps another's, and the manifests say which
  range of which file each split took."""
  root = tmp_path / "videos"
  root.mkdir()
  video = synthetic.VideoSpec(size=48, seconds=6.0)
  for i in range(2):
    frames, wav, _, _ = synthetic.make_scene(synthetic.SplitSpec("t", 2, seed=4), i, video)
    synthetic.write_mp4(str(root / f"long_{i}.mp4"), frames, wav, video)
  settings = ingest.PrepareSettings(sample_rate=16000, frame_size=32, clip_seconds=1.0)
  splits = ingest.parse_splits("train=0:0.5,validation=0.5:1")
  spans, manifests = {}, {}
  for name, time_range in splits.items():
    manifests[name] = ingest.prepare(str(root), str(tmp_path / name), settings=settings,
                                     workers=2, quiet=True, time_range=time_range,
                                     range_seconds=2.0)  # several ranges per split too
    for r in _records(tmp_path / name):
      ctx = r.context.feature
      start = ctx[dmvr.START_US].int64_list.value[0] / 1e6
      n = len(r.feature_lists.feature_list[dmvr.FRAMES].feature)
      spans.setdefault(name, []).append((ctx[dmvr.FILENAME].bytes_list.value[0].decode(),
                                         start, start + n / settings.fps))
  for f in ("long_0.mp4", "long_1.mp4"):
    train = [s for s in spans["train"] if s[0] == f]
    val = [s for s in spans["validation"] if s[0] == f]
    # The halves of the header's duration (a little over 6 s: the audio codec's padding);
    # a last clip shorter than min_seconds is dropped.
    assert len(train) == 3 and len(val) >= 2, (train, val)
    assert max(e for _, _, e in train) <= min(s for _, s, _ in val) + 1e-6  # disjoint
    assert min(s for _, s, _ in train) == 0.0
    first, end = manifests["validation"]["file_ranges"][f]
    assert end is None and abs(first - min(s for _, s, _ in val)) < 1e-6 and 3.0 <= first < 3.1
  assert manifests["train"]["time_range"] == {"start": 0.0, "end": 0.5, "seconds": False}
  assert manifests["train"]["file_ranges"]["long_0.mp4"][0] == 0.0
  with pytest.raises(ingest.PrepareError, match="overlap"):
    ingest.parse_splits("train=0:0.6,validation=0.5:1")
  # The command: one output folder per split.
  r = run_python(["-m", "avjax.prepare", f"--input={root}", f"--output={tmp_path / 'cli'}",
                  "--splits=train=0:3s,test=3s:6s", "--sample_rate=16000", "--frame_size=32",
                  "--clip_seconds=1", "--workers=1"], cwd=ROOT)
  assert r.returncode == 0, r.stderr[-2000:]
  with open(tmp_path / "cli" / "test" / ingest.MANIFEST) as f:
    assert json.load(f)["time_range"] == {"start": 3.0, "end": 6.0, "seconds": True}
  assert len(_records(tmp_path / "cli" / "train")) == 6  # 3 one-second clips of each file
  assert ingest.parse_splits("a=0:90s,b=90s:120s")["b"] == ingest.TimeRange(90, 120, True)


def test_audio_only_recordings_become_clips_of_black_frames(tmp_path):
  """--audio_only: a wav (and a long one, cut into clips and decoded in time ranges)
  gives clips of black frames as long as its sound, the sound intact; without the
  flag it is skipped as before."""
  import soundfile
  root = tmp_path / "sounds"
  root.mkdir()
  rng = np.random.default_rng(0)
  short = (rng.normal(0, 0.1, int(2.5 * 16000))).astype(np.float32)
  soundfile.write(root / "dog.wav", short, 16000)
  soundfile.write(root / "rain.flac", rng.normal(0, 0.1, 16000 * 7).astype(np.float32), 16000)
  settings = ingest.PrepareSettings(sample_rate=16000, frame_size=32, clip_seconds=3.0,
                                    audio_only=True)
  ingest.prepare(str(root), str(tmp_path / "out"), settings=settings, files_per_shard=4,
                 workers=2, quiet=True, range_seconds=3.0)
  clips = collections.defaultdict(list)
  for r in _records(tmp_path / "out"):
    ctx = r.context.feature
    frames = r.feature_lists.feature_list[dmvr.FRAMES].feature
    wav = np.array(r.feature_lists.feature_list[dmvr.WAVEFORM].feature[0].float_list.value)
    image = tf.io.decode_jpeg(frames[0].bytes_list.value[0]).numpy()
    assert image.shape == (32, 32, 3) and image.max() <= 2  # black (JPEG's rounding)
    assert len(wav) == round(len(frames) / 25 * 16000)
    clips[ctx[dmvr.FILENAME].bytes_list.value[0].decode()].append(
        (ctx[dmvr.START_US].int64_list.value[0], len(frames), wav))
  assert sorted(clips) == ["dog.wav", "rain.flac"]
  (_, n, wav), = clips["dog.wav"]
  assert n == 62  # 2.5 s at 25 fps: the frames whose span the sound covers
  np.testing.assert_allclose(wav, short[:len(wav)], atol=1e-4)
  assert [(s, n) for s, n, _ in sorted(clips["rain.flac"])] == [(0, 75), (3_000_000, 75),
                                                                 (6_000_000, 25)]
  ingest.prepare(str(root), str(tmp_path / "plain"), settings=ingest.PrepareSettings(
      sample_rate=16000, frame_size=32), files_per_shard=4, workers=1, quiet=True)
  with open(tmp_path / "plain" / ingest.REPORT) as f:
    assert {r["reason"] for r in csv.DictReader(f)} == {"no video stream"}
