"""The embedded dataset's scenes: the existing splits unchanged by the new ones,
and the harder localisation splits as specified."""
import collections
import hashlib

from data_pipelines import synthetic

VIDEO = synthetic.VideoSpec()
SPLITS = {s.name: s for s in synthetic.DEFAULT_SPLITS}


def test_existing_splits_are_the_scenes_they_were():
  """Scene 5 of each split as generated before test_small / test_many existed
  (dataset v3): the README's figures of these splits stay valid."""
  want = {"train": "f2dff78b48b27626", "validation": "6d61363aad3bd221",
          "test": "9e37caff715dc829", "test_crowded": "d7e3766e8f7a6387"}
  for name, digest in want.items():
    frames, wave, _, _ = synthetic.make_scene(SPLITS[name], 5, VIDEO)
    assert hashlib.sha256(frames.tobytes() + wave.tobytes()).hexdigest()[:16] == digest, name


def _objects_placed(split, n):
  counts = collections.Counter()
  place = synthetic._place
  for i in range(n):
    placed = [0]

    def counting(*a, **k):
      r = place(*a, **k)
      placed[0] += r is not None
      return r
    synthetic._place = counting
    try:
      _, _, _, box = synthetic.make_scene(split, i, VIDEO)
    finally:
      synthetic._place = place
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
