import librosa
import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.spectrogram import SpectrogramSpec, log_spectrogram

PAPER = SpectrogramSpec()
TINY = SpectrogramSpec(sample_rate=16000, win_length=160, hop_length=80, n_fft=256)


def librosa_reference(y: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
  pad = (spec.n_fft - spec.win_length) // 2
  mag = np.abs(librosa.stft(np.pad(y.astype(np.float64), pad), n_fft=spec.n_fft,
                            hop_length=spec.hop_length, win_length=spec.win_length,
                            window="hann", center=False))
  return np.log(mag + spec.log_offset)


def signals(spec):
  rng = np.random.default_rng(0)
  t = np.arange(spec.num_samples) / spec.sample_rate
  yield "tone+noise", 0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(len(t))
  yield "pure tone", np.sin(2 * np.pi * 1000 * t)          # deep leakage floor: hard in float32
  yield "chirp", librosa.chirp(fmin=100, fmax=spec.sample_rate / 3, sr=spec.sample_rate,
                               duration=spec.seconds)
  yield "silence", np.zeros(len(t))


@pytest.mark.parametrize("spec", [PAPER, TINY], ids=["paper", "tiny"])
def test_paper_shape(spec):
  expected = (257, 199) if spec is PAPER else (129, 199)
  assert spec.shape == expected
  y = np.zeros(spec.num_samples, np.float32)
  assert log_spectrogram(tf.constant(y), spec).shape == expected


@pytest.mark.parametrize("spec", [PAPER, TINY], ids=["paper", "tiny"])
def test_matches_librosa_standalone(spec):
  for name, y in signals(spec):
    y = y.astype(np.float32)
    out = log_spectrogram(tf.constant(y), spec).numpy()
    err = np.abs(out - librosa_reference(y, spec)).max()
    assert err <= 1e-4, f"{name}: max abs error {err}"


def test_matches_librosa_inside_tf_data():
  ys = np.stack([y.astype(np.float32) for _, y in signals(PAPER)])
  ds = tf.data.Dataset.from_tensor_slices(ys).map(lambda y: log_spectrogram(y, PAPER),
                                                  num_parallel_calls=2).batch(2)
  outs = np.concatenate(list(ds.as_numpy_iterator()))
  for y, out in zip(ys, outs):
    assert np.abs(out - librosa_reference(y, PAPER)).max() <= 1e-4


def test_batched_equals_single():
  ys = np.stack([y.astype(np.float32) for _, y in signals(TINY)])
  batched = log_spectrogram(tf.constant(ys), TINY).numpy()
  for y, out in zip(ys, batched):
    np.testing.assert_array_equal(log_spectrogram(tf.constant(y), TINY).numpy(), out)


def test_rejects_window_longer_than_fft():
  with pytest.raises(ValueError, match="win_length"):
    SpectrogramSpec(win_length=600, n_fft=512)


def test_stored_magnitude_windows_match_librosa_inside_tf_data():
  """prepare's float32 whole-clip |STFT|, sliced and gained by the reader, is the
  log-spectrogram of the gained window to 1e-4, as computing it would be; the
  training step's log on the device gives the host's to 1e-6."""
  import jax
  from avjax import step_inputs
  from data_pipelines import clip_ops, reader_spec
  from data_pipelines.spectrogram import stft_magnitude
  spec = reader_spec.ReaderSpec(spectrogram=PAPER, stored_spectrogram=True)
  starts, gains = [0, 240 * 40, 240 * 200], [1.0, 0.71, 1.41]
  for name, y in signals(SpectrogramSpec(seconds=2.0)):
    y = y.astype(np.float32)
    stored = stft_magnitude(tf.constant(y), PAPER).numpy().astype("<f4").tobytes()
    ds = tf.data.Dataset.from_tensor_slices((starts, gains)).map(
        lambda s, g: {"audio": clip_ops.magnitude_window(tf.constant(stored), s, PAPER), "gain": g})
    batch = next(iter(ds.batch(3)))
    host = clip_ops.add_spectrograms(batch, spec)["spectrogram"].numpy()
    # Training: the reader ships |STFT| and gains, and the jitted step takes the log.
    shipped = clip_ops.add_spectrograms(batch, spec, log_on_device=True)
    device = np.asarray(jax.jit(step_inputs.log_spectrogram, static_argnums=2)(
        shipped["stft_magnitude"].numpy(), shipped["aug_gain"].numpy(), PAPER))
    np.testing.assert_allclose(device, host, atol=1e-6, rtol=0)
    for s, g, out in zip(starts, gains, host[..., 0]):
      ref = librosa_reference(y[s:s + PAPER.num_samples].astype(np.float64) * g, PAPER)
      err = np.abs(out - ref).max()
      assert err <= 1e-4, f"{name} at {s}: max abs error {err}"


def test_decoded_magnitude_windows_equal_the_stored_bytes_windows():
  """A record decoded whole (several pairs per record) gives each window the same
  values as slicing its bytes, in rows padded to 64 bytes, and the padding never
  reaches the spectrogram the model sees."""
  from data_pipelines import clip_ops, reader_spec
  from data_pipelines.spectrogram import stft_magnitude
  spec = reader_spec.ReaderSpec(spectrogram=PAPER, stored_spectrogram=True)
  y = np.random.default_rng(0).standard_normal(2 * PAPER.sample_rate).astype(np.float32)
  stored = tf.constant(stft_magnitude(tf.constant(y), PAPER).numpy().astype("<f4").tobytes())
  decoded = clip_ops.decoded_magnitude(stored, PAPER)
  assert decoded.shape[1] * 4 % 64 == 0 and decoded.shape[1] >= PAPER.num_bins
  np.testing.assert_array_equal(decoded[:, PAPER.num_bins:].numpy(), 0)
  starts = tf.constant([0, 240 * 40, 240 * 200])
  from_bytes = tf.stack([clip_ops.magnitude_window(stored, s, PAPER) for s in starts])
  from_rows = tf.stack([clip_ops.magnitude_window(decoded, s, PAPER) for s in starts])
  np.testing.assert_array_equal(from_rows[..., :PAPER.num_bins].numpy(), from_bytes.numpy())
  gains = tf.constant([1.0, 0.71, 1.41])
  a, b = (clip_ops.add_spectrograms({"audio": x, "gain": gains}, spec)
          for x in (from_bytes, from_rows))
  np.testing.assert_array_equal(a["spectrogram"].numpy(), b["spectrogram"].numpy())
  # Training ships the padded rows, and the step's log drops the padding.
  from avjax import step_inputs
  a, b = (clip_ops.add_spectrograms({"audio": x, "gain": gains}, spec, log_on_device=True)
          for x in (from_bytes, from_rows))
  assert b["stft_magnitude"].shape[-1] == decoded.shape[1]
  np.testing.assert_array_equal(
      *(step_inputs.log_spectrogram(x["stft_magnitude"].numpy(), x["aug_gain"].numpy(), PAPER)
        for x in (a, b)))


def test_numpy_log_spectrogram_equals_tensorflow():
  from data_pipelines.spectrogram import log_spectrogram_numpy
  for spec in (PAPER, TINY):
    for name, y in signals(spec):
      y = np.stack([y, 0.5 * y]).astype(np.float32)
      np.testing.assert_allclose(log_spectrogram_numpy(y, spec),
                                 log_spectrogram(tf.constant(y), spec).numpy(), atol=1e-5, rtol=0,
                                 err_msg=name)
