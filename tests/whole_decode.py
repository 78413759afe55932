"""Today's whole-file decoding, kept as the reference that streaming prepare
must reproduce record for record (tests/test_prepare.py): the file decoded
whole into memory, then cut into clips. Not used by the library."""
from __future__ import annotations

import contextlib
import dataclasses
import math

import av
import numpy as np

from data_pipelines import ingest
# The per-frame sampling rule is the library's own (decode._frames_at from the
# start, no seeking); what this reference keeps is decoding the file whole.
from data_pipelines.decode import (BadMediaError, _audio_chunks, _bad_media_on_decode_errors,
                                   _frames_at, _require_finite, _require_samples,
                                   _resized_shape)


@dataclasses.dataclass
class DecodedVideo:
  frames: np.ndarray      # [T, H, W, 3] uint8 sampled at `fps`
  fps: float
  waveform: np.ndarray    # [S] float32 mono at `sample_rate`
  sample_rate: int

  @property
  def duration_s(self) -> float:
    return min(len(self.frames) / self.fps, len(self.waveform) / self.sample_rate)


def _decode_frames(container, stream, fps: float, short_side: int) -> np.ndarray:
  out = list(_frames_at(container, stream, fps, short_side))
  if out:
    return np.stack(out)
  w, h = _resized_shape(stream.codec_context.width, stream.codec_context.height, short_side)
  return np.zeros((0, h, w, 3), np.uint8)


def _decode_audio(container, stream, sample_rate: int) -> np.ndarray:
  chunks = list(_audio_chunks(container, stream, sample_rate))
  return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def decode_video(path: str, *, fps: float, sample_rate: int, short_side: int,
                 min_seconds: float) -> DecodedVideo:
  """Decodes `path` to frames at `fps` (shorter side `short_side`) and mono audio."""
  with _bad_media_on_decode_errors(), _local(path) as local:
    with av.open(local) as container:
      if not container.streams.video:
        raise BadMediaError("no video stream")
      if not container.streams.audio:
        raise BadMediaError("no audio track")
      frames = _decode_frames(container, container.streams.video[0], fps, short_side)
    with av.open(local) as container:
      waveform = _decode_audio(container, container.streams.audio[0], sample_rate)
  if len(frames) == 0:
    raise BadMediaError("no decodable video frames")
  _require_samples(waveform)
  video = DecodedVideo(frames, fps, waveform, sample_rate)
  if video.duration_s + 1e-6 < min_seconds:
    raise BadMediaError(f"too short: {video.duration_s:.2f}s of audio+video, need {min_seconds:.2f}s")
  _require_finite(waveform)
  return video


def split_into_clips(video: DecodedVideo, clip_seconds: float, min_seconds: float):
  """Yields (start_s, end_s, frames, waveform) pieces of at most `clip_seconds`.

  A trailing piece shorter than `min_seconds` is dropped: it cannot hold one window.
  Piece boundaries fall on the frame grid so that frames and audio stay aligned.
  """
  frames_per_clip = max(1, int(math.floor(clip_seconds * video.fps)))
  n_frames = int(math.floor(video.duration_s * video.fps + 1e-6))
  for first in range(0, n_frames, frames_per_clip):
    last = min(first + frames_per_clip, n_frames)
    start_s, end_s = first / video.fps, last / video.fps
    if end_s - start_s + 1e-6 < min_seconds:
      break
    s0 = int(round(start_s * video.sample_rate))
    s1 = int(round(end_s * video.sample_rate))
    yield start_s, end_s, video.frames[first:last], video.waveform[s0:s1]



@contextlib.contextmanager
def _local(path):
  yield path


def whole_file_records(root: str, rel: str, settings, label_map=None, labels=(), boxes=()):
  """A file's records as prepare wrote them before streaming: decoded whole."""
  video = decode_video(f"{root}/{rel}", fps=settings.fps, sample_rate=settings.sample_rate,
                       short_side=settings.frame_size, min_seconds=settings.min_seconds)
  out = []
  for start_s, end_s, frames, waveform in split_into_clips(video, settings.clip_seconds,
                                                           settings.min_seconds):
    from data_pipelines.decode import ClipPiece
    out.append(ingest._clip_record(ClipPiece(start_s, end_s, frames, waveform), rel, settings,
                                    label_map or {}, list(labels), list(boxes)))
  return out
