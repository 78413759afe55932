"""Video decoding with PyAV (FFmpeg's libraries, installed from PyPI).

A file in a bucket is read from a local temporary copy (data_pipelines.fs), on
disk, not in memory.

Every failure is turned into `BadMediaError` with a short reason, which the
prepare step writes to its report; nothing here prints or exits.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Iterator

import av
from av.video.reformatter import VideoReformatter
import numpy as np

from data_pipelines import fs


class BadMediaError(Exception):
  """A file that cannot give a training clip; str() is the reason for the report."""


def _resized_shape(width: int, height: int, short_side: int) -> tuple[int, int]:
  """Keep the aspect ratio, scaling the shorter side to `short_side` (even sizes)."""
  scale = short_side / min(width, height)
  w = max(2, int(round(width * scale / 2)) * 2)
  h = max(2, int(round(height * scale / 2)) * 2)
  return w, h


def _frames_from(container, stream, target: float | None) -> Iterator:
  """Decoded frames in presentation order, starting at or before time `target`
  (None: the start) by seeking to the keyframe before it. A container whose
  seek lands after the target is decoded from its start instead."""
  if target is None:
    yield from container.decode(stream)
    return
  container.seek(max(0, int(target / stream.time_base)), stream=stream)
  first = True
  for frame in container.decode(stream):
    if first and frame.time is not None:
      first = False
      if frame.time > target + 1e-6:  # an inexact index: start over from the beginning
        container.seek(0, stream=stream, backward=True)
        yield from container.decode(stream)
        return
    yield frame


def first_frame_time(container, stream) -> float | None:
  """The time of the first decodable frame: the origin of the frame grid."""
  for frame in container.decode(stream):
    if frame.time is not None:
      return frame.time
  return None


def _frames_at(container, stream, fps: float, short_side: int, *, first_n: int = 0,
               t0: float | None = None, threads: int = 0) -> Iterator[np.ndarray]:
  """Frames at times t0 + n/fps for n = first_n, first_n + 1, ..., each the last
  source frame shown at or before it, one at a time: memory holds one decoded
  frame, whatever the video's length. From first_n > 0 (t0 given) the decoder
  seeks there instead of decoding what comes before. `threads`: the scaler's
  (0: FFmpeg's choice, every core); the pixels do not depend on it."""
  w, h = _resized_shape(stream.codec_context.width, stream.codec_context.height, short_side)
  n = first_n
  prev = prev_image = None
  # One scaler for the stream: frame.to_ndarray(width=...) builds a fresh
  # SwsContext, and its thread pool, for every frame (benchmarks/prepare.py
  # measures the decode).
  scaler = VideoReformatter()

  def prev_as_array():
    nonlocal prev_image
    if prev_image is None:  # convert lazily: most source frames are never emitted
      prev_image = scaler.reformat(prev, width=w, height=h, format="rgb24",
                                   threads=threads).to_ndarray()
    return prev_image

  for frame in _frames_from(container, stream, None if first_n == 0 else t0 + first_n / fps):
    if frame.time is None:
      continue
    if t0 is None:
      t0 = frame.time
    while prev is not None and t0 + n / fps < frame.time - 1e-6:
      yield prev_as_array()
      n += 1
    prev, prev_image = frame, None
  if prev is not None:  # the last frame lasts one source frame period
    period = 1.0 / float(stream.average_rate or fps)
    while t0 + n / fps < prev.time + period - 1e-6:
      yield prev_as_array()
      n += 1


def _audio_chunks(container, stream, sample_rate: int, frames=None) -> Iterator[np.ndarray]:
  """Mono float32 at `sample_rate`, one decoded packet's worth at a time (of
  `frames` if given, else the stream decoded from where the container is)."""
  resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
  for frame in container.decode(stream) if frames is None else frames:
    for resampled in resampler.resample(frame):
      yield resampled.to_ndarray().reshape(-1).astype(np.float32)
  for resampled in resampler.resample(None):
    yield resampled.to_ndarray().reshape(-1).astype(np.float32)


# A range's audio goes through the resampler from this far before it: its filter
# then holds what it holds in a whole decode (17 output samples differ at 44.1 ->
# 16 kHz), and the samples are the whole decode's, bit for bit.
RESAMPLER_WARMUP_SECONDS = 1.0


def _rate_periods(in_rate: int, out_rate: int) -> tuple[int, int]:
  """Input and output samples per period of the resampling ratio: a fresh
  resampler started on a multiple of the input period lines up with one started
  at zero."""
  g = math.gcd(in_rate, out_rate)
  return in_rate // g, out_rate // g


def _frames_after(frames: Iterator, start: int) -> Iterator:
  """Decoded frames from input sample `start` on (counted over the frames as
  they come), the one holding it cut to begin there."""
  n = 0
  for frame in frames:
    if n + frame.samples <= start:
      n += frame.samples
      continue
    if n < start:
      cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(frame.to_ndarray()[..., start - n:]),
                                       format=frame.format.name, layout=frame.layout.name)
      cut.sample_rate = frame.sample_rate
      frame = cut
    yield frame
    yield from frames
    return


def audio_from(container, stream, sample_rate: int, keep_from: int = 0
               ) -> tuple[Iterator[np.ndarray], int]:
  """Audio chunks equal to _audio_chunks' for the whole stream from output sample
  `start` on, and start (<= keep_from). The decoder still runs from the stream's
  start (its state, e.g. AAC noise substitution's random generator, depends on
  every frame before), but resampling, four times the decoding's cost, starts
  RESAMPLER_WARMUP_SECONDS before the range, on a period of the rate ratio."""
  in_rate = stream.codec_context.sample_rate
  if not in_rate:
    return _audio_chunks(container, stream, sample_rate), 0
  period_in, period_out = _rate_periods(in_rate, sample_rate)
  periods = (keep_from - int(RESAMPLER_WARMUP_SECONDS * sample_rate)) // period_out
  if periods <= 0:
    return _audio_chunks(container, stream, sample_rate), 0
  frames = _frames_after(container.decode(stream), periods * period_in)
  return _audio_chunks(container, stream, sample_rate, frames), periods * period_out


@contextlib.contextmanager
def _bad_media_on_decode_errors():
  """Turns the decoder's exceptions into BadMediaError with a short reason."""
  try:
    yield
  except BadMediaError:
    raise
  except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as e:
    raise BadMediaError(f"cannot decode: {type(e).__name__}: {e}") from e


def _require_samples(waveform: np.ndarray) -> None:
  if len(waveform) == 0:
    raise BadMediaError("no decodable audio samples")


def _require_finite(waveform: np.ndarray) -> None:
  if not np.all(np.isfinite(waveform)):
    raise BadMediaError("audio holds NaN or Inf samples")


def stream_frames(path: str, *, fps: float, short_side: int) -> Iterator[np.ndarray]:
  """A video's frames at `fps` (shorter side `short_side`), one at a time."""
  with _bad_media_on_decode_errors(), fs.local_copy(path) as local:
    with av.open(local) as container:
      if not container.streams.video:
        raise BadMediaError("no video stream")
      yield from _frames_at(container, container.streams.video[0], fps, short_side)


def stream_audio(path: str, *, sample_rate: int) -> Iterator[np.ndarray]:
  """The first audio track of any media file as mono float32 chunks at
  `sample_rate`: memory holds a chunk, not the file. Raises BadMediaError (no
  track, undecodable, no samples, NaN or Inf) while iterating."""
  n = 0
  with _bad_media_on_decode_errors(), fs.local_copy(path) as local:
    with av.open(local) as container:
      if not container.streams.audio:
        raise BadMediaError("no audio track")
      for chunk in _audio_chunks(container, container.streams.audio[0], sample_rate):
        _require_finite(chunk)
        n += len(chunk)
        yield chunk
  if n == 0:
    _require_samples(np.zeros(0))


def decode_audio(path: str, *, sample_rate: int) -> np.ndarray:
  """Decodes the first audio track of any media file to mono float32 at `sample_rate`."""
  chunks = list(stream_audio(path, sample_rate=sample_rate))
  return np.concatenate(chunks)




@dataclasses.dataclass
class ClipPiece:
  """One clip cut from a video: frames on the frame grid, and the audio under them.
  From stream_clips, `frames` is valid until the next clip is asked for (copy it
  to keep it)."""
  start_s: float
  end_s: float
  frames: np.ndarray    # [T, H, W, 3] uint8 at the prepare frame rate
  waveform: np.ndarray  # [S] float32 mono at the prepare sample rate


def _probe(path: str, read):
  """`read(container)` of a media file's header, None if it cannot be opened; a
  remote file is read through a file object, so only the header travels."""
  try:
    with fs.open(path, "rb") as f, av.open(f) as container:
      return read(container)
  except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError):
    return None


def probe_seconds(path: str) -> float | None:
  """A media file's duration from its container's header (None if it gives none
  or cannot be opened): enough to plan time ranges, never to cut clips."""
  def read(container):
    if container.duration is not None:
      return container.duration / 1e6  # AV_TIME_BASE
    spans = [float(s.duration * s.time_base) for s in container.streams
             if s.duration is not None and s.time_base is not None]
    return max(spans) if spans else None
  return _probe(path, read)


def probe_frame_size(path: str) -> tuple[int, int] | None:
  """(width, height) of a file's first video stream, from its header (None if it
  has none or cannot be opened)."""
  def read(container):
    if not container.streams.video:
      return None
    ctx = container.streams.video[0].codec_context
    return (ctx.width, ctx.height) if ctx.width and ctx.height else None
  return _probe(path, read)


class _Audio:
  """The audio of a file, counted from its first sample and kept from a sample
  index on. Its chunks start at sample `start` (audio_from), where they equal the
  whole file's, so a time range's audio is the same samples the whole file's
  audio holds there. Holds at most a clip's samples."""

  def __init__(self, chunks: Iterator[np.ndarray], keep_from: int = 0, start: int = 0):
    self._chunks, self.done = chunks, False
    self.total = start          # samples decoded so far, counted from the file's first
    self._keep_from = keep_from  # samples before this are dropped as they come
    self._start = start         # the sample index of the first kept chunk's start
    self._kept: list[np.ndarray] = []

  def pull(self) -> None:
    chunk = next(self._chunks, None)
    if chunk is None:
      self.done = True
      return
    _require_finite(chunk)
    self.total += len(chunk)
    self._kept.append(chunk)
    self._forget()

  def _forget(self) -> None:
    while self._kept and self._start + len(self._kept[0]) <= self._keep_from:
      self._start += len(self._kept.pop(0))

  def take(self, s0: int, s1: int) -> np.ndarray:
    """Samples [s0, s1), forgetting those before s0 (s0 never goes back)."""
    self._keep_from = s0
    self._forget()
    kept = np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)
    return kept[s0 - self._start:s1 - self._start].copy()


def stream_clips(path: str, *, fps: float, sample_rate: int, short_side: int,
                 clip_seconds: float, min_seconds: float, first_frame: int = 0,
                 end_frame: int | None = None, threads: int = 0,
                 audio_only: bool = False) -> Iterator[ClipPiece]:
  """Cuts a video into clips of `clip_seconds` on the frame grid (frames at
  `fps`, shorter side `short_side`; mono audio at `sample_rate`), decoding one
  clip at a time: memory holds a clip, whatever the video's length.

  The clips of frames [first_frame, end_frame) (end None: to the end of the
  file), a time range on the clip grid; the video is sought to the range, the
  audio decoded from the start but resampled only from just before it
  (audio_from). Every range gives the clips the whole file gives
  there. A trailing piece shorter than `min_seconds` is dropped. Raises
  BadMediaError (no stream, undecodable, too short, NaN audio) as it goes; a
  caller keeping a file's clips only if it completes keeps what a whole decode
  would have. `threads`: the video decoder's and the scaler's (0: FFmpeg's
  choice, every core); the records do not depend on it. `audio_only`: a file
  without a video stream (a sound recording) gives black square frames for as
  long as its audio lasts, instead of being refused.
  """
  frames_per_clip = max(1, int(math.floor(clip_seconds * fps)))
  with _bad_media_on_decode_errors(), fs.local_copy(path) as local:
    with av.open(local) as video_container, av.open(local) as audio_container:
      if not audio_container.streams.audio:
        raise BadMediaError("no audio track")
      has_video = bool(video_container.streams.video)
      if not has_video and not audio_only:
        raise BadMediaError("no video stream")
      keep_from = int(round(first_frame / fps * sample_rate))
      chunks, start = audio_from(audio_container, audio_container.streams.audio[0], sample_rate,
                                 keep_from)
      audio = _Audio(chunks, keep_from=keep_from, start=start)
      if has_video:
        vstream = video_container.streams.video[0]
        vstream.codec_context.thread_count = threads
        t0 = None
        if first_frame > 0:
          t0 = first_frame_time(video_container, vstream)
          if t0 is None:
            return
        frames = _frames_at(video_container, vstream, fps, short_side, first_n=first_frame,
                            t0=t0, threads=threads)
      else:
        frames = blank_frames(audio, fps, sample_rate, short_side, first_frame)
      yield from _cut(frames, audio, fps=fps, sample_rate=sample_rate,
                      frames_per_clip=frames_per_clip, min_seconds=min_seconds,
                      first_frame=first_frame, end_frame=end_frame)


def blank_frames(audio: _Audio, fps: float, sample_rate: int, size: int,
                 first_frame: int) -> Iterator[np.ndarray]:
  """Black size x size frames from `first_frame` for as long as `audio` lasts
  (a frame while its end is within the audio), pulling the audio as it goes."""
  image = np.zeros((size, size, 3), np.uint8)
  f = first_frame
  while True:
    while not audio.done and audio.total < (f + 1) / fps * sample_rate:
      audio.pull()
    if audio.total + 1e-6 < (f + 1) / fps * sample_rate:
      return
    yield image
    f += 1


def _cut(frames: Iterator[np.ndarray], audio: _Audio, *, fps, sample_rate, frames_per_clip,
         min_seconds, first_frame, end_frame) -> Iterator[ClipPiece]:
  """Clip boundaries fall on the frame grid, so that frames and audio stay
  aligned; a clip is cut once both streams are known to cover it. Frames go
  straight into one clip-sized array, reused from clip to clip (no fresh 100 MB
  of pages to fault in per clip)."""
  clip = None
  n_frames, video_done = first_frame, False  # frames seen, counted from the file's start

  def covered() -> int:  # frames of the grid both streams cover so far
    return int(math.floor(min(n_frames / fps, audio.total / sample_rate) * fps + 1e-6))

  def samples(frame: int) -> int:
    return int(round(frame / fps * sample_rate))

  first = first_frame
  while end_frame is None or first < end_frame:
    # A range ends a clip early only where it is off the clip grid (a time split's end).
    last = first + frames_per_clip if end_frame is None else min(first + frames_per_clip, end_frame)
    while covered() < last:
      if n_frames < last and not video_done:
        image = next(frames, None)
        if image is None:
          video_done = True
        else:
          if clip is None:
            clip = np.empty((frames_per_clip, *image.shape), image.dtype)
          clip[n_frames - first] = image
          n_frames += 1
      elif not audio.done:
        audio.pull()
      elif not video_done:  # audio ended first; the video may still hold errors
        video_done = next(frames, None) is None
        n_frames += not video_done
      else:
        break
    last = min(last, covered())
    if last - first <= 0 or (last - first) / fps + 1e-6 < min_seconds:
      break
    yield ClipPiece(first / fps, last / fps, clip[:last - first],
                    audio.take(samples(first), samples(last)))
    first = last
  if end_frame is not None and first >= end_frame:
    return  # a later range holds the rest
  # The whole file is checked, as a whole decode would: the streams to their ends.
  while not video_done:
    video_done = next(frames, None) is None
    n_frames += not video_done
  while not audio.done:
    audio.pull()
  if first_frame == 0 and n_frames == 0:
    raise BadMediaError("no decodable video frames")
  _require_samples(np.zeros(audio.total))
  duration = min(n_frames / fps, audio.total / sample_rate)
  if duration + 1e-6 < min_seconds:
    raise BadMediaError(f"too short: {duration:.2f}s of audio+video, need {min_seconds:.2f}s")
