"""Sonorization: the struck-object scenes, the in-step cochleagram, the robust loss,
the evaluator's onsets and probes, training, and avjax-sonorize."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses
from avjax.evaluators import sonorization as evaluator
from avjax.models import sonorization
from data_pipelines import hits, synthetic, texture

HITS = synthetic.SplitSpec("hits", 12, seed=57, seconds=2.0, hits=True)
VIDEO = synthetic.VideoSpec()


def _at_8k(wave: np.ndarray) -> np.ndarray:
  import librosa
  return librosa.resample(wave, orig_sr=VIDEO.sample_rate, target_sr=8000)


def test_scenes_are_deterministic_and_labelled_by_material_and_action():
  a = synthetic.make_scene(HITS, 3, VIDEO, with_speakers=True)
  b = synthetic.make_scene(HITS, 3, VIDEO, with_speakers=True)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  material, action = hits.labels(a[2])
  assert synthetic.class_name(HITS, a[2]) == f"{material};{action}"
  (label, box, intervals), = a[4]
  assert label == material and 0 <= box[0] < box[2] <= 1
  assert intervals and all(0 <= s < e <= 2.0 for s, e in intervals)
  assert all(s2 - s1 >= hits.MIN_GAP for (s1, _), (s2, _) in zip(intervals, intervals[1:]))


def test_modes_ring_at_the_materials_frequencies_and_metal_longest():
  rng = np.random.default_rng(0)
  rate = 8000
  decay = {}
  for material, ((lo, hi), _, _) in hits.MODES.items():
    ir = hits.impulse_response(material, hits.REFERENCE_WIDTH, rate, rng)
    spectrum = np.abs(np.fft.rfft(ir))
    peak = np.fft.rfftfreq(len(ir), 1 / rate)[np.argmax(spectrum)]
    assert lo * 0.9 <= peak <= hi * 1.1 * 3, (material, peak)  # a low partial dominates
    energy = np.cumsum(ir[::-1] ** 2)[::-1]
    decay[material] = np.argmax(energy < 1e-3 * energy[0]) / rate  # -30 dB time
  assert max(decay, key=decay.get) == "metal" and min(decay, key=decay.get) == "stone"


def test_the_in_step_cochleagram_matches_the_scipy_one():
  """models.sonorization.cochleagram (jnp, at the audio's rate, FFT resampling)
  against texture.cochleagram (scipy, 20 kHz, polyphase resampling): the same
  envelopes away from the clip's ends, where the two resamplers differ."""
  wave = _at_8k(synthetic.make_scene(HITS, 1, VIDEO)[1])[:8000]
  ref = texture.cochleagram(wave, 8000)
  ours = np.asarray(sonorization.cochleagram(jnp.asarray(wave)[None], 8000, len(ref)))[0]
  assert ours.shape == ref.shape == (90, 42)
  inner = slice(9, -9)
  err = np.abs(ours[inner] - ref[inner])
  assert err.mean() < 0.02 * ref[inner].mean() and err.max() < 0.1 * ref.max()


def test_spacetime_images_hold_the_previous_current_and_next_grey_frames():
  stacks = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 3, 3, 3)), jnp.float32)
  st = sonorization.spacetime_images(stacks)
  grey = stacks.mean(-1)
  np.testing.assert_allclose(st[:, 2, ..., 0], grey[:, 1], atol=1e-6)
  np.testing.assert_allclose(st[:, 2, ..., 1], grey[:, 2], atol=1e-6)
  np.testing.assert_allclose(st[:, 2, ..., 2], grey[:, 3], atol=1e-6)
  np.testing.assert_allclose(st[:, 0, ..., 0], grey[:, 0], atol=1e-6)  # the ends repeat
  np.testing.assert_allclose(st[:, 3, ..., 2], grey[:, 3], atol=1e-6)


def test_the_robust_loss_against_hand_values():
  pred = jnp.array([[[0.0, 0.0], [1.0, 1.0]]])
  target = jnp.array([[[0.0, 0.0], [1.0, 0.0]]])
  eps = losses.SONORIZATION_EPS
  got = losses.sonorization_robust(outputs={"sonorization_predictions": pred,
                                            "sonorization_targets": target}, batch={})
  np.testing.assert_allclose(got, (np.log(eps) + np.log(eps + 1.0)) / 2, rtol=1e-6)


def test_onsets_of_the_real_sound_are_the_scenes_own():
  """The evaluator's reference onsets, detected in the real sound's cochleagram,
  fall within 30 ms of the onsets the scene was made with, and few are spurious
  (a stroke's noise can flicker enough to count)."""
  errors, spurious, found_total = [], 0, 0
  for i in range(12):
    _, wave, _, _, speakers = synthetic.make_scene(HITS, i, VIDEO, with_speakers=True)
    env = np.asarray(sonorization.cochleagram(jnp.asarray(_at_8k(wave))[None], 8000, 150))[0]
    found = evaluator.onsets(env, 75.0, threshold=0.5, min_gap=0.2)
    truth = np.array([s for s, _ in speakers[0][2]])
    errors += list(evaluator.onset_errors(truth, found, missing=2.0))
    spurious += int(np.sum(evaluator.onset_errors(found, truth, missing=2.0) > 0.1))
    found_total += len(found)
  assert max(errors) < 0.03 and spurious <= 0.15 * found_total, (spurious, found_total)


def test_onset_errors_pooled_features_and_label_groups_by_hand():
  np.testing.assert_allclose(evaluator.onset_errors(np.array([0.5, 1.0]), np.array([0.45]), 2.0),
                             [0.05, 0.55])
  np.testing.assert_allclose(evaluator.onset_errors(np.array([0.5]), np.zeros(0), 2.0), [2.0])
  # One true onset, found, and one spurious prediction a second away from it.
  got = evaluator.onset_scores([(np.array([0.5]), np.array([0.52, 1.5]), 2.0)], tolerance=0.1)
  np.testing.assert_allclose([got["sonorization_onset_error_median"], got["sonorization_onset_recall"],
                              got["sonorization_onset_precision"]], [0.02, 1.0, 0.5])
  got = evaluator.onset_scores([(np.array([0.5, 1.0]), np.zeros(0), 2.0)], tolerance=0.1)
  assert got["sonorization_onset_error_median"] == 2.0 and got["sonorization_onset_recall"] == 0
  f = np.array([[1.0, 0.0], [3.0, 2.0]])
  np.testing.assert_allclose(evaluator.pooled_features(f), [2, 1, 1, 1, 3, 2])
  groups = evaluator.parse_groups("material=wood,metal,gold;action=hit", ["hit", "metal", "wood"])
  assert groups == {"material": [2, 1], "action": [0]}
  with pytest.raises(ValueError, match="label_groups: 'material' is not"):
    evaluator.parse_groups("material", ["wood"])


def _random_batch(frames: int, crop: int, samples: int) -> dict:
  rng = np.random.default_rng(0)
  return {"frame_stack": rng.integers(0, 255, (2, frames, crop, crop, 3), dtype=np.uint8),
          "waveform": rng.normal(0, 0.1, (2, samples)).astype(np.float32),
          "label": np.ones(2, np.int32)}


def test_speech_variant_regresses_log_mel_and_griffin_lim_inverts_it():
  """configs/sonorization.py:target=log_mel (speech from silent video) trains on
  log-mel targets, and Griffin-Lim turns a log-mel back into a waveform whose
  log-mel correlates with it."""
  from avjax import sonorize
  from configs import sonorization as sonorization_config
  from tests.conftest import one_update
  c = sonorization_config.get_config("tiny,target=log_mel")
  c.data.update(frame_stack=5, crop=32)
  c.data.spectrogram.seconds = 0.2
  c.model.update(vision_widths=(4, 8), spacetime_widths=(4, 8), lstm_size=8)
  _, _, out = one_update(c, _random_batch(5, 32, 1600))
  assert np.isfinite(float(out["loss"]))
  from avjax import config_check
  with pytest.raises(config_check.ConfigError, match="config.model.target: 'wav' is not one of"):
    config_check.check(sonorization_config.get_config("tiny,target=wav"))
  wave = _at_8k(synthetic.make_scene(HITS, 2, VIDEO)[1])[:8000]
  mel = np.asarray(sonorization.log_mel(jnp.asarray(wave)[None], 8000, 100, 64))[0]
  back = sonorize.griffin_lim(mel, 8000, sonorization.mel_framing(8000, 100))
  again = np.asarray(sonorization.log_mel(jnp.asarray(back[:8000])[None], 8000, 100, 64))[0]
  assert abs(len(back) - 8000) <= 80
  assert np.corrcoef(mel[5:-5].ravel(), again[5:-5].ravel())[0, 1] > 0.9


@pytest.fixture(scope="module")
def hits_data(tmp_path_factory):
  from tests.conftest import generate_and_prepare
  root = tmp_path_factory.mktemp("hits")
  generate_and_prepare(HITS, root / "videos", root / "data" / "hits")
  return root


def test_sonorization_trains_evaluates_and_sonorizes_a_video(hits_data, tmp_path):
  import soundfile
  from avjax import sonorize, train
  from avjax.evaluators import runner
  from tests.conftest import tiny_config
  config = tiny_config("sonorization", hits_data / "data", total_steps=3, log_every=1)
  config.data.update(train_split="hits", eval_split="hits", frame_stack=5)
  config.data.spectrogram.seconds = 0.2
  config.model.update(spacetime_widths=(4, 8), vision_widths=(4, 8), lstm_size=8)
  config.evals.sonorization.update(batch_size=8, num_folds=2)
  workdir = str(tmp_path / "work")
  train.train_and_evaluate(config, workdir)
  m = runner.evaluate(config, workdir, evals=["sonorization"], pictures=False)["metrics"]
  assert m["sonorization_clips"] == 12
  for key in ("material", "action"):
    assert 0 <= m[f"sonorization_{key}_accuracy"] <= 1
    assert 0 <= m[f"sonorization_{key}_accuracy_real"] <= 1
  assert m["sonorization_onset_error_median"] >= 0 and m["sonorization_feature_error"] > 0

  video = sorted((hits_data / "videos").glob("*.mp4"))[0]
  son = sonorize.Sonorizer(workdir, checkpoint="latest", batch_size=4)
  out = tmp_path / "out.wav"
  for inversion in sonorize.INVERSIONS:
    r = sonorize.sonorize_file(str(video), son, str(out), inversion=inversion, examples=20)
    audio, rate = soundfile.read(str(out))
    # 2 s of video in windows of 0.2 s: ten windows' worth of sound.
    assert r["windows"] == 10 and rate == 8000 and np.isfinite(audio).all()
    assert abs(len(audio) - 2.0 * rate) <= 0.01 * rate, (inversion, len(audio))
  # 33 frames in windows of 5: the last window padded, its sound cut where the video ends.
  frames, wave, *_ = synthetic.make_scene(HITS, 0, VIDEO)
  short = tmp_path / "short.mp4"
  synthetic.write_mp4(str(short), frames[:33], wave[:int(33 / VIDEO.fps * VIDEO.sample_rate)],
                      VIDEO)
  r = sonorize.sonorize_file(str(short), son, str(out), inversion="parametric")
  assert r["windows"] == 7 and len(soundfile.read(str(out))[0]) == round(33 / 25 * 8000)
  bad = tmp_path / "notes.mp4"
  bad.write_text("not a video")
  with pytest.raises(ValueError, match="notes.mp4"):
    sonorize.sonorize_file(str(bad), son, str(out), inversion="parametric")
  with pytest.raises(FileNotFoundError, match="missing.mp4: no such file"):
    sonorize.sonorize_file(str(tmp_path / "missing.mp4"), son, str(out), inversion="parametric")


@pytest.mark.slow
def test_one_paper_scale_update_step():
  """The paper-scale config's streams and LSTM over 60 frames (on 32 px crops) and
  2 s of 22,050 Hz sound: one update is finite and moves the weights."""
  from configs import sonorization as sonorization_config
  from tests.conftest import one_update
  c = sonorization_config.get_config()
  c.data.crop = 32
  state, new, out = one_update(c, _random_batch(60, 32, 44100))
  assert np.isfinite(float(out["loss"]))
  before = state.params["lstm"]["hi"]["kernel"]
  after = new.params["lstm"]["hi"]["kernel"]
  assert float(jnp.abs(after - before).max()) > 0
