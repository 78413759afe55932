"""Sound-texture statistics against direct computations and signals with known answers."""
import numpy as np

from data_pipelines import texture

SPEC = texture.TextureSpec()
RATE = 16000


def _centre_hz(spec=SPEC):
  cut = texture.erb_to_freq(np.linspace(texture.freq_to_erb(spec.low_hz),
                                        texture.freq_to_erb(spec.high_hz), spec.num_bands + 2))
  return np.concatenate([[0.0], texture.erb_to_freq(
      0.5 * (texture.freq_to_erb(cut[:-2]) + texture.freq_to_erb(cut[2:]))), [spec.rate / 2]])


def test_the_filter_bank_passes_all_power_once():
  filts = texture.erb_filters(20000, SPEC.rate, SPEC)
  freqs = np.fft.rfftfreq(20000, 1 / SPEC.rate)
  total = np.sum(filts ** 2, axis=1)
  inside = (freqs > 25) & (freqs < 9900)
  np.testing.assert_allclose(total[inside], 1.0, atol=1e-6)
  assert filts.shape[1] == SPEC.num_channels


def test_statistics_equal_numpy_on_the_envelopes():
  r = np.random.default_rng(0)
  x = r.standard_normal(RATE * 2) * (1 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(RATE * 2) / RATE))
  env = texture.envelopes(x, RATE)
  stats = texture.texture_statistics(x, RATE)
  np.testing.assert_allclose(stats["mean"], env.mean(0), rtol=1e-10)
  # (rtol: the statistics add float32's eps to mean^2, as the authors' code does)
  np.testing.assert_allclose(stats["std_over_mean"], env.std(0) / env.mean(0), rtol=1e-5)
  for j, d in enumerate(texture.CORRELATION_OFFSETS):
    for i in (0, 7, SPEC.num_channels - 1 - d):
      np.testing.assert_allclose(stats["correlation"][i, j],
                                 np.corrcoef(env[:, i], env[:, i + d])[0, 1], atol=1e-10)
    assert np.all(stats["correlation"][SPEC.num_channels - d:, j] == 0)
  vec = texture.feature_vector(stats)
  assert vec.shape == (SPEC.num_channels * (2 + 4 + SPEC.num_mod_bands),)


def test_an_amplitude_modulated_tone_shows_its_carrier_and_its_rate():
  t = np.arange(RATE * 4) / RATE
  x = 0.5 * (1 + np.sin(2 * np.pi * 7.0 * t)) * np.sin(2 * np.pi * 1000 * t)
  stats = texture.texture_statistics(x, RATE)
  channel = int(np.argmax(stats["mean"]))
  assert abs(_centre_hz()[channel] - 1000) / 1000 < 0.15, _centre_hz()[channel]
  mod = stats["modulation"][channel]
  centres = 2.0 ** np.linspace(np.log2(0.5), np.log2(200), 10)
  assert int(np.argmax(mod)) == int(np.argmin(np.abs(np.log(centres / 7.0)))), mod
  assert mod.max() > 10 * mod[-1]
  # An unmodulated tone: a flat envelope, no modulation power to speak of.
  steady = texture.texture_statistics(0.5 * np.sin(2 * np.pi * 1000 * t), RATE)
  assert steady["std_over_mean"][channel] < 0.05 < stats["std_over_mean"][channel]


def test_comodulated_channels_correlate_and_independent_ones_do_not():
  r = np.random.default_rng(1)
  n = RATE * 4
  # A common loudness contour spanning ~2 decades, far slower than any channel's
  # own envelope fluctuations.
  smooth = np.convolve(r.standard_normal(n), np.hanning(4000), mode="same")
  slow = np.exp(2.5 * smooth / smooth.std())
  comodulated = texture.texture_statistics(r.standard_normal(n) * slow, RATE)
  independent = texture.texture_statistics(r.standard_normal(n), RATE)
  j = texture.CORRELATION_OFFSETS.index(5)  # channels 5 apart share no frequencies
  mid = slice(8, 26)
  assert comodulated["correlation"][mid, j].mean() > 0.8
  assert abs(independent["correlation"][mid, j].mean()) < 0.1


def _direct_cochleagram(x, rate):
  """The cochleagram written out with scipy alone: resample to 20 kHz, 40 half-cosine
  bands on the ERB-number scale (Glasberg & Moore: 9.265 ln(1 + f / (24.7 x 9.265))) between
  20 Hz and the source's Nyquist frequency, with the low- and high-pass complements,
  zero-phase filtering by FFT, Hilbert envelope ^0.3, resampled to 90 Hz."""
  import scipy.fft
  import scipy.signal
  x = scipy.signal.resample_poly(np.asarray(x, np.float64), 20000 // 4000, rate // 4000)
  f = scipy.fft.rfftfreq(len(x), 1 / 20000)
  erb = lambda hz: 9.265 * np.log1p(np.asarray(hz) / (24.7 * 9.265))
  edges = np.linspace(erb(20.0), erb(rate / 2), 42)
  e = erb(f)
  bands = np.zeros((len(f), 42))
  for k in range(40):
    inside = (e > edges[k]) & (e < edges[k + 2])
    bands[inside, k + 1] = np.cos((e[inside] - (edges[k] + edges[k + 2]) / 2) / (edges[k + 2] - edges[k]) * np.pi)
  low, high = e < edges[1], e > edges[40]
  bands[low, 0] = np.sqrt(np.maximum(0, 1 - bands[low, 1] ** 2))
  bands[high, 41] = np.sqrt(np.maximum(0, 1 - bands[high, 40] ** 2))
  sub = scipy.fft.irfft(scipy.fft.rfft(x)[:, None] * bands, n=len(x), axis=0)
  env = np.abs(scipy.signal.hilbert(sub, axis=0)) ** 0.3
  return np.maximum(scipy.signal.resample_poly(env, 9, 2000, axis=0), 0)


def test_the_cochleagram_equals_a_direct_scipy_computation():
  rng = np.random.default_rng(5)
  x = rng.normal(size=16000) * np.sin(np.linspace(0, 20, 16000)) ** 2
  got = texture.cochleagram(x, 16000)
  assert got.shape == (90, 42)
  np.testing.assert_allclose(got, _direct_cochleagram(x, 16000), rtol=1e-4, atol=1e-6)


def test_subband_noise_re_measures_near_its_target_cochleagram():
  """The parametric inversion: noise whose subband envelopes are a class sound's;
  its own cochleagram, re-measured, follows the target, and more closely after
  the iterations than after one pass."""
  from data_pipelines import synthetic
  t = np.arange(16000) / 16000
  for cls in (0, 4, 8):
    sound = synthetic.class_sound(cls, 16000, 16000, np.random.default_rng(cls)) * 0.1
    target = texture.cochleagram(sound * synthetic.note_envelope(t, np.array([0.1, 0.5]), 0.15),
                                 16000)
    errors = []
    for iterations in (1, 10):
      y = texture.subband_noise(target, 16000, iterations=iterations)
      assert len(y) == 16000
      back = texture.cochleagram(y, 16000)
      errors.append(np.abs(back - target).mean() / target.mean())
    assert errors[1] < 0.25 and errors[1] < errors[0], (cls, errors)
    assert np.corrcoef(back.ravel(), target.ravel())[0, 1] > 0.93
