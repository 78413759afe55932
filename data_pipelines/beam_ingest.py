"""Prepare as an Apache Beam pipeline: the same preparation on a distributed engine.

  avjax-prepare --input gs://b/videos --output gs://b/prepared --config=configs/avenet.py \\
      --runner=DataflowRunner --project=P --region=R --temp_location=gs://b/tmp \\
      --setup_file=./setup.py   # or --requirements_file / a custom container

The pipeline reuses data_pipelines.ingest's functions, one place for each:
`plan_units` (a long file -> time ranges), `unit_records` (decode clip by clip
-> serialized DMVR records) and `skip_reason`. A file any of whose units fails
goes to a side output with its reason (the first failing range's), and all of
its records are left out, as the local prepare does. It writes the same shards
(`clips-SSSSS-of-NNNNN.tfrecord`, records in another order), `manifest.json` and
`skipped.csv`. Beam is an optional extra (`pip install avjax[beam]`); the local
process pool stays the default.
"""
from __future__ import annotations

import csv
import json

import apache_beam as beam

from data_pipelines import fs
from data_pipelines import ingest

SKIPPED = "skipped"


class DecodeUnit(beam.DoFn):
  """A unit -> (file, record) for each clip; a failure -> the side output
  SKIPPED as (file, (range index, reason))."""

  def __init__(self, root, settings, label_map, labels, boxes):
    self._root, self._settings = root, settings
    self._label_map, self._labels, self._boxes = label_map, labels, boxes

  def process(self, unit):
    clips = beam.metrics.Metrics.counter("avjax", "clips")
    try:
      for record in ingest.unit_records(
          self._root, unit, self._settings, self._label_map,
          self._labels.get(unit.file, []), self._boxes.get(unit.file, [])):
        clips.inc()
        yield unit.file, record
    except Exception as e:  # noqa: BLE001 - a bad file is reported, never fatal
      beam.metrics.Metrics.counter("avjax", "failed_units").inc()
      yield beam.pvalue.TaggedOutput(SKIPPED, (unit.file, (unit.index, ingest.skip_reason(e))))


def _not_failed(file_record, failed):
  return file_record[0] not in failed


def _count_records(path: str) -> int:
  from data_pipelines import tfrecord
  return sum(1 for _ in tfrecord.read_records(path))


def write_summary(shards, failures, *, output, settings, files, label_names, time_range=None):
  """Writes skipped.csv and manifest.json once the shards are written."""
  skipped = [{"file": f, "reason": reason} for f, (_, reason) in sorted(failures)]
  ingest.write_report(output, skipped)
  counts = {fs.basename(p): _count_records(p) for p in sorted(shards)}
  manifest = ingest.manifest_of(settings, label_names, num_files=len(files),
                                     num_clip_files=len(files) - len(skipped),
                                     num_skipped=len(skipped), shards=counts)
  if time_range is not None:  # the clips' own start times say where each came from
    manifest["time_range"] = time_range.to_manifest()
  fs.write_text(fs.join(output, ingest.MANIFEST), json.dumps(manifest, indent=1))
  return manifest, skipped


def build(pipeline, input_path: str, output: str, *, settings, labels_csv=None, boxes_csv=None,
          num_shards: int | None = None, files_per_shard: int = 32,
          range_seconds: float | None = ingest.RANGE_SECONDS, time_range=None):
  """Adds the preparation to `pipeline`; returns the PCollection of its
  (manifest, skipped files)."""
  job = ingest.plan_job(input_path, labels_csv, boxes_csv, files_per_shard, num_shards)
  root, files = job["root"], job["files"]
  units = (pipeline
           | "Files" >> beam.Create(files)
           | "Plan" >> beam.FlatMap(ingest.plan_units, root, settings, range_seconds, time_range)
           | "Spread" >> beam.Reshuffle())
  decoded = units | "Decode" >> beam.ParDo(
      DecodeUnit(root, settings, job["label_map"], job["labels"], job["boxes"])
  ).with_outputs(SKIPPED, main="records")
  failures = decoded[SKIPPED] | "FirstFailure" >> beam.CombinePerKey(min)
  shards = (decoded.records
            | "DropFailedFiles" >> beam.Filter(_not_failed, failed=beam.pvalue.AsDict(failures))
            | "Records" >> beam.Values()
            | "Write" >> beam.io.WriteToTFRecord(
                fs.join(output, ingest.SHARD_PREFIX), file_name_suffix=".tfrecord",
                num_shards=job["num_shards"], shard_name_template="-SSSSS-of-NNNNN"))
  return (shards
          | "Shards" >> beam.combiners.ToList()
          | "Summary" >> beam.Map(write_summary, failures=beam.pvalue.AsList(failures),
                                  output=output, settings=settings, files=files,
                                  label_names=job["label_names"], time_range=time_range))


def run(input_path: str, output: str, *, beam_args: list[str], overwrite: bool = False,
        quiet: bool = False, workers: int | None = None, **kw) -> dict:
  """Runs the pipeline to completion with `beam_args` (--runner=... and its
  options); returns the manifest (read back from `output`)."""
  from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
  del workers  # the runner's options decide the parallelism
  ingest.claim_output(output, overwrite)
  options = PipelineOptions(beam_args)
  runner = None
  if options.view_as(StandardOptions).runner in ("DirectRunner", "direct"):
    # Beam's DirectRunner first tries Prism, whose binary it downloads at run time;
    # its own local runner (FnApiRunner, with --direct_num_workers and
    # --direct_running_mode) needs nothing from the network.
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    runner = FnApiRunner()
  with beam.Pipeline(runner=runner, options=options) as p:
    build(p, input_path, output, **kw)
  manifest = json.loads(fs.read_text(fs.join(output, ingest.MANIFEST)))
  if not quiet:
    with fs.open(fs.join(output, ingest.REPORT)) as f:
      skipped = list(csv.DictReader(f))
    print(ingest.describe(manifest, output, skipped))
  return manifest
