"""Prepare: a folder or CSV list of videos -> sharded DMVR-format TFRecords.

The library side of `avjax-prepare` (avjax/prepare.py holds the command line):
`prepare(input, output, settings=PrepareSettings(...))`.

Each shard is one unit of work, written to a temporary name and renamed when
complete, with a sidecar JSON of its counts and skipped files. A re-run skips
shards whose sidecar exists, so an interrupted job finishes where it stopped.
Bad files never abort the job: they are listed with a reason in `skipped.csv`.
"""
from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import uuid
from typing import Iterator

import numpy as np

from data_pipelines import fs
from data_pipelines import spectrogram as spectrogram_lib

DEFAULT = object()  # PrepareSettings.spectrogram: the paper framing at the settings' rate


class PrepareError(ValueError):
  """A prepare job that cannot start: bad inputs, or an output of another job."""

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".ogv", ".mov", ".m4v", ".mpg",
                    ".mpeg", ".flv", ".3gp", ".wmv", ".ts")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus")  # --audio_only
MANIFEST = "manifest.json"
REPORT = "skipped.csv"
SHARD_PREFIX = "clips"
# A longer file is decoded as time ranges of about this many seconds, in parallel.
RANGE_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
  fps: float = 25.0
  sample_rate: int = 48000
  frame_size: int = 256
  min_seconds: float = 1.0
  clip_seconds: float = 10.0
  jpeg_quality: int = 90
  # Each clip's |STFT| is stored with this framing, so the reader slices windows
  # instead of recomputing them (see data_pipelines/spectrogram.py); None stores
  # none. Default: the paper's 10 ms / 5 ms at `sample_rate`.
  spectrogram: spectrogram_lib.SpectrogramSpec | None = DEFAULT
  # Sound recordings (no video stream) become clips of black frames instead of being
  # skipped: audio-only benchmarks (ESC-50) through the same records and probes.
  audio_only: bool = False

  def __post_init__(self):
    if self.spectrogram is DEFAULT:
      object.__setattr__(self, "spectrogram",
                         spectrogram_lib.SpectrogramSpec(sample_rate=self.sample_rate))
    elif self.spectrogram is not None and self.spectrogram.sample_rate != self.sample_rate:
      raise ValueError(f"the stored |STFT|'s sample rate {self.spectrogram.sample_rate} differs "
                       f"from the audio's {self.sample_rate}")

  def to_manifest(self) -> dict:
    out = dataclasses.asdict(self)
    out["spectrogram"] = self.spectrogram and self.spectrogram.to_manifest()
    if not self.audio_only:  # absent when off: the fingerprints of earlier jobs stand
      del out["audio_only"]
    return out


def list_inputs(input_path: str) -> tuple[str, list[str]]:
  """-> (root, relative paths). A CSV's first column holds paths relative to it."""
  if fs.isdir(input_path):
    found = [rel for rel in fs.walk_files(input_path)
             if not fs.basename(rel).startswith(".") and not rel.endswith((".csv", ".json"))]
    return input_path, found
  if input_path.endswith(".csv") and fs.exists(input_path):
    root = fs.dirname(fs.absolute(input_path))
    with fs.open(input_path, "r") as f:
      rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    if rows and rows[0][0].strip().lower() in ("file", "path", "video_path", "filename"):
      rows = rows[1:]
    return root, sorted(r[0].strip() for r in rows)
  raise PrepareError(f"--input {input_path!r}: not a directory or an existing .csv file")


def _csv_rows(path: str) -> Iterator[tuple[int, list[str]]]:
  """(line number, row) of a CSV, without blank and '#' lines or a 'file' header."""
  with fs.open(path, "r") as f:
    for lineno, row in enumerate(csv.reader(f), 1):
      if row and not row[0].startswith("#") and not (lineno == 1 and row[0].strip() == "file"):
        yield lineno, row


def read_labels(path: str | None) -> dict[str, list]:
  """CSV `file,label[,start,end]`: label may hold several labels separated by ';'.
  With start and end (seconds), the labels hold only for the clips whose middle
  falls in [start, end) (an event's segment, as AVE annotates them); each is then
  the entry [label, start, end] instead of the bare label."""
  if not path:
    return {}
  out: dict[str, list] = {}
  for lineno, row in _csv_rows(path):
    if len(row) < 2:
      raise PrepareError(f"{path}:{lineno}: expected 'file,label[,start,end]', got {row!r}")
    labels = [l.strip() for l in row[1].split(";") if l.strip()]
    timed = [v.strip() for v in row[2:4]]
    if any(timed):
      try:
        start, end = map(float, timed)
      except ValueError:
        raise PrepareError(f"{path}:{lineno}: start and end must be seconds, got {row[2:4]}") from None
      if not 0 <= start < end:
        raise PrepareError(f"{path}:{lineno}: needs 0 <= start < end, got {start}, {end}")
      labels = [[l, start, end] for l in labels]
    out.setdefault(row[0].strip(), []).extend(labels)
  return out


def label_name(entry) -> str:
  """A labels entry's name: the label itself, or a timed entry's first item."""
  return entry if isinstance(entry, str) else entry[0]


def clip_labels(labels: list, start_s: float, end_s: float) -> list[str]:
  """The label names that hold for the clip [start_s, end_s): the untimed ones,
  and the timed ones whose segment holds the clip's middle."""
  middle = (start_s + end_s) / 2
  return [label_name(l) for l in labels if isinstance(l, str) or l[1] <= middle < l[2]]


def read_boxes(path: str | None) -> dict[str, list[tuple[float, float, float, float, float]]]:
  """CSV `file,ymin,xmin,ymax,xmax[,time]`, coordinates normalised to 0..1."""
  if not path:
    return {}
  out: dict[str, list] = {}
  for lineno, row in _csv_rows(path):
    try:
      coords = [float(v) for v in row[1:5]]
      t = float(row[5]) if len(row) > 5 and row[5].strip() else -1.0
    except (ValueError, IndexError):
      raise PrepareError(f"{path}:{lineno}: expected 'file,ymin,xmin,ymax,xmax[,time]', got {row!r}")
    if len(coords) != 4 or not all(0.0 <= c <= 1.0 for c in coords):
      raise PrepareError(f"{path}:{lineno}: box coordinates must be 4 numbers in 0..1, got {row[1:5]}")
    if coords[0] > coords[2] or coords[1] > coords[3]:
      raise PrepareError(f"{path}:{lineno}: box has ymin>ymax or xmin>xmax: {coords}")
    out.setdefault(row[0].strip(), []).append((*coords, t))
  return out


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
  """Pillow's libjpeg-turbo with tf.io.encode_jpeg's settings (4:2:0, 300 dpi):
  byte for byte what TensorFlow writes, without loading it in the workers."""
  from PIL import Image
  out = io.BytesIO()
  Image.fromarray(frame).save(out, "JPEG", quality=quality, subsampling=2, dpi=(300, 300))
  return out.getvalue()


def _magnitude(waveform: np.ndarray, spec) -> np.ndarray:
  return spectrogram_lib.stft_magnitude_numpy(waveform, spec).astype(np.float32)


def _clip_record(clip, rel: str, settings: PrepareSettings, label_map: dict,
                 labels: list, boxes: list) -> bytes:
  """One decoded clip -> its serialized DMVR SequenceExample."""
  from data_pipelines import dmvr
  stft = settings.spectrogram
  in_clip = [b for b in boxes if b[4] < 0 or clip.start_s <= b[4] < clip.end_s]
  labels = clip_labels(labels, clip.start_s, clip.end_s)
  return dmvr.to_sequence_example(dmvr.Clip(
      magnitude=None if stft is None else _magnitude(clip.waveform, stft),
      spectrogram=stft,
      filename=rel, start_s=clip.start_s, end_s=clip.end_s, fps=settings.fps,
      sample_rate=settings.sample_rate,
      jpeg_frames=[encode_jpeg(f, settings.jpeg_quality) for f in clip.frames],
      waveform=clip.waveform,
      label_index=[label_map[l] for l in labels], label_text=labels,
      boxes=np.array([b[:4] for b in in_clip], np.float32).reshape(-1, 4),
      box_times_s=[(b[4] - clip.start_s) if b[4] >= 0 else -1.0 for b in in_clip])
  ).SerializeToString(deterministic=True)  # map keys sorted: equal clips, equal bytes


@dataclasses.dataclass(frozen=True)
class TimeRange:
  """The part of every input file a split takes: [start, end) as fractions of the
  file's duration, or in seconds (`seconds`); `avjax-prepare --splits`."""
  start: float
  end: float
  seconds: bool = False

  def __post_init__(self):
    if not 0 <= self.start < self.end or (not self.seconds and self.end > 1):
      unit = "seconds" if self.seconds else "fractions of 0..1"
      raise PrepareError(f"time range {self.start}:{self.end}: needs 0 <= start < end, in {unit}")

  def frames(self, duration_s: float | None, fps: float) -> tuple[int, int | None]:
    """[first, end) frames of a file of `duration_s` (None: unknown, only seconds
    ranges apply then); end None: to the file's end."""
    if self.seconds:
      return int(math.ceil(self.start * fps - 1e-6)), int(math.floor(self.end * fps + 1e-6))
    if duration_s is None:
      raise PrepareError("a time range in fractions needs the file's duration, and its header "
                         "gives none; give the range in seconds (e.g. 0:480s)")
    end = None if self.end >= 1 else int(math.floor(self.end * duration_s * fps + 1e-6))
    return int(math.ceil(self.start * duration_s * fps - 1e-6)), end

  def to_manifest(self) -> dict:
    return dataclasses.asdict(self)


def parse_splits(text: str) -> dict[str, TimeRange]:
  """"train=0:0.8,validation=0.8:1" (fractions of each file) or "train=0:480s,test=480s:600s"
  (seconds; an `s` on either end) -> {split: TimeRange}."""
  out = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    name, _, span = part.partition("=")
    start, colon, end = span.partition(":")
    if not name or not colon:
      raise PrepareError(f"--splits {part!r}: expected name=start:end (e.g. train=0:0.8)")
    seconds = start.endswith("s") or end.endswith("s")
    try:
      out[name.strip()] = TimeRange(float(start.rstrip("s")), float(end.rstrip("s")), seconds)
    except ValueError:
      raise PrepareError(f"--splits {part!r}: start and end must be numbers") from None
  names = list(out)
  if not names:
    raise PrepareError(f"--splits {text!r}: no split given")
  ranges = sorted(out.values(), key=lambda r: r.start)
  if len({r.seconds for r in ranges}) > 1:
    raise PrepareError(f"--splits {text!r}: give every range in fractions, or every one in seconds")
  for a, b in zip(ranges, ranges[1:]):
    if b.start < a.end:
      raise PrepareError(f"--splits {text!r}: ranges {a.start}:{a.end} and {b.start}:{b.end} "
                         "overlap")
  return out


@dataclasses.dataclass(frozen=True)
class Unit:
  """A piece of work: one file, or one time range of a long one (frames
  [first_frame, end_frame) on the prepare frame grid; end None: to the end)."""
  file: str
  index: int = 0
  first_frame: int = 0
  end_frame: int | None = None


def plan_units(rel: str, root: str, settings: PrepareSettings,
               range_seconds: float | None = RANGE_SECONDS,
               time_range: TimeRange | None = None) -> list[Unit]:
  """A file longer than `range_seconds` (by its header) becomes time ranges of
  about that length on the clip grid, which workers decode in parallel by
  seeking; others are one unit. Ranges change the work, never the records.
  `time_range`: only that part of the file (a time split), its clips on a grid
  from the part's first frame."""
  from data_pipelines import decode
  if not range_seconds and time_range is None:
    return [Unit(rel)]
  seconds = decode.probe_seconds(fs.join(root, rel))
  first, last = 0, None
  if time_range is not None:
    first, last = time_range.frames(seconds, settings.fps)
  span = (last if last is not None else (seconds or 0) * settings.fps) - first
  frames_per_clip = max(1, int(math.floor(settings.clip_seconds * settings.fps)))
  per_range = frames_per_clip * max(1, round((range_seconds or 0) * settings.fps /
                                             frames_per_clip))
  # round, not ceil: a header that over-states by a frame or two must not make a
  # range of nothing; the last range runs to the end anyway.
  n = 1 if not (range_seconds and seconds) or span <= 0 else max(1, round(span / per_range))
  return [Unit(rel, i, first + i * per_range, last if i == n - 1 else first + (i + 1) * per_range)
          for i in range(n)]


def unit_records(root: str, unit: Unit, settings: PrepareSettings, label_map: dict,
                 labels: list, boxes: list, threads: int = 0) -> Iterator[bytes]:
  """The serialized records of one unit, a clip at a time (decoded clip by clip:
  memory is bounded by a clip). Raises decode.BadMediaError for a bad file.
  `threads` (the video decoder's and scaler's) changes the speed, never the records."""
  from data_pipelines import decode
  for clip in decode.stream_clips(
      fs.join(root, unit.file), fps=settings.fps, sample_rate=settings.sample_rate,
      short_side=settings.frame_size, clip_seconds=settings.clip_seconds,
      min_seconds=settings.min_seconds, first_frame=unit.first_frame, end_frame=unit.end_frame,
      threads=threads, audio_only=settings.audio_only):
    yield _clip_record(clip, unit.file, settings, label_map, labels, boxes)


def skip_reason(error: Exception) -> str:
  """The report's reason for a file that failed with `error`."""
  from data_pipelines import decode
  if isinstance(error, decode.BadMediaError):
    return str(error)
  return f"unexpected {type(error).__name__}: {error}"  # a decoder bug on one file


def job_fingerprint(job: dict) -> str:
  """What decides a shard's records: a finished shard with another fingerprint
  is another job's."""
  keys = ("index", "num_shards", "files", "label_map", "labels", "boxes")
  record = {k: job[k] for k in keys}
  if job.get("time_range"):  # absent from the fingerprint of a whole-file job, as before
    record["time_range"] = job["time_range"]
  record["settings"] = job["settings"].to_manifest()
  return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def existing_outputs(output: str) -> list[str]:
  """What a prepare job writes, found in `output`: shards, their sidecars, the
  manifest and the report."""
  if not fs.isdir(output):
    return []
  return [n for n in fs.listdir(output) if n.startswith(SHARD_PREFIX + "-") or n in (MANIFEST, REPORT)]


def foreign_shards(output: str, jobs: list[dict]) -> list[str]:
  """Shards in `output` that this job would not write as they are: other names,
  or finished shards of another fingerprint."""
  mine = {}
  for job in jobs:
    path, done = _shard_paths(output, job["index"], job["num_shards"])
    mine[fs.basename(path)] = job
    mine[fs.basename(done)] = job
  out = []
  for name in existing_outputs(output):
    if name in (MANIFEST, REPORT) or name.endswith(".tmp"):
      continue  # rewritten at the end / unfinished work of any run
    job = mine.get(name)
    if job is None:
      out.append(name)
    elif name.endswith(".done.json"):
      if json.loads(fs.read_text(fs.join(output, name))).get("job") != job_fingerprint(job):
        out.append(name)
  return out


def _shard_paths(output: str, index: int, num_shards: int) -> tuple[str, str]:
  base = fs.join(output, f"{SHARD_PREFIX}-{index:05d}-of-{num_shards:05d}.tfrecord")
  return base, base + ".done.json"


def write_piece(item: dict) -> dict:
  """Writes one unit's records to a local piece file (removed if the file turns
  out bad); returns its clip count, or the reason the file is skipped."""
  from data_pipelines import tfrecord
  unit = item["unit"]
  try:
    n = 0
    with open(item["piece"], "wb") as writer:
      for record in unit_records(item["root"], unit, item["settings"], item["label_map"],
                                 item["labels"], item["boxes"], item["threads"]):
        tfrecord.write_record(writer, record)
        n += 1
    return {"clips": n, "reason": None}
  except Exception as e:  # noqa: BLE001 - one bad file must not cost the others
    if os.path.exists(item["piece"]):
      os.remove(item["piece"])
    return {"clips": 0, "reason": skip_reason(e)}


def costliest_first(units: list[Unit], window: int) -> list[int]:
  """The order to start `units` in: within each run of up to `window` consecutive
  ranges of one file, the later ranges first. A range decodes its file's audio
  from the start (resampling only its own), so later ranges cost more; started
  first, they leave the cheap ones to fill the end, and the workers finish
  together instead of one of them decoding the costliest range alone."""
  order, i = [], 0
  while i < len(units):
    j = i + 1
    while j < len(units) and j - i < window and units[j].file == units[i].file:
      j += 1
    order += range(j - 1, i - 1, -1)
    i = j
  return order


def _ordered_map(pool, fn, items, window: int, order: list[int] | None = None):
  """pool.map that starts items in `order` (default: theirs), at most `window`
  in flight beyond the one it waits for (a million-file job does not hold a
  million futures), and yields results in item order."""
  order = range(len(items)) if order is None else order
  futures, started = {}, 0
  for k in range(len(items)):
    while started < len(order) and (len(futures) < window or k not in futures):
      futures[order[started]] = pool.submit(fn, items[order[started]])
      started += 1
    yield futures.pop(k).result()


def worker_threads(workers: int) -> int:
  """Video decoder and scaler threads per worker: the cores shared out, not
  every worker's FFmpeg taking them all (measured on 2 cores, 2 workers: a range
  3% faster with one decoder thread each than with two each; one worker: its
  decoder and scaler keep both)."""
  return max(1, (os.cpu_count() or 1) // workers)


def _shard_pieces(job: dict, units: dict, pieces_dir: str, threads: int) -> list[dict]:
  name = fs.basename(_shard_paths(job["output"], job["index"], job["num_shards"])[0])
  return [dict(root=job["root"], unit=unit, settings=job["settings"], label_map=job["label_map"],
               threads=threads,
               labels=job["labels"].get(rel, []), boxes=job["boxes"].get(rel, []),
               piece=os.path.join(pieces_dir, f"{name}.{i}.{unit.index}.piece"), shard=job["index"])
          for i, rel in enumerate(job["files"]) for unit in units[rel]]


def _append(out, path: str) -> None:
  """Appends a file's bytes to `out` (unbuffered), copied by the kernel where it can."""
  with open(path, "rb") as piece:
    size = os.fstat(piece.fileno()).st_size
    try:
      while size > 0:
        n = os.copy_file_range(piece.fileno(), out.fileno(), size)
        if n == 0:
          break
        size -= n
    except (AttributeError, OSError):  # no copy_file_range here: copy in user space
      shutil.copyfileobj(piece, out, 1 << 22)


class ShardAssembler:
  """Builds one shard from its units' pieces, appended in file and range order as
  they come in, so the shard is complete as soon as its last unit is. A file any
  of whose ranges fails is cut back out (the shard truncated to where the file
  began), so the shard holds what decoding each file whole gives. The shard is
  written whole (renamed or uploaded when complete), then its sidecar."""

  def __init__(self, job: dict, items: list[dict], pieces_dir: str):
    self.job, self.items, self.next = job, items, 0
    self.path, self.done_path = _shard_paths(job["output"], job["index"], job["num_shards"])
    self.summary = {"shard": fs.basename(self.path), "job": job_fingerprint(job),
                    "files": job["files"], "clips": 0, "clip_files": 0, "skipped": []}
    if job.get("time_range"):  # each file's source range, in seconds
      fps = job["settings"].fps
      by_file = collections.defaultdict(list)
      for it in items:
        by_file[it["unit"].file].append(it["unit"])
      self.summary["ranges"] = {
          f: [units[0].first_frame / fps,
              None if units[-1].end_frame is None else units[-1].end_frame / fps]
          for f, units in by_file.items()}
    self.tmp = (self.path + ".tmp" if not fs.is_url(self.path) else
                os.path.join(pieces_dir, self.summary["shard"]))
    self.out = None  # opened with the first piece: a job may have many shards to come
    self.file_start, self.file_clips, self.failure = 0, 0, None

  def add(self, result: dict) -> dict | None:
    """The next item's result (items come in order); the summary once complete."""
    item = self.items[self.next]
    unit = item["unit"]
    if self.out is None:
      self.out = open(self.tmp, "wb", buffering=0)  # unbuffered: _append copies by fd
    if unit.index == 0:
      self.file_start, self.file_clips, self.failure = self.out.tell(), 0, None
    if self.failure is None and result["reason"] is not None:
      self.failure = result["reason"]
      self.out.truncate(self.file_start)
      self.out.seek(self.file_start)
    elif self.failure is None:
      _append(self.out, item["piece"])
      self.file_clips += result["clips"]
    if os.path.exists(item["piece"]):
      os.remove(item["piece"])
    self.next += 1
    if self.next == len(self.items) or self.items[self.next]["unit"].file != unit.file:
      if self.failure is not None:
        self.summary["skipped"].append({"file": unit.file, "reason": self.failure})
      else:
        self.summary["clips"] += self.file_clips
        self.summary["clip_files"] += 1
    return self.finish() if self.next == len(self.items) else None

  def finish(self) -> dict:
    if self.out is None:
      self.out = open(self.tmp, "wb")
    self.out.close()
    fs.put(self.tmp, self.path)
    if os.path.exists(self.tmp):
      os.remove(self.tmp)
    fs.write_text(self.done_path, json.dumps(self.summary))
    return self.summary


def _leave_interrupts_to_parent() -> None:
  """A worker ignores Ctrl-C: the parent stops the pool and says so in one line,
  where each worker would print a traceback of its own."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_shards(todo: list[dict], workers: int, threads: int, range_seconds: float | None,
                  quiet: bool, time_range: TimeRange | None = None) -> list[dict]:
  """Plans the units of the shards to do (probing each file's header), decodes
  them on a process pool, and assembles each shard once its units are in."""
  output = todo[0]["output"]
  pieces_dir = (tempfile.mkdtemp(prefix="avjax-prepare-") if fs.is_url(output) else
                fs.join(output, f".pieces-{uuid.uuid4().hex[:8]}"))
  os.makedirs(pieces_dir, exist_ok=True)
  ctx = multiprocessing.get_context("spawn")
  summaries = []
  try:
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx,
                                                initializer=_leave_interrupts_to_parent) as pool:
      files = [rel for job in todo for rel in job["files"]]
      planned = pool.map(plan_units, files, [job["root"] for job in todo for _ in job["files"]],
                         [job["settings"] for job in todo for _ in job["files"]],
                         [range_seconds] * len(files), [time_range] * len(files),
                         chunksize=max(1, len(files) // (4 * workers)))
      units = dict(zip(files, planned))
      items = [it for job in todo for it in _shard_pieces(job, units, pieces_dir, threads)]
      bar = None if quiet else _progress(len(files))
      by_shard = collections.defaultdict(list)
      for it in items:
        by_shard[it["shard"]].append(it)
      shards = {job["index"]: ShardAssembler(job, by_shard[job["index"]], pieces_dir) for job in todo}
      for shard in shards.values():  # a shard of no files (more shards than files) is empty
        if not shard.items:
          summaries.append(shard.finish())
      window = 4 * workers
      order = costliest_first([it["unit"] for it in items], window)
      for item, result in zip(items, _ordered_map(pool, write_piece, items, window, order)):
        if bar is not None:
          bar.update(1 / len(units[item["unit"].file]))
        summary = shards[item["shard"]].add(result)
        if summary is not None:
          summaries.append(summary)
      if bar is not None:
        bar.close()
  finally:
    shutil.rmtree(pieces_dir, ignore_errors=True)
  return summaries


def _progress(total: int):
  try:
    from tqdm import tqdm
    # disable=None: a bar on a terminal only; logs and pipes get the summary line.
    return tqdm(total=total, unit="file", desc="prepare", file=sys.stderr, disable=None)
  except ImportError:  # tqdm is a dependency; this only guards odd installs
    return None


def plan_job(input_path: str, labels_csv: str | None, boxes_csv: str | None,
             files_per_shard: int = 32, num_shards: int | None = None) -> dict:
  """The inputs, their labels and boxes, and the number of shards."""
  root, files = list_inputs(input_path)
  if not files:
    raise PrepareError(f"--input {input_path!r}: no files found")
  labels, boxes = read_labels(labels_csv), read_boxes(boxes_csv)
  label_names = sorted({label_name(l) for ls in labels.values() for l in ls})
  return dict(root=root, files=files, labels=labels, boxes=boxes, label_names=label_names,
              label_map={name: i for i, name in enumerate(label_names)},
              num_shards=num_shards or max(1, math.ceil(len(files) / files_per_shard)))


def claim_output(output: str, overwrite: bool, jobs: list[dict] | None = None) -> None:
  """Makes `output` this job's: with `overwrite`, everything a prepare job
  writes there is removed first; otherwise shards this job would not write as
  they are (any, without `jobs` to resume) are refused (PrepareError)."""
  if overwrite:
    for name in existing_outputs(output):
      fs.remove(fs.join(output, name))
  foreign = (foreign_shards(output, jobs) if jobs is not None else
             [n for n in existing_outputs(output) if n.startswith(SHARD_PREFIX + "-")])
  if foreign:
    raise PrepareError(f"{output} holds shards of another prepare job ({', '.join(foreign[:3])}"
                       f"{', ...' if len(foreign) > 3 else ''}); use another --output, or "
                       "--overwrite to replace them")
  fs.makedirs(output)


def manifest_of(settings: PrepareSettings, label_names: list[str], *, num_files: int,
                num_clip_files: int, num_skipped: int, shards: dict[str, int]) -> dict:
  return {
      "format": "dmvr-sequence-example",
      "settings": settings.to_manifest(),
      # What the reader checks before slicing stored |STFT| windows.
      "spectrogram": settings.spectrogram and settings.spectrogram.to_manifest(),
      "labels": label_names,
      "num_files": num_files,
      "num_clip_files": num_clip_files,
      "num_clips": sum(shards.values()),
      "num_skipped": num_skipped,
      "shards": dict(sorted(shards.items())),
  }


def write_report(output: str, skipped: list[dict]) -> None:
  report = io.StringIO()
  csv.writer(report).writerows([["file", "reason"], *([s["file"], s["reason"]] for s in skipped)])
  fs.write_text(fs.join(output, REPORT), report.getvalue())


def describe(manifest: dict, output: str, skipped: list[dict]) -> str:
  reasons = collections.Counter(s["reason"].split(":")[0] for s in skipped)
  detail = ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items()))
  return (f"prepared {manifest['num_clips']} clips from {manifest['num_clip_files']} of "
          f"{manifest['num_files']} files into {len(manifest['shards'])} shards in {output}; "
          f"skipped {len(skipped)}" + (f" ({detail}), see {fs.join(output, REPORT)}" if skipped else ""))


def prepare(input_path: str, output: str, *, labels_csv: str | None = None,
            boxes_csv: str | None = None, settings: PrepareSettings = PrepareSettings(),
            workers: int | None = None, threads: int | None = None, files_per_shard: int = 32,
            num_shards: int | None = None, quiet: bool = False, overwrite: bool = False,
            range_seconds: float | None = RANGE_SECONDS,
            time_range: TimeRange | None = None) -> dict:
  """Runs the whole prepare job on a local process pool; returns the manifest
  dict (also written to `output`).

  Re-running the same job finishes an interrupted one. An output folder that
  holds another job's shards is refused (PrepareError), unless `overwrite`,
  which removes everything a prepare job writes there first. `threads`: FFmpeg's
  decoder and scaler threads in each worker (None: worker_threads; 0: FFmpeg's
  choice, every core). `time_range`: only that part of each file (a time split;
  the manifest records it).
  """
  if threads is not None and threads < 0:
    raise ValueError(f"--threads: {threads} (use 0 for FFmpeg's choice, or a count >= 1)")
  plan = plan_job(input_path, labels_csv, boxes_csv, files_per_shard, num_shards)
  num_shards, files = plan["num_shards"], plan["files"]
  # Interleaved assignment spreads long and short files evenly over shards.
  jobs = []
  for i in range(num_shards):
    mine = files[i::num_shards]
    jobs.append(dict(index=i, num_shards=num_shards, output=output, root=plan["root"],
                     files=mine, settings=settings, label_map=plan["label_map"],
                     labels={f: plan["labels"][f] for f in mine if f in plan["labels"]},
                     boxes={f: plan["boxes"][f] for f in mine if f in plan["boxes"]},
                     time_range=time_range and time_range.to_manifest()))
  claim_output(output, overwrite, jobs)
  summaries, todo = [], []
  for job in jobs:
    path, done_path = _shard_paths(output, job["index"], num_shards)
    if fs.exists(done_path) and fs.exists(path):
      summaries.append(json.loads(fs.read_text(done_path)))
    else:
      todo.append(job)
  if todo:
    workers = workers or os.cpu_count() or 1
    threads = worker_threads(workers) if threads is None else threads
    summaries += _write_shards(todo, workers, threads, range_seconds, quiet, time_range)
  summaries.sort(key=lambda s: s["shard"])
  skipped = [s for sm in summaries for s in sm["skipped"]]
  write_report(output, skipped)
  manifest = manifest_of(settings, plan["label_names"], num_files=len(files),
                         num_clip_files=sum(s["clip_files"] for s in summaries),
                         num_skipped=len(skipped),
                         shards={s["shard"]: s["clips"] for s in summaries})
  if time_range is not None:
    manifest["time_range"] = time_range.to_manifest()
    manifest["file_ranges"] = {f: r for sm in summaries for f, r in sm.get("ranges", {}).items()}
  fs.write_text(fs.join(output, MANIFEST), json.dumps(manifest, indent=1))
  if not quiet:
    print(describe(manifest, output, skipped))
  return manifest


if __name__ == "__main__":
  # The library has no command line of its own: avjax-prepare is it.
  raise SystemExit("data_pipelines/ingest.py is a library module: run avjax-prepare "
                   "(python -m avjax.prepare --help)")
