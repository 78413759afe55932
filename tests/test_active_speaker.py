"""Active speaker detection: AP by hand, the turn-taking scenes and their truth,
the timeline and tracks on hand-made maps, and the evaluator end to end."""
import dataclasses

import numpy as np
import pytest
import sklearn.metrics

from avjax import metrics
from avjax.evaluators import active_speaker
from avjax.evaluators import base
from data_pipelines import synthetic

TURNS = {s.name: s for s in synthetic.DEFAULT_SPLITS}["turns_test"]
VIDEO = synthetic.VideoSpec(sample_rate=8000)


def test_average_precision_by_hand_and_against_sklearn():
  # Ranked: +, -, +, -, +  -> precisions at the positives 1/1, 2/3, 3/5.
  scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
  labels = np.array([1, 0, 1, 0, 1])
  assert metrics.average_precision(scores, labels) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
  assert metrics.average_precision(scores[::-1], labels[::-1]) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
  assert metrics.average_precision(np.array([0.1, 0.9]), np.array([1, 0])) == pytest.approx(0.5)
  assert np.isnan(metrics.average_precision(scores, np.zeros(5)))
  rng = np.random.default_rng(0)
  s, y = rng.normal(size=200), rng.integers(0, 2, 200)
  assert metrics.average_precision(s, y) == pytest.approx(sklearn.metrics.average_precision_score(y, s))


def test_turns_cover_the_clip_alternate_and_hold_each_objects_notes():
  for i in range(4):
    frames, wave, _, _, speakers = synthetic.make_scene(TURNS, i, VIDEO, with_speakers=True)
    assert 2 <= len(speakers) <= 3 and frames.shape[0] == 75 and len(wave) == 24000
    turns = sorted((s, e, k) for k, (_, _, ivs) in enumerate(speakers) for s, e in ivs)
    assert turns[0][0] == 0.0 and turns[-1][1] == pytest.approx(3.0)
    for (s0, e0, k0), (s1, _, k1) in zip(turns, turns[1:]):
      assert e0 == pytest.approx(s1) and k0 != k1  # back to back, never the same twice
  # An object sounds only within its turns (50 ms of decay after each), from each turn's start.
  t = np.arange(16000) / 8000
  o = {"cls": 2, "turns": [(0.5, 1.0)], "onsets": np.array([0.52, 0.8])}
  sound = synthetic._turn_sound(o, t, 8000, np.random.default_rng(0))
  assert np.all(sound[(t < 0.52) | (t >= 1.05)] == 0)
  assert np.abs(sound[(t >= 0.53) & (t < 0.6)]).max() > 0


def test_older_splits_give_no_turns_and_one_speaker():
  split = {s.name: s for s in synthetic.DEFAULT_SPLITS}["sync_test"]
  plain = synthetic.make_scene(split, 2, VIDEO)
  *same, speakers = synthetic.make_scene(split, 2, VIDEO, with_speakers=True)
  np.testing.assert_array_equal(plain[1], same[1])
  assert speakers == [(synthetic.CLASSES[plain[2]], plain[3], [(0.0, 3.0)])]


def test_speakers_csv_round_trip_and_box_in_the_centre_crop(tmp_path):
  path = tmp_path / "speakers.csv"
  synthetic.write_speakers_csv([("a.mp4", [("ring", (0.1, 0.2, 0.5, 0.6), [(0.0, 0.5), (1.0, 1.5)]),
                                           ("tee", (0.5, 0.5, 0.9, 0.9), [(0.5, 1.0)])])], str(path))
  got = active_speaker.read_speakers(str(path))
  assert set(got["a.mp4"]) == {0, 1}
  assert got["a.mp4"][0]["intervals"] == [(0.0, 0.5), (1.0, 1.5)]
  np.testing.assert_allclose(got["a.mp4"][1]["box"], [0.5, 0.5, 0.9, 0.9])
  # 72 px frame, 64 px centre crop: pixel 4 is the crop's 0, pixel 68 its 1.
  np.testing.assert_allclose(active_speaker.box_in_centre_crop(np.array([4, 36, 68, 70]) / 72, 72, 64),
                             [0, 0.5, 1, 1])
  (tmp_path / "bad.csv").write_text("file,object\na.mp4,0\n")
  with pytest.raises(ValueError, match="bad.csv: needs columns"):
    active_speaker.read_speakers(str(tmp_path / "bad.csv"))
  with pytest.raises(FileNotFoundError, match="missing.csv: no such file"):
    active_speaker.read_speakers(str(tmp_path / "missing.csv"))


def test_timeline_averages_every_windows_estimate_of_a_step():
  # Windows of 1 s with 2 steps, starting at 0 and 0.5 s: step [0.5, 1) is seen twice.
  cams = np.array([[[[1.0]], [[3.0]]], [[[5.0]], [[7.0]]]])
  times, maps = base.timeline(cams, np.array([0.0, 0.5]), 1.0)
  np.testing.assert_allclose(times, [0.25, 0.75, 1.25])
  np.testing.assert_allclose(maps[:, 0, 0], [1.0, 4.0, 7.0])


def test_a_map_bright_on_the_sounding_object_ranks_it_first():
  """Two objects in a 4 x 4 map, taking turns: the map bright where the sounding
  one is gives AP 1; an object that no track reaches ranks last."""
  objects = {0: {"label": "ring", "box": np.array([0.0, 0.0, 0.5, 0.5]), "intervals": [(0.0, 1.0)]},
             1: {"label": "tee", "box": np.array([0.5, 0.5, 1.0, 1.0]), "intervals": [(1.0, 2.0)]}}
  times = np.arange(8) * 0.25 + 0.125
  cams = np.zeros((8, 4, 4))
  cams[:4, 0, 0] = 1.0   # object 0 sounds in the first second
  cams[4:, 3, 3] = 1.0   # object 1 in the second
  rows = active_speaker.clip_rows(cams, times, objects, max_objects=4, radius=0,
                                  crop_box=lambda b: b)
  labels, scores, sounding = (np.array(x) for x in zip(*rows))
  assert metrics.average_precision(scores, sounding) == 1.0
  objects[1]["box"] = np.array([0.9, 0.0, 1.0, 0.1])  # where no peak is
  rows = active_speaker.clip_rows(cams, times, objects, max_objects=4, radius=0,
                                  crop_box=lambda b: b)
  assert all(r[1] == -np.inf for r in rows if r[0] == "tee")


def test_competing_tracks_by_hand():
  a, b, c = np.array([1.0, 0.0]), np.array([0.0, 2.0]), np.array([0.5, 0.5])
  got = active_speaker.competing([a, None, b, c])
  np.testing.assert_allclose(got[0], [0.5, -2.0])
  assert got[1] is None
  np.testing.assert_allclose(got[2], [-1.0, 1.5])
  np.testing.assert_allclose(active_speaker.competing([a])[0], a)  # alone: as it was


def test_the_evaluator_scores_a_sync_model_on_turn_taking_clips(tmp_path):
  from avjax.evaluators import runner
  from data_pipelines import ingest
  from tests.conftest import FRAME_SIZE, SAMPLE_RATE, TINY_SPECTROGRAM, tiny_config
  split = dataclasses.replace(TURNS, num_clips=4)
  synthetic.generate_split(split, str(tmp_path / "videos"), workers=2)
  ingest.prepare(str(tmp_path / "videos"), str(tmp_path / "data" / "turns_test"),
                 labels_csv=str(tmp_path / "videos" / "labels.csv"),
                 boxes_csv=str(tmp_path / "videos" / "boxes.csv"),
                 settings=ingest.PrepareSettings(sample_rate=SAMPLE_RATE, frame_size=FRAME_SIZE,
                                                 spectrogram=TINY_SPECTROGRAM),
                 files_per_shard=4, workers=2, quiet=True)
  config = tiny_config("sync", tmp_path / "data", train_split="turns_test")
  config.evals.active_speaker.update(batch_size=8, split="turns_test",
                                     speakers_csv=str(tmp_path / "videos" / "speakers.csv"))
  record = runner.evaluate(config, str(tmp_path / "work"), evals=["active_speaker"],
                           random_init=True, pictures=False)
  m = record["metrics"]
  assert m["active_speaker_clips"] == 4 and m["active_speaker_unannotated_clips"] == 0
  assert 0 < m["active_speaker_chance"] < 1 and 0 < m["active_speaker_map"] <= 1
  config.evals.active_speaker.speakers_csv = str(tmp_path / "nowhere.csv")
  with pytest.raises(FileNotFoundError, match="nowhere.csv"):
    runner.evaluate(config, str(tmp_path / "work"), evals=["active_speaker"], random_init=True,
                    pictures=False)
