"""The reader's batches against the batch contract."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from avjax import step_inputs
from data_pipelines import clip_ops
from data_pipelines import reader as reader_lib
from data_pipelines import spectrogram as spectrogram_lib
from tests.conftest import FRAME_SIZE, SAMPLE_RATE, TRAIN, VAL

SPEC = spectrogram_lib.SpectrogramSpec(sample_rate=SAMPLE_RATE, win_length=256, hop_length=160,
                                       n_fft=256)
BATCH = 8


def make_reader(data_dir, split="train", seed=0, **kw):
  kw.setdefault("stored_spectrogram", True)  # the default path: slice prepare's |STFT|
  spec = reader_lib.ReaderSpec(spectrogram=SPEC, resize=FRAME_SIZE, crop=32, shuffle_buffer=16, **kw)
  return reader_lib.Reader(reader_lib.resolve_files(str(data_dir), split), spec=spec,
                           batch_size=BATCH, seed=seed)


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("negatives", ["stream", "in_batch"])
def test_contract(data_dir, negatives):
  batch = next(make_reader(data_dir, negatives=negatives).train_iterator())
  # uint8 crops plus each frame's augmentation draws, applied on device (avjax.frames).
  assert batch["frames"].shape == (BATCH, 32, 32, 3) and batch["frames"].dtype == np.uint8
  assert batch["aug_flip"].dtype == bool and batch["aug_flip"].shape == (BATCH,)
  for k in ("aug_brightness", "aug_contrast", "aug_saturation"):
    assert batch[k].shape == (BATCH,) and batch[k].dtype == np.float32, k
  assert 0.7 <= batch["aug_contrast"].min() and batch["aug_contrast"].max() <= 1.3
  # |STFT| windows and their gains; the step takes the log (avjax.step_inputs).
  assert batch["stft_magnitude"].shape == (BATCH, 49, 129)
  assert batch["stft_magnitude"].dtype == np.float32 and batch["aug_gain"].dtype == np.float32
  assert "spectrogram" not in batch
  assert batch["label"].shape == (BATCH,) and batch["label"].dtype == np.int32
  spectrogram = np.asarray(step_inputs.log_spectrogram(batch["stft_magnitude"], batch["aug_gain"],
                                                       SPEC))
  assert spectrogram.shape == (BATCH, 129, 49, 1) and spectrogram.dtype == np.float32
  assert np.all(np.isfinite(spectrogram))
  # Real pictures, log-spectrograms of real (not all-zero) audio.
  assert batch["frames"].std() > 5
  assert spectrogram.std() > 0.5
  assert spectrogram.max() > np.log(SPEC.log_offset) + 5


@pytest.mark.parametrize("negatives", ["stream", "in_batch"])
@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_label_balance_and_honest_labels(data_dir, negatives, fraction):
  batches = take(make_reader(data_dir, negatives=negatives, negative_fraction=fraction)
                 .train_iterator(), 6)
  labels = np.concatenate([b["label"] for b in batches])
  same = np.concatenate([b["video_id"] == b["audio_video_id"] for b in batches])
  # A label says whether the audio came from the frame's own video: nothing else.
  np.testing.assert_array_equal(labels, same.astype(np.int32))
  negatives_drawn = round(len(labels) * fraction)
  # Only draws that hit the same video (rare with 24 clips) turn into positives.
  assert negatives_drawn - 3 <= np.sum(labels == 0) <= negatives_drawn


@pytest.mark.parametrize("negatives", ["stream", "in_batch"])
def test_audio_starts_on_frame_grid(data_dir, negatives):
  batches = take(make_reader(data_dir, negatives=negatives).train_iterator(), 6)
  starts = np.concatenate([b["audio_start"] * b["fps"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  offsets = np.abs(starts - np.round(starts))  # start modulo 1/fps, in frames
  assert np.all(offsets[labels == 0] < 1e-3), offsets[labels == 0]
  assert np.all(offsets[labels == 1] < 1e-3)
  assert len(np.unique(np.round(starts))) > 5  # and the start itself varies


def test_off_grid_ablation_samples_anywhere(data_dir):
  batches = take(make_reader(data_dir, negatives_on_grid=False).train_iterator(), 6)
  starts = np.concatenate([b["audio_start"] * b["fps"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  offsets = np.abs(starts - np.round(starts))
  assert np.mean(offsets[labels == 0] > 1e-3) > 0.8
  # Positives stay on the grid; a negative draw that hit its own video is labelled
  # 1 (the audio does come from that video) and may be off-grid: a rare few.
  assert np.sum(offsets[labels == 1] > 1e-3) <= 3


def test_same_seed_same_batches(data_dir):
  a = take(make_reader(data_dir, seed=3).train_iterator(), 4)
  b = take(make_reader(data_dir, seed=3).train_iterator(), 4)
  for x, y in zip(a, b):
    assert_same(x, y)
  c = next(make_reader(data_dir, seed=4).train_iterator())
  assert not np.array_equal(a[0]["frames"], c["frames"])


def test_zoom_out_draws_come_only_when_asked_and_leave_the_others(data_dir):
  plain = next(make_reader(data_dir, seed=3).train_iterator())
  zoomed = next(make_reader(data_dir, seed=3, zoom_out=0.5).train_iterator())
  assert "aug_zoom" not in plain
  assert_same(plain, {k: v for k, v in zoomed.items() if k != "aug_zoom"})
  z = zoomed["aug_zoom"]
  assert z.shape == (BATCH, 3) and z.dtype == np.float32
  assert np.all((z[:, 0] >= 0.5) & (z[:, 0] <= 1.0)) and np.all((z[:, 1:] >= 0) & (z[:, 1:] <= 1))
  assert len(np.unique(z[:, 0])) == BATCH
  with pytest.raises(ValueError, match="config.data.zoom_out must be in"):
    make_reader(data_dir, zoom_out=1.0)


@pytest.mark.parametrize("negatives", ["stream", "in_batch"])
@pytest.mark.parametrize("k", [2, 5])  # 5 crosses the 24-clip epoch boundary
@pytest.mark.parametrize("per_clip", [1, 3])  # 3: steps 2 and 5 start inside 27-pair blocks
def test_restore_at_step_k(data_dir, negatives, k, per_clip):
  make = lambda: make_reader(data_dir, negatives=negatives, examples_per_clip=per_clip)
  ran = take(make().train_iterator(), k + 2)
  restored = take(make().train_iterator(start_step=k), 2)
  for x, y in zip(ran[k:], restored):
    assert_same(x, y)


def test_one_window_per_clip_where_the_pairing_takes_one(data_dir, monkeypatch):
  """Stream negatives with B * fraction whole, and shifted ones: each clip carries
  only the window its pair takes (pairs.one_window), and the batches are those of
  carrying both windows, bit for bit; in_batch negatives, or B * fraction not
  whole, carry both."""
  from avjax import input as input_lib
  from data_pipelines import pairs
  from tests.test_sync import sync_config_on
  assert pairs.gives_one_window("stream", 8, 0.5) and pairs.gives_one_window("shifted", 7, 0.3)
  assert pairs.gives_one_window("stream", 8, 0.375) and pairs.gives_one_window("stream", 7, 0.0)
  assert not pairs.gives_one_window("stream", 7, 0.5)
  assert not pairs.gives_one_window("stream", 5, 0.2)  # 0.2's float64 products are inexact
  assert not pairs.gives_one_window("in_batch", 8, 0.5)
  sync = sync_config_on(data_dir).data
  makers = [lambda: make_reader(data_dir, examples_per_clip=3),
            lambda: make_reader(data_dir),
            lambda: input_lib.make_reader(sync, "train", global_batch=BATCH, seed=0)]
  for make in makers:
    one = take(make().train_iterator(), 3)
    with monkeypatch.context() as m:
      m.setattr(pairs, "gives_one_window", lambda *args: False)
      two = take(make().train_iterator(), 3)
    assert (one[0]["label"] == 0).any() and (one[0]["label"] == 1).any()
    for x, y in zip(one, two):
      assert_same(x, y)


def test_examples_per_clip_spread_over_batches(data_dir):
  """Three pairs per record read: B + 1 = 9 clips in flight give their pairs in
  turn, so the first 27 pairs hold 9 clips three times each, never two of one
  clip in a batch, and a stream negative never comes from the frame's own clip."""
  batches = take(make_reader(data_dir, examples_per_clip=3).train_iterator(), 4)
  ids = np.concatenate([b["video_id"] for b in batches])
  _, counts = np.unique(ids[:27], return_counts=True)
  np.testing.assert_array_equal(counts, [3] * 9)
  for b in batches:
    assert len(np.unique(b["video_id"])) == BATCH
    neg = b["label"] == 0
    assert neg.any() and np.all(b["audio_video_id"][neg] != b["video_id"][neg])
  # A clip's pairs are different draws: frames (crops, flips) and audio windows.
  frames = np.concatenate([b["frames"] for b in batches])[:27]
  starts = np.concatenate([b["audio_start"] for b in batches])[:27]
  first = {v: i for i, v in reversed(list(enumerate(ids[:27])))}
  repeats = [i for i, v in enumerate(ids[:27]) if first[v] != i]
  assert all(not np.array_equal(frames[i], frames[first[ids[i]]]) for i in repeats)
  assert sum(starts[i] != starts[first[ids[i]]] for i in repeats) >= len(repeats) // 2


def test_epochs_differ_and_cover_every_clip(data_dir):
  r = make_reader(data_dir)
  epoch = TRAIN.num_clips // BATCH
  batches = take(r.train_iterator(), 2 * epoch)
  ids = [np.sort(np.concatenate([b["video_id"] for b in batches[e * epoch:(e + 1) * epoch]]))
         for e in range(2)]
  np.testing.assert_array_equal(ids[0], ids[1])     # every clip once per epoch
  assert len(np.unique(ids[0])) == TRAIN.num_clips
  order0 = np.concatenate([b["video_id"] for b in batches[:epoch]])
  order1 = np.concatenate([b["video_id"] for b in batches[epoch:]])
  assert not np.array_equal(order0, order1)         # in a new order


def test_eval_yields_every_clip_once(data_dir):
  r = make_reader(data_dir, split="validation")
  batches = list(r.eval_iterator())
  assert len(batches) == -(-VAL.num_clips // BATCH)
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.sum() == VAL.num_clips
  ids = np.concatenate([b["video_id"] for b in batches])[mask > 0]
  assert len(np.unique(ids)) == VAL.num_clips
  labels = np.concatenate([b["labels"] for b in batches])[mask > 0]
  assert labels.shape[1] == len(r.label_names) and np.all(labels.sum(1) == 1)
  boxes = np.concatenate([b["box"] for b in batches])[mask > 0]
  assert np.all((boxes >= 0) & (boxes <= 1))
  assert np.all(np.concatenate([b["neg_label"] for b in batches])[mask > 0] == 0)
  # Deterministic: no augmentation in evaluation.
  again = list(r.eval_iterator())
  for x, y in zip(batches, again):
    assert_same(x, y)


def test_ops_alone_equal_ops_in_tf_data(data_dir):
  """Each op gives the same result eagerly and traced inside tf.data."""
  files = reader_lib.resolve_files(str(data_dir), "train")
  spec = make_reader(data_dir).spec
  record = next(iter(tf.data.TFRecordDataset(files[:1])))
  parse = reader_lib.parse_fn(spec)
  eager = clip_ops.clip_windows(parse(record), tf.constant(7, tf.int64), 1, spec=spec, train=True)
  traced = next(iter(tf.data.Dataset.from_tensors(record).map(
      lambda r: clip_ops.clip_windows(parse(r), tf.constant(7, tf.int64), 1, spec=spec,
                                        train=True))))
  for k in ("pos_audio", "neg_audio", "pos_start", "neg_start", "jpeg"):
    np.testing.assert_array_equal(eager[k].numpy(), traced[k].numpy(), err_msg=k)
  frame_eager = clip_ops.decode_for_batch(eager, spec=spec, train=True)
  frame_traced = next(iter(tf.data.Dataset.from_tensors(eager).map(
      lambda e: clip_ops.decode_for_batch(e, spec=spec, train=True))))
  for k in frame_eager:
    np.testing.assert_array_equal(frame_eager[k].numpy(), frame_traced[k].numpy(), err_msg=k)


def test_missing_split_names_the_path(data_dir):
  with pytest.raises(FileNotFoundError, match="nosuchsplit"):
    reader_lib.resolve_files(str(data_dir), "nosuchsplit")


def test_wrong_sample_rate_is_a_clear_error(data_dir):
  spec = reader_lib.ReaderSpec(spectrogram=spectrogram_lib.SpectrogramSpec(sample_rate=48000))
  r = reader_lib.Reader(reader_lib.resolve_files(str(data_dir), "train"), spec=spec,
                        batch_size=2, seed=0)
  with pytest.raises(reader_lib.DataError, match="sample_rate"):
    next(r.train_iterator())


def test_box_follows_the_evaluation_crop():
  """Boxes are stored relative to the whole frame; evaluation sees the central crop."""
  spec = dataclasses.replace(reader_lib.ReaderSpec(spectrogram=SPEC), resize=64, crop=48)
  jpeg = tf.io.encode_jpeg(tf.zeros([80, 128, 3], tf.uint8))  # -> 64 x 102 (rounded), crop at (8, 27)
  box = clip_ops.box_in_crop(tf.constant([0.5, 0.5, 1.0, 0.6]), jpeg, spec).numpy()
  np.testing.assert_allclose(box, [(32 - 8) / 48, (51 - 27) / 48, 1.0, (61.2 - 27) / 48], rtol=1e-6)


@pytest.mark.parametrize("negatives,per_clip", [("stream", 1), ("in_batch", 1), ("stream", 3)])
def test_stored_spectrogram_equals_computing_it(data_dir, negatives, per_clip):
  """Slicing prepare's |STFT| gives the batches the float64 STFT of the waveform
  gives; with several pairs per record its windows ship with their rows' zero
  padding (reader.shipped_bins), which the step drops."""
  stored = make_reader(data_dir, negatives=negatives, examples_per_clip=per_clip)
  computed = make_reader(data_dir, negatives=negatives, stored_spectrogram=False,
                         examples_per_clip=per_clip)
  assert stored.spec.stored_spectrogram and not computed.spec.stored_spectrogram
  for a, b in zip(take(stored.train_iterator(), 2), take(computed.train_iterator(), 2)):
    assert a.keys() == b.keys()
    shipped = a["stft_magnitude"].shape[-1]
    assert shipped == reader_lib.shipped_bins(stored.spec) == (144 if per_clip > 1 else 129)
    assert not a["stft_magnitude"][..., SPEC.num_bins:].any()
    for k in a:
      if k == "stft_magnitude":  # compared as the step's log-spectrograms
        logs = [step_inputs.log_spectrogram(x[k], x["aug_gain"], SPEC) for x in (a, b)]
        np.testing.assert_allclose(*logs, atol=1e-5, rtol=0)
      else:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  a, b = next(stored.eval_iterator()), next(computed.eval_iterator())
  for k in ("spectrogram", "neg_spectrogram"):
    np.testing.assert_allclose(a[k], b[k], atol=1e-5, rtol=0)
  np.testing.assert_array_equal(a["frames"], b["frames"])


def test_stored_spectrogram_only_where_it_fits(data_dir):
  """Off-grid negatives, another framing or shards without |STFT| compute it instead."""
  assert not make_reader(data_dir, negatives_on_grid=False).spec.stored_spectrogram
  other = dataclasses.replace(SPEC, hop_length=80)
  spec = reader_lib.ReaderSpec(spectrogram=other, resize=FRAME_SIZE, crop=32, stored_spectrogram=True)
  files = reader_lib.resolve_files(str(data_dir), "train")
  assert not reader_lib.Reader(files, spec=spec, batch_size=BATCH, seed=0).spec.stored_spectrogram
  manifest = reader_lib.load_manifest(files)
  assert reader_lib.can_use_stored_spectrogram(manifest, make_reader(data_dir).spec)
  assert not reader_lib.can_use_stored_spectrogram({**manifest, "spectrogram": None},
                                                   make_reader(data_dir).spec)
  # 30 fps at 8 kHz: 266.7 samples per frame, off the hop grid.
  assert not reader_lib.can_use_stored_spectrogram(
      {**manifest, "settings": {**manifest["settings"], "fps": 30.0}}, make_reader(data_dir).spec)


def test_fallback_to_computing_the_stft_is_said_once(data_dir, caplog):
  other = dataclasses.replace(SPEC, win_length=200)
  spec = reader_lib.ReaderSpec(spectrogram=other, resize=FRAME_SIZE, crop=32, stored_spectrogram=True)
  files = reader_lib.resolve_files(str(data_dir), "train")
  with caplog.at_level("WARNING"):
    for _ in range(2):
      reader_lib.Reader(files, spec=spec, batch_size=BATCH, seed=0)
  said = [r.getMessage() for r in caplog.records if "instead of slicing" in r.getMessage()]
  assert len(said) == 1, said
  assert "win_length 256 vs 200" in said[0] and str(data_dir) in said[0]


def test_stream_negatives_come_from_the_next_batch(data_dir):
  """Stream negatives are clips outside the batch: example i takes clip i + B's window."""
  batches = take(make_reader(data_dir, negatives="stream").train_iterator(), 3)
  for cur, nxt in zip(batches, batches[1:]):
    neg = cur["label"] == 0
    assert neg.any()
    np.testing.assert_array_equal(cur["audio_video_id"][neg], nxt["video_id"][neg])
    assert not np.isin(cur["audio_video_id"][neg], cur["video_id"]).all()


def test_the_reader_benchmark_times_whole_blocks_of_records():
  """benchmarks/accelerator_plan.py times the reader over whole blocks of the
  (B + 1) k examples that one read of B + 1 records gives, from a block's start,
  so the timed span reads records as often as a long run does."""
  from benchmarks.accelerator_plan import timed_span
  for k, b in ((16, 32), (32, 32), (3, 8), (16, 8)):
    warmup, timed = timed_span(k, b, 12)
    block = (b + 1) * k
    assert timed >= 12 and warmup * b % block == 0 and timed * b % block == 0, (k, b)
  assert timed_span(1, 8, 12) == (3, 12)  # a record per example: no blocks
