"""avjax-import: a benchmark's annotation files -> labels.csv and boxes.csv for avjax-prepare.

  avjax-import vggss --annotations=metadata/vggss.json --videos=/data/vggss --output=/data/vggss_csv
  avjax-import flickr --annotations=/data/flickr/Annotations --videos=/data/flickr/videos \\
      --output=/data/flickr_csv [--ids=metadata/flickr_test.csv]
  avjax-import ave --annotations=data/testSet.txt --videos=/data/AVE --output=/data/ave_test_csv
  avjax-import ucf101 --annotations=ucfTrainTestlist --videos=/data/UCF-101 --output=/data/ucf_csv
  avjax-import hmdb51 --annotations=testTrainMulti_7030_splits --videos=/data/hmdb51 --output=...
  avjax-import esc50 --annotations=ESC-50/meta/esc50.csv --videos=ESC-50/audio --output=/data/esc_csv

Writes OUTPUT/labels.csv (where the format has classes), OUTPUT/folds.csv (the
official splits, where it has them), OUTPUT/boxes.csv and
OUTPUT/missing.txt: the annotated videos that --videos lacks, counted, named, and
not an error. The formats are described in data_pipelines/annotations.py.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from data_pipelines import annotations, fs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("format", choices=annotations.FORMATS)
  p.add_argument("--annotations", required=True,
                 help="vggss: the JSON file; flickr: the folder of XML files; "
                 "ave: Annotations.txt or a split's list; ucf101, hmdb51: the split lists' folder; "
                 "esc50: meta/esc50.csv")
  p.add_argument("--videos", required=True,
                 help="the folder holding the videos, or ESC-50's sounds (local or gs://)")
  p.add_argument("--output", required=True, help="folder for labels.csv, boxes.csv, missing.txt")
  p.add_argument("--ids", default=None, help="flickr: a CSV of the clip ids to import")
  p.add_argument("--verbose", action="store_true", help="on an error, show the traceback")
  return p.parse_args(argv)


def read(args: argparse.Namespace) -> annotations.Annotations:
  for flag in ("annotations", "videos"):
    if not fs.exists(getattr(args, flag)):
      raise FileNotFoundError(f"--{flag}={getattr(args, flag)}: not found")
  if args.format == "vggss":
    return annotations.read_vggss(args.annotations, args.videos)
  if args.format == "ave":
    return annotations.read_ave(args.annotations, args.videos)
  if args.format == "ucf101":
    return annotations.read_ucf101(args.annotations, args.videos)
  if args.format == "hmdb51":
    return annotations.read_hmdb51(args.annotations, args.videos)
  if args.format == "esc50":
    return annotations.read_esc50(args.annotations, args.videos)
  return annotations.read_flickr(args.annotations, args.videos, args.ids)


def main(args: argparse.Namespace) -> None:
  ann = read(args)
  fs.makedirs(args.output)
  written = []
  if ann.labels:
    fs.write_text(fs.join(args.output, "labels.csv"), annotations.labels_csv(ann))
    written.append("labels.csv")
  if ann.folds:
    fs.write_text(fs.join(args.output, "folds.csv"), annotations.folds_csv(ann))
    written.append("folds.csv")
  fs.write_text(fs.join(args.output, "boxes.csv"), annotations.boxes_csv(ann))
  fs.write_text(fs.join(args.output, "missing.txt"), "".join(f"{m}\n" for m in ann.missing))
  found = len(set(ann.labels) | set(ann.boxes))
  print(f"imported {found} video(s), {sum(map(len, ann.boxes.values()))} box(es) into "
        f"{args.output} ({', '.join(written + ['boxes.csv'])}); {len(ann.missing)} annotated "
        f"video(s) not in {args.videos}" + (", listed in missing.txt" if ann.missing else "")
        + (f"; {len(ann.empty)} annotation(s) with an empty segment left out" if ann.empty else ""))


def run(argv: Sequence[str] | None = None) -> None:
  from avjax import cli
  cli.run_argparse("avjax-import", parse_args, main, argv)


if __name__ == "__main__":
  run()
