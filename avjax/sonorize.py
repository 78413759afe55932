"""The sound of a video, predicted from its frames by a trained sonorization model.

    avjax-sonorize video.mp4 --workdir=DIR --output=out.wav [--inversion=parametric]

The video's frames are read at the model's frame rate a batch of windows at a
time; each window of `frame_stack` frames gives its steps of sound features, the
windows follow one another, and the sound is written as it is made, so memory
holds a batch of windows, not the video. The features become a waveform as in
the paper:
  - "parametric": subband noise shaped by the predicted cochleagram
    (data_pipelines.texture.subband_noise), each two neighbouring windows
    inverted together and overlap-added; a log-mel model is inverted by
    Griffin-Lim (librosa) instead;
  - "example": each window takes the sound of the training window whose real
    features are nearest its prediction (`--examples` of them, read from the
    config's training split), faded in and out over 10 ms.
The video's own sound is never read: the file needs no audio track.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Iterator, Sequence

import numpy as np

from data_pipelines import fs

INVERSIONS = ("parametric", "example")


class Sonorizer:
  """A sonorization checkpoint's prediction, jitted, and the two inversions."""

  def __init__(self, workdir: str, *, checkpoint: str = "best", batch_size: int = 8):
    import jax
    from avjax import embed, models
    self.emb = embed.Embedder(workdir, checkpoint=checkpoint, layer="features",
                              batch_size=batch_size)
    config = self.emb.config
    if config.model.name != "sonorization":
      raise ValueError(f"{workdir}: its model is {config.model.name!r}, not a sonorization "
                       "model (configs/sonorization.py)")
    self.model = models.build(config.model)
    self.stack = config.data.frame_stack
    self.fps = self.stack / self.emb.spectrogram.seconds  # frames per second of a window
    self.steps = self.stack * self.model.steps_per_frame   # feature steps per window
    self.rate = self.steps / self.emb.spectrogram.seconds
    self.batch_size = batch_size
    predict = self.emb.fns.predict
    self._predict = jax.jit(lambda v, x: predict(v, x, None)["sonorization_predictions"])
    self._targets = jax.jit(lambda w: self.model.target_features(w, self.steps))

  def stacks(self, path: str) -> Iterator[tuple[np.ndarray, int]]:
    """(uint8 frame stacks [batch, T, crop, crop, 3], real rows) of consecutive
    windows; the last window is padded with its last frame. Counts the frames read
    (`frames_read`, final once `frames_done`)."""
    from avjax import embed
    from data_pipelines import decode
    chunk, window = [], []
    self.frames_read, self.frames_done = 0, False
    try:
      for frame in decode.stream_frames(path, fps=self.fps, short_side=self.emb.data.resize):
        self.frames_read += 1
        window.append(embed.centre_crop(frame, self.emb.data))
        if len(window) == self.stack:
          chunk.append(np.stack(window))
          window = []
        if len(chunk) == self.batch_size:
          yield np.stack(chunk), len(chunk)
          chunk = []
    except decode.BadMediaError as e:
      raise ValueError(f"{path}: {e}") from e
    self.frames_done = True
    if window:
      chunk.append(np.stack(window + [window[-1]] * (self.stack - len(window))))
    if chunk:
      yield embed.pad_rows(np.stack(chunk), self.batch_size), len(chunk)

  def feature_windows(self, path: str) -> Iterator[np.ndarray]:
    """The predicted features [steps, D] of the video's windows, one after another."""
    seen = False
    for stacks, n in self.stacks(path):
      seen = True
      yield from np.asarray(self._predict(self.emb.variables, stacks))[:n]
    if not seen:
      raise ValueError(f"{path}: no frames")

  def invert(self, features: np.ndarray) -> np.ndarray:
    """Features [steps, D] -> the waveform they describe (subband noise, or
    Griffin-Lim for a log-mel model)."""
    if self.model.target == "log_mel":
      from avjax.models import sonorization
      return griffin_lim(features, self.emb.sample_rate,
                         sonorization.mel_framing(self.emb.window_samples, self.steps))
    return subband_inversion(features, self.rate, self.emb.sample_rate)

  def parametric(self, windows: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Consecutive windows' features -> consecutive pieces of sound. Each two
    neighbouring windows are inverted together and overlap-added with Hann weights
    (separate.OverlapAdd): memory holds two windows, and the joins do not click."""
    from avjax.separate import OverlapAdd
    size = self.emb.window_samples
    adder = OverlapAdd(2 * size, size)
    previous, count = None, 0
    for features in windows:
      pair = np.concatenate([np.zeros_like(features) if previous is None else previous, features])
      yield adder.add(_fit(self.invert(pair), 2 * size))
      previous, count = features, count + 1
    if previous is not None:
      yield adder.add(_fit(self.invert(np.concatenate([previous, np.zeros_like(previous)])),
                           2 * size))
      yield adder.finish(count * size)

  def example_bank(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(real features [n, steps * D], waveforms [n, samples]) of up to `limit`
    windows of the config's training split, a window apart."""
    from avjax import input as input_lib
    data = self.emb.config.data
    reader = input_lib.make_reader(data, data.train_split, global_batch=self.batch_size, seed=0)
    feats, waves = [], []
    for batch in reader.eval_iterator(window_hop=self.emb.spectrogram.seconds):
      keep = np.asarray(batch["mask"]) > 0
      w = np.asarray(batch["waveform"])[keep]
      feats.append(np.asarray(self._targets(w)).reshape(len(w), -1))
      waves.append(w)
      if sum(map(len, waves)) >= limit:
        break
    return np.concatenate(feats)[:limit], np.concatenate(waves)[:limit]

  def example(self, windows: Iterator[np.ndarray], bank) -> Iterator[np.ndarray]:
    """Each window's nearest bank window's sound, faded in and out over 10 ms."""
    bank_feats, bank_waves = bank
    bank_norms = np.sum(bank_feats ** 2, axis=1)
    fade = min(int(0.01 * self.emb.sample_rate), bank_waves.shape[1] // 2)
    ramp = np.linspace(0.0, 1.0, fade)
    for features in windows:
      flat = features.reshape(-1)
      out = bank_waves[np.argmin(bank_norms - 2 * bank_feats @ flat)].copy()
      out[:fade] *= ramp
      out[-fade:] *= ramp[::-1]
      yield out


def _fit(wave: np.ndarray, n: int) -> np.ndarray:
  """`wave` cut or zero-padded to n samples (an inversion's length is within a
  sample or two of its steps')."""
  return wave[:n] if len(wave) >= n else np.pad(wave, (0, n - len(wave)))


def subband_inversion(cochleagram: np.ndarray, rate: float, sample_rate: int) -> np.ndarray:
  """A cochleagram [steps, channels] at `rate` steps/s -> subband noise at
  `sample_rate` (texture.subband_noise, which works at the bank's own envelope
  rate: the steps are interpolated to it)."""
  from data_pipelines import texture
  spec = texture.COCHLEAGRAM
  t_out = np.arange(int(round(len(cochleagram) / rate * spec.env_rate))) / spec.env_rate
  t_in = (np.arange(len(cochleagram)) + 0.5) / rate
  env = np.stack([np.interp(t_out, t_in, c) for c in cochleagram.T], axis=1)
  return texture.subband_noise(env, sample_rate)


def griffin_lim(log_mel: np.ndarray, sample_rate: int, framing: tuple[int, int]) -> np.ndarray:
  """A log-mel spectrogram [steps, mels] of power, framed (n_fft, hop) as
  models.sonorization.mel_framing gives -> a waveform, by librosa's Griffin-Lim."""
  import librosa
  from avjax.models import sonorization
  n_fft, hop = framing
  power = np.maximum(np.exp(log_mel.T) - sonorization.MEL_FLOOR, 0.0)
  return librosa.feature.inverse.mel_to_audio(power, sr=sample_rate, n_fft=n_fft,
                                              hop_length=hop, power=2.0).astype(np.float32)


def sonorize_file(path: str, sonorizer: Sonorizer, output: str, *, inversion: str,
                  examples: int = 0) -> dict:
  """Writes `path`'s predicted sound to the wav `output` (local or a bucket)."""
  import soundfile
  if inversion not in INVERSIONS:
    raise ValueError(f"--inversion: {inversion!r} is not one of {', '.join(INVERSIONS)}")
  if not fs.exists(path):
    raise FileNotFoundError(f"{path}: no such file")
  windows = sonorizer.feature_windows(path)
  if inversion == "parametric":
    pieces = sonorizer.parametric(windows)
  else:
    pieces = sonorizer.example(windows, sonorizer.example_bank(examples))
  rate = sonorizer.emb.sample_rate
  samples = 0
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, "out.wav")
    with soundfile.SoundFile(local, "w", samplerate=rate, channels=1, subtype="FLOAT") as out:
      for piece in pieces:  # written as made: memory holds a batch of windows
        if sonorizer.frames_done:  # the padded last window's sound past the video is cut
          end = int(round(sonorizer.frames_read / sonorizer.fps * rate))
          piece = piece[:max(0, end - samples)]
        out.write(piece)
        samples += len(piece)
    fs.put(local, output)
  return {"windows": -(-sonorizer.frames_read // sonorizer.stack), "seconds": samples / rate,
          "wav": output}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  from avjax import cli
  p = cli.video_command_parser(
      __doc__.split("\n")[0], video="a video file (local or gs://); its sound is not read",
      workdir="a sonorization training workdir", output="the wav to write (local or gs://)")
  p.add_argument("--inversion", default="parametric", choices=INVERSIONS)
  p.add_argument("--examples", type=int, default=1000,
                 help="example inversion: training windows to choose from")
  p.add_argument("--batch_size", type=int, default=8)
  return cli.parse_positive(p, argv, ("examples", "batch_size"))


def main(args: argparse.Namespace) -> None:
  if not fs.exists(args.video):  # before loading a checkpoint for nothing
    raise FileNotFoundError(f"{args.video}: no such file")
  son = Sonorizer(args.workdir, checkpoint=args.checkpoint, batch_size=args.batch_size)
  r = sonorize_file(args.video, son, args.output, inversion=args.inversion,
                    examples=args.examples)
  print(f"{r['wav']}: {r['seconds']:.2f} s of predicted sound from {r['windows']} window(s) of "
        f"{args.video} ({args.inversion} inversion, checkpoint step {son.emb.step})",
        file=sys.stderr)


def run(argv: Sequence[str] | None = None) -> None:
  from avjax import cli
  cli.run_argparse("avjax-sonorize", parse_args, main, argv)


if __name__ == "__main__":
  run()
