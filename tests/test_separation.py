"""Audio-visual source separation: the STFT pair against librosa, the
mix-and-separate batch, the loss and the metrics against hand values and mir_eval,
and the model trained and evaluated end to end on the fixture's clips."""
import jax
import jax.numpy as jnp
import librosa
import mir_eval
import numpy as np
import pytest

from avjax import losses, metrics, models
from avjax.models import separation

N_FFT, HOP = 254, 64


def test_stft_and_istft_equal_librosa_and_invert_exactly():
  x = np.random.default_rng(0).normal(size=(3, 2000)).astype(np.float32)
  spec = np.asarray(separation.stft(jnp.asarray(x), N_FFT, HOP))
  reference = librosa.stft(x, n_fft=N_FFT, hop_length=HOP).transpose(0, 2, 1)
  assert spec.shape == reference.shape == (3, 1 + 2000 // HOP, N_FFT // 2 + 1)
  np.testing.assert_allclose(spec, reference, atol=2e-4)
  back = np.asarray(separation.istft(jnp.asarray(spec), N_FFT, HOP, 2000))
  np.testing.assert_allclose(back, x, atol=1e-5)
  masked = reference * 0.5 * (1 + np.cos(np.arange(reference.shape[-1]) / 9.0))
  np.testing.assert_allclose(
      np.asarray(separation.istft(jnp.asarray(masked), N_FFT, HOP, 2000)),
      librosa.istft(masked.transpose(0, 2, 1), n_fft=N_FFT, hop_length=HOP, length=2000),
      atol=1e-5)


@pytest.mark.parametrize("sources", [2, 3])
def test_mixtures_are_the_sum_of_their_stems_and_every_clip_is_a_target_once(sources):
  w = np.random.default_rng(1).normal(size=(5, 100)).astype(np.float32)
  mixtures, stems = separation.mix_batch(jnp.asarray(w), sources)
  assert stems.shape == (5, sources, 100)
  np.testing.assert_allclose(mixtures, np.asarray(stems).sum(1), atol=1e-6)
  np.testing.assert_allclose(stems[:, 0], w / sources, atol=1e-7)  # each clip is stem 0 once
  for k in range(1, sources):  # ... and its partners are other clips of the batch
    np.testing.assert_allclose(stems[:, k], np.roll(w, -k, axis=0) / sources, atol=1e-7)
  with pytest.raises(ValueError, match="batch has 1"):
    separation.mix_batch(jnp.asarray(w[:1]), sources)


def test_binary_targets_weights_and_weighted_bce_against_hand_values():
  mags = jnp.array([[[[1.0, 3.0]], [[2.0, 3.0]]]])  # [B=1, S=2, T=1, F=2]
  np.testing.assert_array_equal(separation.binary_masks(mags), [[[0.0, 1.0]]])  # ties: stem 0
  np.testing.assert_allclose(separation.loss_weights(jnp.array([0.0, np.e - 1, 1e9])),
                             [1e-3, 1.0, 10.0], rtol=1e-6)
  logits = jnp.array([[[0.0, 2.0]], [[-1.0, 1.0]]])  # [B=2, T=1, F=2]
  targets = jnp.array([[[1.0, 0.0]], [[0.0, 0.0]]])
  weights = jnp.array([[[1.0, 2.0]], [[0.5, 0.5]]])
  out = {"separation_logits": logits, "separation_targets": targets,
         "separation_weights": weights}
  bce = lambda z, y: np.log1p(np.exp(z)) - y * z
  want = [(bce(0, 1) + 2 * bce(2, 0)) / 2, (0.5 * bce(-1, 0) + 0.5 * bce(1, 0)) / 2]
  np.testing.assert_allclose(losses.separation_bce(outputs=out, batch={}, reduction=False),
                             want, rtol=1e-6)
  np.testing.assert_allclose(
      losses.separation_bce(outputs=out, batch={"mask": jnp.array([1.0, 0.0])}), want[0],
      rtol=1e-6)


def test_si_sdr_against_hand_values():
  rng = np.random.default_rng(2)
  ref = rng.normal(size=(1, 4000))
  noise = rng.normal(size=(1, 4000))
  noise -= (noise @ ref.T) / (ref @ ref.T) * ref  # orthogonal to the reference
  noise *= np.linalg.norm(ref) / np.linalg.norm(noise)
  np.testing.assert_allclose(metrics.si_sdr(ref + noise, ref), [0.0], atol=1e-6)
  np.testing.assert_allclose(metrics.si_sdr(3 * ref + 0.1 * noise, ref), [20 * np.log10(30)],
                             atol=1e-6)  # the estimate's scale does not count
  np.testing.assert_allclose(metrics.si_sdr(-ref + noise, ref), [0.0], atol=1e-6)


def test_bss_eval_is_mir_evals_in_the_given_order():
  """Two independent noise sources, each estimate holding a known share of the
  other: SIR is the share's level, and the figures are mir_eval's own, unpermuted."""
  rng = np.random.default_rng(3)
  stems = rng.normal(size=(2, 8000))
  estimates = np.stack([stems[0] + 0.1 * stems[1], stems[1] + 0.3 * stems[0]])
  sdr, sir, sar = metrics.bss_eval(stems, estimates)
  np.testing.assert_allclose(sir, [20.0, -20 * np.log10(0.3)], atol=0.5)  # 512-tap filters fit some noise
  want = mir_eval.separation.bss_eval_sources(stems, estimates, compute_permutation=False)
  for got, ref in zip((sdr, sir, sar), want[:3]):
    np.testing.assert_allclose(got, ref, rtol=1e-12)
  swapped = metrics.bss_eval(stems, estimates[::-1])  # no permutation: the swap scores badly
  assert swapped[1].max() < 0


@pytest.mark.parametrize("condition", ["synthesiser", "bottleneck"])
def test_inference_gives_each_location_a_mask_and_the_separated_sound(condition):
  """Inference: the mask of each location's frame vector, and of the max-pooled
  one (on a one-location map they agree), and the separated sound: the mask
  times the mixture's STFT, inverted."""
  model = separation.SeparationNet(vision_widths=(4, 8), unet_widths=(4, 8), channels=3,
                                   n_fft=30, hop=8, condition=condition)
  frames = jax.random.normal(jax.random.PRNGKey(2), (2, 16, 16, 3))
  mixture = jax.random.normal(jax.random.PRNGKey(0), (2, 200))
  variables = model.init(jax.random.PRNGKey(1), frames, mixture)
  out = model.apply(variables, frames, mixture)
  assert out["separation_location_logits"].shape == (2, 4, 4, 26, 16)
  one = model.apply(variables, frames[:, :4, :4], mixture)  # a 1 x 1 map
  np.testing.assert_allclose(one["separation_location_logits"][:, 0, 0],
                             one["separation_logits"], atol=1e-5)
  spec = separation.stft(mixture, 30, 8)
  np.testing.assert_allclose(
      out["separation_waveform"],
      separation.istft(jax.nn.sigmoid(out["separation_logits"]) * spec, 30, 8, 200), atol=1e-6)
  trained, _ = model.apply(variables, frames, mixture, train=True, mutable=["batch_stats"])
  assert set(trained) == {"frame_features", "separation_logits", "separation_targets",
                          "separation_weights"}


def test_separation_trains_scores_held_out_mixtures_and_separates_a_video(
    data_dir, videos_dir, tmp_path):
  import soundfile
  from avjax import separate, train
  from avjax.evaluators import runner
  from tests.conftest import tiny_config
  workdir = str(tmp_path / "work")
  config = tiny_config("separation", data_dir, total_steps=3, log_every=1)
  config.model.update(unet_widths=(4, 8, 8), channels=4)
  config.evals.separation.update(batch_size=8, bss_eval_mixtures=2)
  train.train_and_evaluate(config, workdir)
  record = runner.evaluate(config, workdir, evals=["separation"], pictures=False)
  m = record["metrics"]
  assert m["separation_clips"] == 10 and m["separation_bss_eval_mixtures"] == 2
  np.testing.assert_allclose(m["separation_si_sdri"],
                             m["separation_si_sdr"] - m["separation_mixture_si_sdr"], atol=1e-5)
  assert all(np.isfinite(v) for v in m.values())

  # Warm start (config.init_from): the named submodules come from the checkpoint.
  import ml_collections
  from avjax import checkpoint as checkpoint_lib, predict
  fns = predict.model_fns(models.build(config.model), config.data)
  fresh = jax.device_get(predict.jit_once(fns.init)(jax.random.PRNGKey(7)))
  saved, _ = checkpoint_lib.load_variables(workdir, config, fns.init, which="latest")
  init_from = ml_collections.ConfigDict(dict(workdir=workdir, checkpoint="latest",
                                             modules="vision"))
  warm, step = checkpoint_lib.warm_start(fresh, init_from)
  assert step == 3
  for a, b in zip(jax.tree.leaves(warm["params"]["vision"]),
                  jax.tree.leaves(saved["params"]["vision"])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(warm["params"]["unet"]), jax.tree.leaves(fresh["params"]["unet"])):
    np.testing.assert_array_equal(a, b)
  init_from.modules = "*"  # every submodule: the whole model
  whole, _ = checkpoint_lib.warm_start(fresh, init_from)
  for a, b in zip(jax.tree.leaves(whole["params"]), jax.tree.leaves(saved["params"])):
    np.testing.assert_array_equal(a, b)
  init_from.modules = "unet:vision"
  with pytest.raises(ValueError, match="do not have the shapes"):
    checkpoint_lib.warm_start(fresh, init_from)
  init_from.modules = "audio"
  with pytest.raises(ValueError, match="has no submodule 'audio'"):
    checkpoint_lib.warm_start(fresh, init_from)

  # avjax-separate: a wav per object, as long as the video's sound (to a hop).
  video = sorted((videos_dir / "validation").glob("*.mp4"))[0]
  sep = separate.Separator(workdir, checkpoint="latest", batch_size=4)
  rows = separate.separate_file(str(video), sep, str(tmp_path / "out"), max_objects=2,
                                min_distance=1, min_fraction=0.0)
  assert 1 <= len(rows) <= 2
  for r in rows:
    audio, rate = soundfile.read(r["wav"])
    assert rate == 8000 and abs(len(audio) - 1.4 * rate) <= sep.hop and np.isfinite(audio).all()
  assert (tmp_path / "out" / f"{video.stem}_objects.csv").exists()
  bad = tmp_path / "notes.mp4"
  bad.write_text("not a video")
  with pytest.raises(ValueError, match="notes.mp4"):
    separate.separate_file(str(bad), sep, str(tmp_path / "out"), max_objects=2, min_distance=1,
                           min_fraction=0.0)
  with pytest.raises(FileNotFoundError, match="missing.mp4: no such file"):
    separate.separate_file(str(tmp_path / "missing.mp4"), sep, str(tmp_path / "out"),
                           max_objects=2, min_distance=1, min_fraction=0.0)


@pytest.mark.slow
def test_one_paper_scale_update_step():
  """The paper's 7-level U-Net on its 512 x 256 bins (65,535 samples at
  11,025 Hz) with the paper-width frame tower: one update on two clips, on 32 px
  frames, is finite and moves the weights."""
  from configs import separation as separation_config
  from tests.conftest import one_update
  c = separation_config.get_config()
  c.data.crop = 32
  rng = np.random.default_rng(0)
  batch = {"frames": rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8),
           "waveform": rng.normal(0, 0.1, (2, 65535)).astype(np.float32),
           "label": np.ones(2, np.int32)}
  state, new, out = one_update(c, batch)
  assert np.isfinite(float(out["loss"])) and float(out["loss"]) > 0
  before, after = state.params["unet"]["down0"]["kernel"], new.params["unet"]["down0"]["kernel"]
  assert float(jnp.abs(after - before).max()) > 0


def test_overlap_add_of_hann_windows_gives_back_the_signal():
  """Windows every half window (window i from i * hop - S // 2, zero-padded):
  summed with their Hann weights and normalised, the signal itself, emitted as
  soon as no later window touches it."""
  from avjax.separate import OverlapAdd
  size, hop = 16, 8
  x = np.random.default_rng(4).normal(size=50)
  padded = np.concatenate([np.zeros(size), x, np.zeros(size)])
  ola, out = OverlapAdd(size, hop), []
  n_windows = 1 + len(x) // hop
  for i in range(n_windows):
    start = i * hop - size // 2 + size  # in `padded`
    out.append(ola.add(padded[start:start + size]))
  out.append(ola.finish(len(x)))
  np.testing.assert_allclose(np.concatenate(out), x, atol=1e-6)


def test_the_separation_evaluator_refuses_a_model_that_separates_nothing(data_dir, tmp_path):
  from avjax.evaluators import runner
  from tests.conftest import tiny_config
  config = tiny_config("soundnet", data_dir)  # takes the waveform, separates nothing
  config.evals.separation.batch_size = 8
  with pytest.raises(ValueError, match="SoundNet separates no sound"):
    runner.evaluate(config, str(tmp_path), evals=["separation"], random_init=True, pictures=False)


def test_duet_scenes_sound_as_their_two_stems_and_write_them(tmp_path):
  """A duets scene's waveform is its two objects' stems plus the quiet background;
  the generator writes each stem beside the videos, both objects in speakers.csv."""
  import dataclasses
  import soundfile
  from data_pipelines import synthetic
  split = dataclasses.replace({s.name: s for s in synthetic.DEFAULT_SPLITS}["duets_test"],
                              num_clips=2)
  video = synthetic.VideoSpec()
  _, wave, _, _, speakers, stems = synthetic.make_scene(split, 1, video, with_speakers=True,
                                                        with_stems=True)
  assert len(stems) == len(speakers) == 2 and speakers[0][0] != speakers[1][0]
  residual = wave - stems[0] - stems[1]  # the background noise: 10 dB or more below either
  assert np.std(residual) < 10 ** (-10 / 20) * min(np.std(stems[0]), np.std(stems[1]))
  synthetic.generate_split(split, str(tmp_path / "duets"), workers=1)
  got, rate = soundfile.read(synthetic.stem_path(str(tmp_path / "duets_stems"),
                                                 "duets_test_00001.mp4", 1))
  assert rate == synthetic.STEM_RATE
  np.testing.assert_allclose(got, librosa.resample(stems[1], orig_sr=video.sample_rate,
                                                   target_sr=rate, res_type="polyphase"),
                             atol=1e-4)


def test_stem_lag_and_the_box_condition_by_hand():
  from avjax.evaluators import separation as evaluator
  x = np.random.default_rng(0).normal(size=2000).astype(np.float32)
  # The mixture window is the stem from sample 500 delayed by 37 samples (a codec's priming).
  window = evaluator.window_of(x, 500 - 37, 800)
  assert evaluator.stem_lag(x, window, 500, 60) == -37
  np.testing.assert_array_equal(evaluator.window_of(x, -2, 4), [0, 0, x[0], x[1]])
  frame = np.zeros((4, 4, 3), np.uint8)
  frame[:2, :2] = 200
  out = evaluator.only_in_box(frame, np.array([0.0, 0.0, 0.5, 0.5]))
  np.testing.assert_array_equal(out[:2, :2], 200)
  np.testing.assert_array_equal(out[2:, 2:], 50)  # the frame's mean colour


def test_the_evaluator_separates_each_object_of_a_duet_against_its_stem(tmp_path):
  """mixtures="scenes": each of a clip's two objects, by its box, against its own
  stem. The mixture's own SI-SDR against each stem is near 0 dB (two sources at
  comparable levels), which it is only when the stems line up with the decoded
  sound (an unaligned stem scores about -25 dB)."""
  import dataclasses
  import shutil
  from avjax.evaluators import runner
  from data_pipelines import ingest, synthetic
  from tests.conftest import FRAME_SIZE, SAMPLE_RATE, TINY_SPECTROGRAM, tiny_config
  split = dataclasses.replace({s.name: s for s in synthetic.DEFAULT_SPLITS}["duets_test"],
                              num_clips=4)
  synthetic.generate_split(split, str(tmp_path / "duets"), workers=1)
  out = tmp_path / "data" / "duets"
  ingest.prepare(str(tmp_path / "duets"), str(out), labels_csv=str(tmp_path / "duets" / "labels.csv"),
                 settings=ingest.PrepareSettings(sample_rate=SAMPLE_RATE, frame_size=FRAME_SIZE,
                                                 spectrogram=TINY_SPECTROGRAM),
                 files_per_shard=4, workers=1, quiet=True)
  shutil.copyfile(tmp_path / "duets" / "speakers.csv", out / "speakers.csv")
  shutil.copytree(tmp_path / "duets_stems", out / synthetic.STEMS)
  config = tiny_config("separation", tmp_path / "data", train_split="duets")
  config.model.update(unet_widths=(4, 8, 8), channels=4)
  config.evals.separation.update(batch_size=8, mixtures="scenes", split="duets",
                                 bss_eval_mixtures=2)
  m = runner.evaluate(config, str(tmp_path / "work"), evals=["separation"], random_init=True,
                      pictures=False)["metrics"]
  assert m["separation_clips"] == 8 and m["separation_bss_eval_mixtures"] == 2
  assert -12 < m["separation_mixture_si_sdr"] < 12
  config.evals.separation.stems_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere/duets_test_0000"):
    runner.evaluate(config, str(tmp_path / "work"), evals=["separation"], random_init=True,
                    pictures=False)
