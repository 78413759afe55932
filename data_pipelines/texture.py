"""Sound-texture statistics (McDermott & Simoncelli, Neuron 2011), the targets of
"Ambient Sound Provides Supervision for Visual Learning" (Owens et al., ECCV 2016).

As in the authors' code (andrewowens/multisensory, src/aolib/subband.py): the
audio, resampled to 20 kHz, goes through a cochlear bank of cosine filters
equally spaced on the ERB scale between 20 Hz and 10 kHz, adjacent ones
overlapping by half, plus a low-pass and a high-pass channel. Each channel's
Hilbert envelope is compressed by ^0.3 and resampled to `env_rate`. Per channel
the statistics are the envelope's mean, its std / mean, its correlation with
channels i+1, i+2, i+3 and i+5, and its power in 10 constant-Q modulation
bands (0.5-200 Hz) normalised by the envelope's variance.

The same bank with 40 bands, at 90 Hz, is the cochleagram that sonorization regresses
(`cochleagram`), and `subband_noise` turns one back into sound.

Pure numpy/scipy on one clip's waveform: prepare-time or offline work, no TF, no JAX.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

CORRELATION_OFFSETS = (1, 2, 3, 5)


@dataclasses.dataclass(frozen=True)
class TextureSpec:
  rate: int = 20000          # the filter bank's sample rate
  num_bands: int = 30        # cosine filters, besides the low- and high-pass channels
  low_hz: float = 20.0
  high_hz: float = 10000.0
  compression: float = 0.3
  env_rate: int = 400        # envelopes are resampled to this rate (modulation up to 200 Hz)
  num_mod_bands: int = 10
  mod_low_hz: float = 0.5
  mod_high_hz: float = 200.0
  mod_q: float = 1.0

  @property
  def num_channels(self) -> int:
    return self.num_bands + 2


def freq_to_erb(hz):
  return 9.265 * np.log(1 + np.asarray(hz, np.float64) / (24.7 * 9.265))


def erb_to_freq(erb):
  return 24.7 * 9.265 * (np.exp(np.asarray(erb, np.float64) / 9.265) - 1)


def erb_filters(length: int, rate: float, spec: TextureSpec) -> np.ndarray:
  """[rfft bins, num_bands + 2] frequency responses: low-pass, the ERB-spaced
  half-cosines, high-pass. Squared, they sum to 1 at every frequency."""
  freqs = np.fft.rfftfreq(length, 1.0 / rate)
  high = min(spec.high_hz, rate / 2)
  cutoffs = erb_to_freq(np.linspace(freq_to_erb(spec.low_hz), freq_to_erb(high),
                                    spec.num_bands + 2))
  filts = np.zeros((len(freqs), spec.num_bands + 2))
  erb = freq_to_erb(freqs)
  for k in range(spec.num_bands):
    lo, hi = cutoffs[k], cutoffs[k + 2]
    inside = (freqs > lo) & (freqs < hi)
    centre = 0.5 * (freq_to_erb(lo) + freq_to_erb(hi))
    width = freq_to_erb(hi) - freq_to_erb(lo)
    filts[inside, k + 1] = np.cos((erb[inside] - centre) / width * np.pi)
  below = freqs < cutoffs[1]
  filts[below, 0] = np.sqrt(np.maximum(0.0, 1 - filts[below, 1] ** 2))
  above = freqs > cutoffs[spec.num_bands]
  filts[above, -1] = np.sqrt(np.maximum(0.0, 1 - filts[above, spec.num_bands] ** 2))
  return filts


def modulation_filters(length: int, rate: float, spec: TextureSpec) -> np.ndarray:
  """[rfft bins, num_mod_bands] half-cosine filters on a linear frequency axis with
  centres log-spaced from mod_low_hz to mod_high_hz, bandwidth centre / Q (constant Q)."""
  freqs = np.fft.rfftfreq(length, 1.0 / rate)
  centres = 2.0 ** np.linspace(math.log2(spec.mod_low_hz), math.log2(spec.mod_high_hz),
                               spec.num_mod_bands)
  filts = np.zeros((len(freqs), spec.num_mod_bands))
  for k, c in enumerate(centres):
    lo, hi = c - c / spec.mod_q, c + c / spec.mod_q
    inside = (freqs > lo) & (freqs < hi)
    filts[inside, k] = np.cos((freqs[inside] - c) / (hi - lo) * np.pi)
  return filts


def _filter(signal: np.ndarray, filts: np.ndarray) -> np.ndarray:
  """Zero-phase filtering of signal [n] (or [n, c], each column) by each response."""
  ft = np.fft.rfft(signal, axis=0)
  if ft.ndim == 1:
    return np.fft.irfft(ft[:, None] * filts, n=signal.shape[0], axis=0)
  return np.fft.irfft(ft[:, :, None] * filts[:, None, :], n=signal.shape[0], axis=0)


def resample(x: np.ndarray, source: int, target: int) -> np.ndarray:
  """x [n, ...] from `source` Hz to `target` Hz along its first axis (polyphase)."""
  from scipy import signal as sps
  if source == target:
    return x
  g = math.gcd(int(source), int(target))
  return sps.resample_poly(x, int(target) // g, int(source) // g, axis=0)


def heard_bank(spec: TextureSpec, sample_rate: int) -> TextureSpec:
  """`spec` with no band above the source's Nyquist frequency (there it would hold
  only resampling residue)."""
  return dataclasses.replace(spec, high_hz=min(spec.high_hz, sample_rate / 2))


def envelopes(waveform: np.ndarray, sample_rate: int, spec: TextureSpec = TextureSpec()):
  """Compressed subband envelopes [frames at env_rate, channels]."""
  from scipy import signal as sps
  x = resample(np.asarray(waveform, np.float64), sample_rate, spec.rate)
  subbands = _filter(x, erb_filters(len(x), spec.rate, heard_bank(spec, sample_rate)))
  env = np.abs(sps.hilbert(subbands, axis=0)) ** spec.compression
  return np.maximum(resample(env, spec.rate, spec.env_rate), 0.0)


def texture_statistics(waveform: np.ndarray, sample_rate: int,
                       spec: TextureSpec = TextureSpec()) -> dict[str, np.ndarray]:
  """The statistics of one clip: `mean` [C], `std_over_mean` [C], `correlation`
  [C, 4] (with channels i+1, i+2, i+3, i+5; 0 past the last channel) and
  `modulation` [C, num_mod_bands]."""
  env = envelopes(waveform, sample_rate, spec)
  eps = np.finfo(np.float32).eps
  mean = env.mean(axis=0)
  var = env.var(axis=0)
  c = env.shape[1]
  centred = env - mean
  norm = np.sqrt(np.sum(centred ** 2, axis=0))
  corr = np.zeros((c, len(CORRELATION_OFFSETS)))
  for j, d in enumerate(CORRELATION_OFFSETS):
    num = np.sum(centred[:, :c - d] * centred[:, d:], axis=0)
    den = norm[:c - d] * norm[d:]
    corr[:c - d, j] = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
  mod = _filter(env, modulation_filters(env.shape[0], spec.env_rate, spec))  # [T, C, M]
  modulation = np.sqrt(np.mean(mod ** 2, axis=0) / (eps + var[:, None]))
  return {"mean": mean, "std_over_mean": np.sqrt(var / (eps + mean ** 2)),
          "correlation": corr, "modulation": modulation}


def feature_vector(stats: dict[str, np.ndarray]) -> np.ndarray:
  """The statistics as one float32 vector (the clustering's input)."""
  return np.concatenate([stats[k].ravel() for k in
                         ("mean", "std_over_mean", "correlation", "modulation")]).astype(np.float32)


def mfcc_statistics(waveform: np.ndarray, sample_rate: int, n_mfcc: int = 20) -> np.ndarray:
  """The alternative target: MFCC mean and std over the clip (librosa)."""
  import librosa
  m = librosa.feature.mfcc(y=np.asarray(waveform, np.float32), sr=sample_rate, n_mfcc=n_mfcc)
  return np.concatenate([m.mean(axis=1), m.std(axis=1)]).astype(np.float32)


# Sonorization's sound features (Owens et al., "Visually Indicated Sounds", CVPR 2016):
# a cochleagram of 40 ERB bands plus the low- and high-pass channels, envelopes
# compressed by ^0.3 at 90 Hz (three per video frame at 30 fps).
COCHLEAGRAM = TextureSpec(num_bands=40, env_rate=90)


def cochleagram(waveform: np.ndarray, sample_rate: int,
                spec: TextureSpec = COCHLEAGRAM) -> np.ndarray:
  """[frames at spec.env_rate, channels]: the compressed subband envelopes that
  sonorization regresses (`envelopes` with the paper's bank)."""
  return envelopes(waveform, sample_rate, spec)


def subband_noise(env: np.ndarray, sample_rate: int, spec: TextureSpec = COCHLEAGRAM, *,
                  iterations: int = 10, seed: int = 0) -> np.ndarray:
  """The paper's parametric inversion of a cochleagram [frames, channels] (at
  spec.env_rate, compressed): white noise split into the bank's subbands, each
  subband's fine structure (the subband over its Hilbert envelope) scaled by the
  target envelope, uncompressed, and the subbands filtered again and summed. Summing
  changes the envelopes a little; `iterations` repeat it from the sum.
  -> a waveform at `sample_rate` whose cochleagram re-measures near `env`."""
  from scipy import signal as sps
  # At the output's rate when it is below the bank's: the bank stops at its Nyquist
  # frequency either way, and the work shrinks with the rate.
  rate = min(spec.rate, int(sample_rate))
  n = int(round(env.shape[0] * rate / spec.env_rate))
  uncompressed = np.maximum(env, 0.0) ** (1.0 / spec.compression)
  target = np.maximum(resample(uncompressed, spec.env_rate, rate)[:n], 0.0)
  filts = erb_filters(n, rate, heard_bank(spec, sample_rate))
  x = np.random.default_rng(seed).standard_normal(n)
  for _ in range(iterations):
    analytic = sps.hilbert(_filter(x, filts), axis=0)
    subbands = np.real(analytic) / np.maximum(np.abs(analytic), 1e-12) * target
    # The filters' squares sum to 1: filtering each subband again and summing
    # reconstructs a signal from its subbands.
    x = _filter_each(subbands, filts).sum(axis=1)
  return resample(x, rate, sample_rate).astype(np.float32)


def _filter_each(subbands: np.ndarray, filts: np.ndarray) -> np.ndarray:
  """Column c of subbands [n, c] filtered by response c (zero phase)."""
  ft = np.fft.rfft(subbands, axis=0)
  return np.fft.irfft(ft * filts, n=subbands.shape[0], axis=0)
