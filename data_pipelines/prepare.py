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
import sys
import tempfile

import numpy as np

from data_pipelines import fs
from data_pipelines import spectrogram as spectrogram_lib

DEFAULT = object()  # PrepareSettings.spectrogram: the paper framing at the settings' rate


class PrepareError(ValueError):
  """A prepare job that cannot start: bad inputs, or an output of another job."""

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".ogv", ".mov", ".m4v", ".mpg",
                    ".mpeg", ".flv", ".3gp", ".wmv", ".ts")
MANIFEST = "manifest.json"
REPORT = "skipped.csv"
SHARD_PREFIX = "clips"


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


def read_labels(path: str | None) -> dict[str, list[str]]:
  """CSV `file,label` where label may hold several labels separated by ';'."""
  if not path:
    return {}
  out: dict[str, list[str]] = {}
  with fs.open(path, "r") as f:
    for lineno, row in enumerate(csv.reader(f), 1):
      if not row or row[0].startswith("#") or (lineno == 1 and row[0].strip() == "file"):
        continue
      if len(row) < 2:
        raise PrepareError(f"{path}:{lineno}: expected 'file,label', got {row!r}")
      labels = [l.strip() for l in row[1].split(";") if l.strip()]
      out.setdefault(row[0].strip(), []).extend(labels)
  return out


def read_boxes(path: str | None) -> dict[str, list[tuple[float, float, float, float, float]]]:
  """CSV `file,ymin,xmin,ymax,xmax[,time]`, coordinates normalised to 0..1."""
  if not path:
    return {}
  out: dict[str, list] = {}
  with fs.open(path, "r") as f:
    for lineno, row in enumerate(csv.reader(f), 1):
      if not row or row[0].startswith("#") or (lineno == 1 and row[0].strip() == "file"):
        continue
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


def _encode_jpegs(frames: np.ndarray, quality: int) -> list[bytes]:
  import tensorflow as tf  # imported in the worker: TF must not be forked
  return [tf.io.encode_jpeg(f, quality=quality).numpy() for f in frames]


def _magnitude(waveform: np.ndarray, spec) -> np.ndarray:
  return spectrogram_lib.stft_magnitude(waveform, spec).numpy().astype(np.float32)


def _clips_for_file(root: str, rel: str, settings: PrepareSettings, label_map: dict,
                    labels: list[str], boxes: list) -> list:
  from data_pipelines import decode, dmvr
  video = decode.decode_video(fs.join(root, rel), fps=settings.fps,
                              sample_rate=settings.sample_rate,
                              short_side=settings.frame_size,
                              min_seconds=settings.min_seconds)
  stft = settings.spectrogram
  clips = []
  for start_s, end_s, frames, waveform in decode.split_into_clips(
      video, settings.clip_seconds, settings.min_seconds):
    in_clip = [b for b in boxes if b[4] < 0 or start_s <= b[4] < end_s]
    clips.append(dmvr.Clip(
        magnitude=None if stft is None else _magnitude(waveform, stft),
        spectrogram=stft,
        filename=rel, start_s=start_s, end_s=end_s, fps=settings.fps,
        sample_rate=settings.sample_rate,
        jpeg_frames=_encode_jpegs(frames, settings.jpeg_quality), waveform=waveform,
        label_index=[label_map[l] for l in labels], label_text=labels,
        boxes=np.array([b[:4] for b in in_clip], np.float32).reshape(-1, 4),
        box_times_s=[(b[4] - start_s) if b[4] >= 0 else -1.0 for b in in_clip]))
  return clips


def job_fingerprint(job: dict) -> str:
  """What decides a shard's records: a finished shard with another fingerprint
  is another job's."""
  keys = ("index", "num_shards", "files", "label_map", "labels", "boxes")
  record = {k: job[k] for k in keys}
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


def write_shard(job: dict) -> dict:
  """Decodes the files of one shard and writes it whole (a local temporary file,
  renamed or uploaded when complete, then its sidecar); returns its summary."""
  import tensorflow as tf
  from data_pipelines import decode, dmvr
  path, done_path = _shard_paths(job["output"], job["index"], job["num_shards"])
  settings = job["settings"]
  summary = {"shard": fs.basename(path), "job": job_fingerprint(job),
             "files": job["files"], "clips": 0,
             "clip_files": 0, "skipped": []}
  tmp = path + ".tmp" if not fs.is_url(path) else os.path.join(
      tempfile.mkdtemp(prefix="avjax-shard-"), fs.basename(path))
  with tf.io.TFRecordWriter(tmp) as writer:
    for rel in job["files"]:
      try:
        clips = _clips_for_file(job["root"], rel, settings, job["label_map"],
                                job["labels"].get(rel, []), job["boxes"].get(rel, []))
      except decode.BadMediaError as e:
        summary["skipped"].append({"file": rel, "reason": str(e)})
        continue
      except Exception as e:  # a decoder bug on one file must not cost the others
        summary["skipped"].append({"file": rel, "reason": f"unexpected {type(e).__name__}: {e}"})
        continue
      for clip in clips:
        writer.write(dmvr.to_sequence_example(clip).SerializeToString())
      summary["clips"] += len(clips)
      summary["clip_files"] += 1
  fs.put(tmp, path)
  if fs.is_url(path):
    shutil.rmtree(os.path.dirname(tmp))
  fs.write_text(done_path, json.dumps(summary))
  return summary


def _progress(total: int):
  try:
    from tqdm import tqdm
    return tqdm(total=total, unit="file", desc="prepare", file=sys.stderr)
  except ImportError:  # tqdm is a dependency; this only guards odd installs
    return None


def prepare(input_path: str, output: str, *, labels_csv: str | None = None,
            boxes_csv: str | None = None, settings: PrepareSettings = PrepareSettings(),
            workers: int | None = None, files_per_shard: int = 32,
            num_shards: int | None = None, quiet: bool = False, overwrite: bool = False) -> dict:
  """Runs the whole prepare job; returns the manifest dict (also written to disk).

  Re-running the same job finishes an interrupted one. An output folder that
  holds another job's shards is refused (PrepareError), unless `overwrite`,
  which removes everything a prepare job writes there first.
  """
  root, files = list_inputs(input_path)
  if not files:
    raise PrepareError(f"--input {input_path!r}: no files found")
  labels, boxes = read_labels(labels_csv), read_boxes(boxes_csv)
  label_names = sorted({l for ls in labels.values() for l in ls})
  label_map = {name: i for i, name in enumerate(label_names)}
  num_shards = num_shards or max(1, math.ceil(len(files) / files_per_shard))
  # Interleaved assignment spreads long and short files evenly over shards.
  jobs = []
  for i in range(num_shards):
    mine = files[i::num_shards]
    jobs.append(dict(index=i, num_shards=num_shards, output=output, root=root, files=mine,
                     settings=settings, label_map=label_map,
                     labels={f: labels[f] for f in mine if f in labels},
                     boxes={f: boxes[f] for f in mine if f in boxes}))
  if overwrite:
    for name in existing_outputs(output):
      fs.remove(fs.join(output, name))
  foreign = foreign_shards(output, jobs)
  if foreign:
    raise PrepareError(f"{output} holds shards of another prepare job ({', '.join(foreign[:3])}"
                       f"{', ...' if len(foreign) > 3 else ''}); use another --output, or "
                       "--overwrite to replace them")
  fs.makedirs(output)
  summaries, todo = [], []
  for job in jobs:
    path, done_path = _shard_paths(output, job["index"], num_shards)
    if fs.exists(done_path) and fs.exists(path):
      summaries.append(json.loads(fs.read_text(done_path)))
    else:
      todo.append(job)
  bar = None if quiet else _progress(sum(len(j["files"]) for j in todo))
  workers = workers or os.cpu_count() or 1
  if todo:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx) as pool:
      for summary in pool.map(write_shard, todo):
        summaries.append(summary)
        if bar is not None:
          bar.update(len(summary["files"]))
  if bar is not None:
    bar.close()
  summaries.sort(key=lambda s: s["shard"])
  skipped = [s for sm in summaries for s in sm["skipped"]]
  report = io.StringIO()
  csv.writer(report).writerows([["file", "reason"], *([s["file"], s["reason"]] for s in skipped)])
  fs.write_text(fs.join(output, REPORT), report.getvalue())
  manifest = {
      "format": "dmvr-sequence-example",
      "settings": settings.to_manifest(),
      # What the reader checks before slicing stored |STFT| windows.
      "spectrogram": settings.spectrogram and settings.spectrogram.to_manifest(),
      "labels": label_names,
      "num_files": len(files),
      "num_clip_files": sum(s["clip_files"] for s in summaries),
      "num_clips": sum(s["clips"] for s in summaries),
      "num_skipped": len(skipped),
      "shards": {s["shard"]: s["clips"] for s in summaries},
  }
  fs.write_text(fs.join(output, MANIFEST), json.dumps(manifest, indent=1))
  reasons = collections.Counter(s["reason"].split(":")[0] for s in skipped)
  if not quiet:
    detail = ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items()))
    print(f"prepared {manifest['num_clips']} clips from {manifest['num_clip_files']} of "
          f"{len(files)} files into {num_shards} shards in {output}; skipped "
          f"{len(skipped)}" + (f" ({detail}), see {fs.join(output, REPORT)}" if skipped else ""))
  return manifest
