"""The embedded dataset's scenes: the existing splits unchanged by the new ones,
and the harder localisation splits as specified."""
import collections
import hashlib

import numpy as np

from data_pipelines import synthetic

VIDEO = synthetic.VideoSpec()
SPLITS = {s.name: s for s in synthetic.DEFAULT_SPLITS}


def test_existing_splits_are_the_scenes_they_were():
  """Scene 5 of each split as generated before test_small / test_many existed
  (dataset v3), of those two before the sync splits (v4), and of the sync, glyph and
  turn-taking splits before the struck-object splits: the README's figures of
  these splits stay valid."""
  want = {"train": "f2dff78b48b27626", "validation": "6d61363aad3bd221",
          "test": "9e37caff715dc829", "test_crowded": "d7e3766e8f7a6387",
          "test_small": "cc20e0669a866671", "test_many": "7d5eef62573b0bbc",
          "sync_train": "494e6ff7e6c7bed6", "glyphs_train": "d81ba2915cbe3f43",
          "turns_test": "76b91de989c5b911"}
  for name, digest in want.items():
    frames, wave, _, _ = synthetic.make_scene(SPLITS[name], 5, VIDEO)
    assert hashlib.sha256(frames.tobytes() + wave.tobytes()).hexdigest()[:16] == digest, name


def _objects_placed(split, n):
  counts = collections.Counter()
  place = synthetic.place_object
  for i in range(n):
    placed = [0]

    def counting(*a, **k):
      r = place(*a, **k)
      placed[0] += r is not None
      return r
    synthetic.place_object = counting
    try:
      _, _, _, box = synthetic.make_scene(split, i, VIDEO)
    finally:
      synthetic.place_object = place
    counts[placed[0]] += 1
    yield placed[0], box


def test_small_objects_are_half_the_smallest_training_size():
  smallest_train = int(VIDEO.size * SPLITS["train"].size_range[0])
  for placed, box in _objects_placed(SPLITS["test_small"], 40):
    assert 2 <= placed <= 4
    side = (box[2] - box[0]) * VIDEO.size
    assert 0.4 * smallest_train <= side <= 0.55 * smallest_train, side


def test_many_holds_five_or_six_objects():
  placed = [p for p, _ in _objects_placed(SPLITS["test_many"], 40)]
  assert sum(p in (5, 6) for p in placed) >= 0.95 * len(placed), collections.Counter(placed)


def test_sync_scenes_sound_at_the_sounding_objects_onsets():
  """Time structure: the sound's notes start at the sounding object's onsets (its
  energy jumps there), onsets are never closer than EVENT_GAP, and a silent
  object swells at times of its own."""
  import numpy as np
  split = SPLITS["sync_crowded"]
  assert split.seconds == 3.0 and split.events
  for i in range(3):
    _, wave, _, _ = synthetic.make_scene(split, i, VIDEO)
    rng = np.random.default_rng([split.seed, i, 1])  # the scene's event stream
    onsets = [synthetic.event_onsets(split.seconds, rng) for _ in range(3)]
    assert all(np.diff(o).min() >= synthetic.EVENT_GAP for o in onsets if len(o) > 1)
    assert not np.array_equal(onsets[0], onsets[1])
    sr, w = VIDEO.sample_rate, int(0.03 * VIDEO.sample_rate)
    for t in onsets[0]:
      s = int(t * sr)
      if s >= w and s + w <= len(wave) and (onsets[0][onsets[0] < t].size == 0 or
                                             t - onsets[0][onsets[0] < t].max() > 0.4):
        before, after = wave[s - w:s], wave[s:s + w]
        assert np.sqrt(np.mean(after ** 2)) > 3 * np.sqrt(np.mean(before ** 2)), (i, t)


def test_glyph_scenes_are_upright_letters_whose_colour_tells_nothing():
  """The image pretext splits: every class appears, the glyph is the only thing
  that differs between classes (its colour is drawn apart from it), and it is
  upright: a glyph turned by a quarter or half turn is not the same picture."""
  split = SPLITS["glyphs_train"]
  classes = collections.defaultdict(list)
  for i in range(120):
    frames, wave, cls, box = synthetic.make_scene(split, i, VIDEO)
    assert frames.shape == (35, VIDEO.size, VIDEO.size, 3) and wave.ndim == 1
    ymin, xmin, ymax, xmax = box
    assert 0.5 < ymax - ymin < 0.8 and 0.5 < xmax - xmin < 0.8
    classes[cls].append(i)
  assert sorted(classes) == list(range(len(synthetic.GLYPHS)))
  for g in synthetic.GLYPHS:
    upright = synthetic.glyph_mask(g, 48, 0.0)
    for k in (1, 2, 3):
      turned = np.rot90(upright, k)
      assert (upright != turned).mean() > 0.05, (g, k)
  # One class, many colours: the brightest pixel (the glyph's) varies across its scenes.
  brightest = [synthetic.make_scene(split, i, VIDEO)[0][0].reshape(-1, 3).max(axis=0)
               for i in classes[0][:8]]
  assert np.ptp(np.asarray(brightest, float), axis=0).max() > 60
