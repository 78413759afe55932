"""Benchmarks' own annotation files -> the labels and boxes CSVs avjax-prepare takes.

Each reader turns one public format into `Annotations`: labels and boxes keyed
by the video's path relative to the videos folder, and the annotated videos
that folder lacks (counted and named, never fatal).

- VGG-SS (`metadata/vggss.json` of hche11/Localizing-Visual-Sounds-the-Hard-Way):
  [{"file": "<ytid>_<start>", "class": ..., "bbox": [[x1, y1, x2, y2], ...]}].
  Coordinates in 0..1 are kept; larger ones are pixels of the video's own frame,
  whose size is read from the file.
- Flickr-SoundNet test set: one Pascal-style XML per clip (`<id>.xml`) whose
  `bbox` elements hold xmin, ymin, xmax, ymax in pixels of the 256 x 256 frame
  the annotators saw (the authors' test.py scales them by 224/256), optionally
  restricted to the ids of `flickr_test.csv`.

- AVE (`data/Annotations.txt` of YapengTian/AVE-ECCV18, or its trainSet.txt,
  valSet.txt, testSet.txt): `class&ytid&quality&start&end`, one audio-visual
  event per 10 s video; the class becomes a label that holds from start to end
  (seconds), so prepare labels only the clips inside the event. A row whose
  event is empty (start >= end) is counted and left out.

- UCF101 (`ucfTrainTestlist/`: `trainlist0K.txt` "Class/v_..._gGG_cCC.avi 1",
  `testlist0K.txt` "Class/v_....avi") and HMDB51 (`testTrainMulti_7030_splits/`:
  `<class>_test_split<K>.txt` "video.avi 1|2|0", 1 train, 2 test, 0 unused):
  the class is a label, and folds.csv holds one column per official split
  (`split1`..`split3`) saying train or test ("" where the split leaves a video
  out), for `config.evals.linear_probe` with `folds_csv`, `fold_column=splitK`
  and `test_fold=test`.

- ESC-50 (`meta/esc50.csv` of karolpiczak/ESC-50: filename, fold, target,
  category, esc10, src_file, take; the wavs in `audio/`): the category is the
  label, and folds.csv's `fold` column holds the official fold (1-5) for
  `config.evals.linear_probe` with `folds_csv` and `fold_column=fold` (5-fold
  cross-validation). The sounds have no pictures: prepare them with
  `--audio_only` and probe `modalities=audio`.

Boxes carry time -1: they hold for every clip of the video (both benchmarks
annotate one frame of a short clip).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import xml.etree.ElementTree as ET

from data_pipelines import decode, fs
from data_pipelines.ingest import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS  # what prepare reads

FLICKR_FRAME = 256
FORMATS = ("vggss", "flickr", "ave", "ucf101", "hmdb51", "esc50")


class AnnotationError(ValueError):
  """An annotation file that does not hold its format; the message names it."""


@dataclasses.dataclass
class Annotations:
  labels: dict[str, list] = dataclasses.field(default_factory=dict)
  boxes: dict[str, list[tuple[float, float, float, float, float]]] = dataclasses.field(
      default_factory=dict)
  # Annotated videos not in the folder, each once, in the order met (an ordered set).
  missing: dict[str, None] = dataclasses.field(default_factory=dict)
  # Labels: a bare label, or [label, start, end] for one that holds in that segment.
  empty: list[str] = dataclasses.field(default_factory=list)  # rows with nothing to label
  folds: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # file -> {split: fold}

  def video(self, index: dict[str, str], stem: str) -> str | None:
    """The video `stem` names (its path under the videos folder), or None,
    counted as missing, where the folder lacks it."""
    rel = index.get(stem)
    if rel is None:
      self.missing[stem] = None
    return rel


def video_index(videos: str, extensions=VIDEO_EXTENSIONS) -> dict[str, str]:
  """{stem: path relative to `videos`} of the media files under it (videos, or
  the `extensions` given)."""
  out = {}
  for rel in fs.walk_files(videos):
    stem, ext = rel.rsplit(".", 1) if "." in fs.basename(rel) else (rel, "")
    if f".{ext.lower()}" in extensions:
      out.setdefault(fs.basename(stem), rel)
  return out


def normalised_box(x1: float, y1: float, x2: float, y2: float, width: float,
                   height: float) -> tuple[float, float, float, float] | None:
  """Pixel corners -> (ymin, xmin, ymax, xmax) in 0..1, clipped to the frame;
  None for a box with no area."""
  clip = lambda v: min(max(v, 0.0), 1.0)
  ymin, ymax = sorted((clip(y1 / height), clip(y2 / height)))
  xmin, xmax = sorted((clip(x1 / width), clip(x2 / width)))
  return (ymin, xmin, ymax, xmax) if ymax > ymin and xmax > xmin else None


def read_vggss(json_path: str, videos: str) -> Annotations:
  try:
    entries = json.loads(fs.read_text(json_path))
    rows = [(e["file"], e["class"], [list(map(float, b)) for b in e["bbox"]]) for e in entries]
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise AnnotationError(f"{json_path}: not VGG-SS's format [{{file, class, bbox: "
                          f"[[x1, y1, x2, y2], ...]}}] ({type(e).__name__}: {e})") from None
  index, out = video_index(videos), Annotations()
  for stem, label, boxes in rows:
    rel = out.video(index, stem)
    if rel is None:
      continue
    out.labels[rel] = [label]
    size = (1.0, 1.0)
    if any(v > 1.0 for b in boxes for v in b):
      size = decode.probe_frame_size(fs.join(videos, rel))
      if size is None:
        raise AnnotationError(f"{fs.join(videos, rel)}: pixel boxes need its frame size, "
                              "and it has no readable video stream")
    for b in boxes:
      if len(b) != 4:
        raise AnnotationError(f"{json_path}: {stem}: a box must be [x1, y1, x2, y2], got {b}")
      box = normalised_box(*b, *size)
      if box is not None:
        out.boxes.setdefault(rel, []).append((*box, -1.0))
  return out


def _flickr_boxes(xml_path: str) -> list[tuple[float, float, float, float]]:
  try:
    root = ET.fromstring(fs.read_text(xml_path))
  except ET.ParseError as e:
    raise AnnotationError(f"{xml_path}: not XML ({e})") from None
  boxes = []
  for bbox in root.iter("bbox"):
    values = {c.tag: c.text for c in bbox}
    try:
      corners = [float(values[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
    except (KeyError, TypeError, ValueError):
      raise AnnotationError(f"{xml_path}: a bbox without numeric xmin, ymin, xmax, ymax") from None
    box = normalised_box(*corners, FLICKR_FRAME, FLICKR_FRAME)
    if box is not None:
      boxes.append(box)
  return boxes


def read_flickr(xml_dir: str, videos: str, ids_csv: str | None = None) -> Annotations:
  names = [n for n in fs.listdir(xml_dir) if n.endswith(".xml")]
  ids = sorted(n[:-4] for n in names)
  if ids_csv:
    with fs.open(ids_csv, "r") as f:
      wanted = [r[0].strip() for r in csv.reader(f) if r and r[0].strip()]
    absent = sorted(set(wanted) - set(ids))
    if absent:
      raise AnnotationError(f"{xml_dir}: no annotation for {len(absent)} id(s) of {ids_csv}, "
                            f"e.g. {absent[0]}")
    ids = wanted
  if not ids:
    raise AnnotationError(f"{xml_dir}: no .xml annotation files")
  index, out = video_index(videos), Annotations()
  for stem in ids:
    rel = out.video(index, stem)
    if rel is None:
      continue
    boxes = _flickr_boxes(fs.join(xml_dir, f"{stem}.xml"))
    out.boxes[rel] = [(*b, -1.0) for b in boxes]
  return out


def read_ave(path: str, videos: str) -> Annotations:
  index, out = video_index(videos), Annotations()
  for lineno, line in enumerate(fs.read_text(path).splitlines(), 1):
    if not line.strip() or line.startswith("Category&"):  # some copies carry a header
      continue
    parts = line.split("&")
    try:
      label, ytid, _, start, end = parts[0], parts[1], parts[2], float(parts[3]), float(parts[4])
    except (IndexError, ValueError):
      raise AnnotationError(f"{path}:{lineno}: expected 'class&ytid&quality&start&end', "
                            f"got {line!r}") from None
    rel = out.video(index, ytid)
    if rel is not None and not 0 <= start < end:
      out.empty.append(ytid)
    elif rel is not None:
      out.labels.setdefault(rel, []).append([label, start, end])
  return out


def _split_lines(path: str) -> list[list[str]]:
  return [line.split() for line in fs.read_text(path).splitlines() if line.strip()]


def _add_split_member(out: Annotations, index: dict, name: str, label: str, split: str,
                      fold: str) -> None:
  stem = fs.basename(name).rsplit(".", 1)[0]
  rel = out.video(index, stem)
  if rel is None:
    return
  out.labels[rel] = [label]
  out.folds.setdefault(rel, {})[split] = fold


def read_ucf101(folder: str, videos: str) -> Annotations:
  names = set(fs.listdir(folder))
  lists = sorted(n for n in names if n.startswith(("trainlist", "testlist")) and n.endswith(".txt"))
  if not lists:
    raise AnnotationError(f"{folder}: no trainlist0K.txt or testlist0K.txt (ucfTrainTestlist)")
  index, out = video_index(videos), Annotations()
  for name in lists:
    fold = "train" if name.startswith("train") else "test"
    split = f"split{int(name[-6:-4])}"
    for lineno, parts in enumerate(_split_lines(fs.join(folder, name)), 1):
      if "/" not in parts[0]:
        raise AnnotationError(f"{fs.join(folder, name)}:{lineno}: expected 'Class/video.avi', "
                              f"got {parts[0]!r}")
      _add_split_member(out, index, parts[0], parts[0].split("/")[0], split, fold)
  return out


def read_hmdb51(folder: str, videos: str) -> Annotations:
  lists = sorted(n for n in fs.listdir(folder) if "_test_split" in n and n.endswith(".txt"))
  if not lists:
    raise AnnotationError(f"{folder}: no <class>_test_split<K>.txt files (testTrainMulti_7030_splits)")
  index, out = video_index(videos), Annotations()
  for name in lists:
    label, split_k = name[:-4].rsplit("_test_split", 1)
    for lineno, parts in enumerate(_split_lines(fs.join(folder, name)), 1):
      if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
        raise AnnotationError(f"{fs.join(folder, name)}:{lineno}: expected 'video.avi 0|1|2', "
                              f"got {' '.join(parts)!r}")
      fold = {"1": "train", "2": "test", "0": ""}[parts[1]]
      _add_split_member(out, index, parts[0], label, f"split{split_k}", fold)
  return out


ESC50_COLUMNS = ("filename", "fold", "category")


def read_esc50(meta_csv: str, audio: str) -> Annotations:
  text = fs.read_text(meta_csv)
  rows = list(csv.DictReader(io.StringIO(text)))
  if not rows or set(ESC50_COLUMNS) - set(rows[0]):
    raise AnnotationError(f"{meta_csv}: needs columns {', '.join(ESC50_COLUMNS)} and a row "
                          "(ESC-50's meta/esc50.csv)")
  index, out = video_index(audio, AUDIO_EXTENSIONS), Annotations()
  for lineno, r in enumerate(rows, 2):
    if not r["fold"].strip().isdigit():
      raise AnnotationError(f"{meta_csv}:{lineno}: fold must be a number, got {r['fold']!r}")
    rel = out.video(index, fs.basename(r["filename"]).rsplit(".", 1)[0])
    if rel is not None:
      out.labels[rel] = [r["category"].strip()]
      out.folds[rel] = {"fold": r["fold"].strip()}
  return out


def folds_csv(ann: Annotations) -> str:
  """`filename,split1,...` rows: each video's fold in each official split."""
  splits = sorted({s for f in ann.folds.values() for s in f})
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(["filename", *splits])
  w.writerows([rel, *(f.get(s, "") for s in splits)] for rel, f in sorted(ann.folds.items()))
  return out.getvalue()


def labels_csv(ann: Annotations) -> str:
  """`file,label[,start,end]` rows (data_pipelines.ingest.read_labels)."""
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(["file", "label", "start", "end"])
  for rel, labels in sorted(ann.labels.items()):
    bare = [l for l in labels if isinstance(l, str)]
    if bare:
      w.writerow([rel, ";".join(bare), "", ""])
    w.writerows([rel, l[0], f"{l[1]:g}", f"{l[2]:g}"] for l in labels if not isinstance(l, str))
  return out.getvalue()


def boxes_csv(ann: Annotations) -> str:
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(["file", "ymin", "xmin", "ymax", "xmax", "time"])
  for rel, boxes in sorted(ann.boxes.items()):
    w.writerows([rel, *(f"{v:.6f}" for v in b[:4]), f"{b[4]:g}"] for b in boxes)
  return out.getvalue()
