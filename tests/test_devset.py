"""The real-sound development set's builder (data_pipelines/devset.py,
avjax-devset), on a small sample library in Debian's layout written here: CI has
no sonic-pi-samples package."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines import devset
from tests.conftest import ROOT

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Sonic Pi

Files: etc/samples/bd_test.flac
Copyright: 2013 A Drummer
Source: http://freesound.org/people/a/sounds/1/
License: CC0

Files: etc/samples/elec_test.flac
Copyright: 2014 A Synth
Source: http://freesound.org/people/b/sounds/2/
License: CC-BY-SA-4.0

Files: etc/samples/loop_test.flac
Copyright: 2015 A Band
Source: http://freesound.org/people/c/sounds/3/
License: CC0
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
  """Three samples (two one-shots, one loop) and their copyright file; a fourth
  sample with no licence, which the builder must not use."""
  import soundfile
  root = tmp_path_factory.mktemp("sonicpi")
  samples = root / "samples"
  samples.mkdir()
  rate = 44100
  t = np.arange(int(0.3 * rate)) / rate
  soundfile.write(samples / "bd_test.flac", np.sin(2 * np.pi * 60 * t) * np.exp(-t * 20), rate)
  soundfile.write(samples / "elec_test.flac", np.sign(np.sin(2 * np.pi * 880 * t)) *
                  np.exp(-t * 30), rate)
  loop = np.arange(2 * rate) / rate
  soundfile.write(samples / "loop_test.flac", np.stack([np.sin(2 * np.pi * 220 * loop)] * 2, 1)
                  * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * loop))[:, None], rate)
  soundfile.write(samples / "drum_unlicensed.flac", np.ones(100) * 0.1, rate)
  (root / "copyright").write_text(COPYRIGHT)
  return str(samples), str(root / "copyright")


SPEC = devset.DevSetSpec(num_recordings=2, seconds=6.0, size=48, shot_seconds=(2.0, 3.0))


def test_only_licensed_samples_are_used_and_sorted_by_part(library):
  samples = devset.sample_files(*library)
  assert [os.path.basename(f) for f in samples["events"]] == ["bd_test.flac", "elec_test.flac"]
  assert [os.path.basename(f) for f in samples["beds"]] == ["loop_test.flac"]


def test_a_recording_is_the_same_every_time_and_its_sounds_are_where_it_says(library):
  samples = devset.sample_files(*library)
  a = devset.make_recording(SPEC, 1, samples)
  b = devset.make_recording(SPEC, 1, samples)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert a[2] == b[2]
  frames, wave, events = a
  assert frames.shape == (150, 48, 48, 3) and wave.shape == (6 * 48000,)
  on_screen = [e for e in events if isinstance(e[2], tuple)]
  assert on_screen and any(e[2] is None for e in events) and events[0][2] == "bed"
  # Each on-screen onset starts a sound: the 20 ms after it are louder than the
  # 20 ms before (the bed runs under both).
  n = 960
  rises = [np.abs(wave[int(t * 48000):int(t * 48000) + n]).mean() >
           np.abs(wave[max(0, int(t * 48000) - n):int(t * 48000)]).mean() for t, _, _ in on_screen]
  assert np.mean(rises) > 0.8
  # ...and swells its object: across the onset, its box changes more than the frame.
  assert all(0.0 <= c <= 1.0 for _, _, box in on_screen for c in box)
  changed = []
  for t, _, (y0, x0, y1, x1) in on_screen:
    f = int(round(t * SPEC.fps))
    if f < 1 or f + 2 >= len(frames) or y1 - y0 < 0.05 or x1 - x0 < 0.05:
      continue
    diff = np.abs(frames[f + 2].astype(float) - frames[f - 1].astype(float)).mean(-1)
    inside = diff[int(y0 * 48):int(np.ceil(y1 * 48)), int(x0 * 48):int(np.ceil(x1 * 48))]
    changed.append(inside.mean() > diff.mean())
  assert len(changed) >= 3 and np.mean(changed) > 0.7


def test_missing_samples_are_refused_in_one_line_saying_how_to_install(library, tmp_path):
  with pytest.raises(devset.DevSetError, match="apt-get install sonic-pi-samples"):
    devset.sample_files(str(tmp_path / "nowhere"), library[1])
  with pytest.raises(devset.DevSetError, match="licences are missing"):
    devset.sample_files(library[0], str(tmp_path / "no_copyright"))
  r = subprocess.run([sys.executable, "-m", "avjax.devset", "--config=configs/sync.py:tiny",
                      f"--samples_dir={tmp_path / 'nowhere'}", f"--output={tmp_path / 'out'}"],
                     cwd=ROOT, capture_output=True, text=True)
  assert r.returncode != 0
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("avjax-devset: ") and "apt-get install sonic-pi-samples" in last


def test_the_build_writes_videos_licences_and_boxes(library, tmp_path):
  out = tmp_path / "videos"
  devset.build_videos(str(out), SPEC, *library, workers=1)
  assert sorted(p.name for p in out.glob("*.mp4")) == ["recording_000.mp4", "recording_001.mp4"]
  with open(out / "LICENSES.csv") as f:
    rows = {r["sample"]: r for r in csv.DictReader(f)}
  assert set(rows) <= {"bd_test.flac", "elec_test.flac", "loop_test.flac"}
  assert "loop_test.flac" in rows and rows["loop_test.flac"]["license"] == "CC0"
  assert all(r["source"].startswith("http://freesound.org/") for r in rows.values())
  with open(out / "boxes.csv") as f:
    boxes = list(csv.DictReader(f))
  assert boxes and all(0 <= float(b["time"]) < SPEC.seconds for b in boxes)
  assert (out / ".complete").exists()


def test_build_prepares_time_splits_with_boxes_only_where_localisation_reads_them(library, tmp_path):
  import json
  from avjax import input as input_lib
  from configs import sync
  from data_pipelines import reader
  config = sync.get_config("tiny")
  prepared = input_lib.build_devset(config, str(tmp_path / "dev"), SPEC, clip_seconds=2.0,
                                    samples_dir=library[0], copyright_path=library[1],
                                    workers=1)
  splits = {s: json.load(open(os.path.join(prepared, s, "manifest.json")))
            for s in ("train", "validation", "test", "test_boxes")}
  assert splits["train"]["time_range"] == {"start": 0.0, "end": 0.8, "seconds": False}
  assert splits["test"]["time_range"] == splits["test_boxes"]["time_range"]
  assert splits["train"]["num_clips"] == 2 * 3  # 4.8 s of each 6 s recording: 2 + 2 + 0.8 s
  boxes = {}
  for s in ("test", "test_boxes"):
    files = reader.resolve_files(prepared, s)
    parse = reader.parse_fn(input_lib.reader_spec(config.data))
    boxes[s] = [int(parse(r)["boxes"].shape[0]) for r in reader.record_dataset(files)]
  assert sum(boxes["test"]) == 0 and sum(boxes["test_boxes"]) > 0
  assert os.path.exists(os.path.join(prepared, "LICENSES.csv"))
