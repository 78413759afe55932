"""Input pipeline throughput: examples per second per CPU core.

  python benchmarks/pipeline.py [--scale paper|tiny|both] [--batches N] [--long_clips]

Measures the full training reader (parse, window choice, JPEG decode + crop and
the augmentation draws, |STFT| windows, batching; flip, colour jitter,
normalisation and the log of the spectrograms run in the jitted step, see
avjax/step_inputs.py) on the embedded default
dataset's generator (a 200-clip split), prepared at each scale's settings with
the stored |STFT|: as configured (config.data.examples_per_clip pairs per record
read), with one pair per record, and computing the float64 STFT from the waveform
(shards without |STFT|). For reference it also times, in the same process, a
plain tf.data map of JPEG decode + crop + tf.signal.stft over the same records,
and then each stage alone to say what dominates. With --spans it adds the
reader with config.data.records="spans" (avjax_cpu/spans.py: local shards read by
byte span) beside TFRecordDataset's reading. Beside each rate it prints the
process's CPU time per example and the cores it kept busy, and how much of the
configured reader's CPU time its stages' sum leaves out. `--long_clips` adds the
paper-scale reader and reference on 10 s clips (prepare's default length; the split
above has the default dataset's 1.4 s), 48 of them in four shards. --cpu_process_settings
tunes glibc malloc first, as avjax_cpu/process.py does for cpu_kernels runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from avjax import input as input_lib  # noqa: E402
from configs import common  # noqa: E402
from data_pipelines import clip_ops, default_dataset, dmvr  # noqa: E402
from data_pipelines import reader as reader_lib  # noqa: E402
from data_pipelines import synthetic  # noqa: E402

BENCH_SPLIT = synthetic.SplitSpec("bench", 200, seed=7)
# prepare's default clip length (the bench split's clips are the default dataset's 1.4 s),
# in four shards so that the reader reads files side by side as on a real split.
LONG_SPLIT = synthetic.SplitSpec("bench_10s", 48, seed=7, seconds=10.0, files_per_shard=12)


@dataclasses.dataclass(frozen=True)
class Rate:
  """Examples per second, and the process's CPU time per example over the same
  span: with `cores_busy` near the core count the reader is bound by its work,
  well under it by waiting (a serial stage, too little parallelism)."""
  examples_per_s: float
  cpu_us_per_example: float
  cores_busy: float


def rate(ds, batches: int, batch_size: int, warmup: int = 3) -> Rate:
  it = iter(ds)
  for _ in range(warmup):  # thread pools, autotune, file cache
    next(it)
  t, cpu = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(it)
  wall, cpu = time.perf_counter() - t, time.process_time() - cpu
  n = batches * batch_size
  return Rate(n / wall, cpu / n * 1e6, cpu / wall)


def reference_map(files, spec: reader_lib.ReaderSpec) -> tf.data.Dataset:
  """The naive pipeline: parse, decode one JPEG, crop, float32 STFT of 1 s."""
  aspec = spec.spectrogram

  def fn(r):
    x = dmvr.parse(r, default_fps=25.0, default_sample_rate=aspec.sample_rate)
    image = tf.image.random_crop(tf.io.decode_jpeg(x["jpeg_frames"][0]), [spec.crop, spec.crop, 3])
    stft = tf.signal.stft(x["waveform"][:aspec.num_samples], aspec.win_length,
                          aspec.hop_length, aspec.n_fft)
    return tf.cast(image, tf.float32) / 255.0, tf.math.log(tf.abs(stft) + 1e-5)

  return tf.data.TFRecordDataset(files).repeat().map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def one_thread_cost(ds: tf.data.Dataset, n: int) -> float:
  """Seconds per element of `ds` on one tf.data thread, after a warm-up."""
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  it = iter(ds.with_options(options))
  for _ in range(32):
    next(it)
  t = time.perf_counter()
  for _ in range(n):
    next(it)
  return (time.perf_counter() - t) / n


PER_RECORD = ("read + CRC-check records", "parse SequenceExample")


def stage_rates(files, spec: reader_lib.ReaderSpec, n: int = 1500) -> tuple[dict, dict]:
  """Per-example cost of each stage, as the difference between one-thread tf.data
  pipelines that stop before and after it, on 64 records held in memory; reading
  the shards is timed alone. Per-record stages are shared by a record's pairs."""
  records = tf.data.Dataset.from_tensor_slices(
      [r.numpy() for r in tf.data.TFRecordDataset(files).take(64)]).cache().repeat()
  index = tf.data.Dataset.range(2**62)
  records = tf.data.Dataset.zip(index, records)

  def pipeline(spec, upto: str):
    parse = reader_lib.train_parse_fn(spec)

    def fn(i, r, upto=upto):
      x = parse(r)
      if upto == "parse":  # the decoded |STFT|, where the reader decodes it, must be made
        return x["magnitude"][0, 0] if "magnitude" in x else x["num_frames"]
      clip = clip_ops.clip_windows(x, i, 0, spec=spec, train=True)
      if upto == "windows":
        return clip["pos_audio"]
      if upto == "decode":
        return clip_ops.decode_for_batch(clip, spec=spec, train=True)["frames"]
      return {k: clip[k] for k in ("pos_audio", "pos_gain")}

    if upto != "spec":
      return records.map(fn)
    # Batched, as the reader does: per-op overhead would swamp a tiny spectrogram.
    return records.map(lambda i, r: fn(i, r, "spectrogram inputs")).batch(64).map(
        lambda b: clip_ops.add_spectrograms(b, spec, (("pos_audio", "pos_gain", "s"),),
                                            log_on_device=True)["stft_magnitude"])

  def cost_of(spec, upto):
    if upto != "spec":
      return one_thread_cost(pipeline(spec, upto), n)
    batches = max(4, n // 64)
    return one_thread_cost(pipeline(spec, "spec"), batches) / 64

  cost = {u: cost_of(spec, u) for u in ("parse", "windows", "decode", "spec")}
  base = one_thread_cost(records, n)
  k = spec.examples_per_clip
  stages = {PER_RECORD[0]: one_thread_cost(
                reader_lib.record_dataset(files, spec.records).repeat(), n) / k,
            PER_RECORD[1] + (" + decode |STFT|" if reader_lib.decodes_magnitude(spec) else ""):
                (cost["parse"] - base) / k,
            "choose windows (slice |STFT|)": cost["windows"] - cost["parse"],
            "JPEG decode + crop + draws": cost["decode"] - cost["windows"],
            "batch |STFT| (log on device)": cost["spec"] - cost["windows"]}
  computing = dataclasses.replace(spec, stored_spectrogram=False)
  alt = {u: cost_of(computing, u) for u in ("parse", "windows", "spec")}
  alternatives = {"read + CRC-check by span (records='spans')": one_thread_cost(
                      reader_lib.record_dataset(files, "spans").repeat(), n) / k,
                  "parse with the waveform": (alt["parse"] - base) / k,
                  "choose windows (slice waveform)": alt["windows"] - alt["parse"],
                  "float64 STFT": alt["spec"] - alt["windows"]}
  return stages, alternatives


def cost_text(r: Rate) -> str:
  return f"{r.cpu_us_per_example:6.0f} us CPU per example, {r.cores_busy:.2f} cores busy"


def prepared_split(config, split: synthetic.SplitSpec, batch: int):
  """(its shards, the reader spec the Reader settles on for them) of a generated
  split prepared at `config`'s settings."""
  root = default_dataset.ensure(input_lib.prepare_settings(config.data), splits=(split,))
  files = reader_lib.resolve_files(root, split.name)
  spec = reader_lib.Reader(files, spec=input_lib.reader_spec(config.data), batch_size=batch,
                           seed=0).spec
  return files, spec


def bench(scale: str, batches: int, spans: bool) -> None:
  config = common.base_config(model={"name": "avenet"}, losses={}, arg="tiny" if scale == "tiny" else None)
  batch = 64
  # A 200-clip split of its own: paper-scale shards of the whole default
  # dataset would take gigabytes for a benchmark that reads a few thousand examples.
  files, spec = prepared_split(config, BENCH_SPLIT, batch)
  cores = os.cpu_count() or 1
  print(f"\n== {scale} scale: frames {spec.crop}px from {spec.resize}px JPEGs, spectrogram "
        f"{spec.spectrogram.shape[0]}x{spec.spectrogram.shape[1]} at "
        f"{spec.spectrogram.sample_rate} Hz, batch {batch}, {cores} cores")
  assert spec.stored_spectrogram, "the bench split should carry the stored |STFT|"
  k = spec.examples_per_clip
  runs = {f"stored |STFT|, {k} pair(s) per record read (config)": spec}
  if spans:
    runs[f"stored |STFT|, {k} pair(s) per record read, records='spans'"] = dataclasses.replace(
        spec, records="spans")
  if k != 1:
    runs["stored |STFT|, 1 pair per record read"] = dataclasses.replace(spec, examples_per_clip=1)
  runs[f"STFT computed, {k} pair(s) per record read"] = dataclasses.replace(
      spec, stored_spectrogram=False)
  rates = {name: rate(reader_lib.train_dataset(files, spec=s, batch_size=batch, seed=0),
                      batches, batch) for name, s in runs.items()}
  ref = rate(reference_map(files, spec).batch(batch), batches, batch)
  width = max(map(len, rates)) + 15
  for name, r in rates.items():
    print(f"{'avjax reader, ' + name:{width}s}: {r.examples_per_s:8.0f} examples/s = "
          f"{r.examples_per_s / cores:7.0f} per core  ({r.examples_per_s / ref.examples_per_s:.2f} "
          f"x reference); {cost_text(r)}")
  print(f"{'reference tf.data map':{width}s}: {ref.examples_per_s:8.0f} examples/s = "
        f"{ref.examples_per_s / cores:7.0f} per core; {cost_text(ref)}")
  stages, alternatives = stage_rates(files, spec)
  if not spans:
    alternatives.pop(next(iter(alternatives)))
  total = sum(stages.values())
  print(f"one-thread cost per example, by stage (stored |STFT| path; reading and parsing "
        f"shared by a record's {spec.examples_per_clip} pair(s)):")
  for name, s in sorted(stages.items(), key=lambda kv: -kv[1]):
    print(f"  {name:40s} {s * 1e6:8.0f} us  ({100 * s / total:4.1f}%)")
  print(f"  {'sum':40s} {total * 1e6:8.0f} us = {1 / total:.0f} examples/s per core at best")
  print(f"dominated by: {max(stages, key=stages.get)}")
  configured = next(iter(rates.values()))
  outside = configured.cpu_us_per_example - total * 1e6
  print(f"the configured reader spent {configured.cpu_us_per_example:.0f} us of CPU per example, "
        f"{outside:.0f} us ({outside / configured.cpu_us_per_example:.0%}) more than its stages: "
        f"work between them (tf.data's element handoffs, slice and batch copies, pairing)")
  print("the alternatives (the span source, where asked; shards without |STFT|):")
  for name, s in alternatives.items():
    print(f"  {name:40s} {s * 1e6:8.0f} us")


def bench_long_clips(batches: int, spans: bool) -> None:
  """The paper-scale reader on 10 s clips (~7 MB records): per-record work (reading,
  CRC check, parsing) grows with the clip while a pair's does not."""
  config = common.base_config(model={"name": "avenet"}, losses={}, arg=None)
  files, spec = prepared_split(config, LONG_SPLIT, 64)
  size = sum(os.path.getsize(f) for f in files) / LONG_SPLIT.num_clips / 1e6
  cores = os.cpu_count() or 1
  print(f"\n== paper scale, {LONG_SPLIT.seconds:g} s clips ({LONG_SPLIT.num_clips} clips, "
        f"{size:.1f} MB per record, {len(files)} shards), batch 64, {cores} cores")
  k = spec.examples_per_clip
  runs = {f"avjax reader, {k} pair(s) per record read (config)": spec,
          "avjax reader, 1 pair per record read": dataclasses.replace(spec, examples_per_clip=1)}
  if spans:
    runs[f"avjax reader, {k} pair(s), records='spans'"] = dataclasses.replace(spec, records="spans")
  rates = {name: rate(reader_lib.train_dataset(files, spec=s, batch_size=64, seed=0), batches, 64)
           for name, s in runs.items()}
  rates["reference tf.data map"] = rate(reference_map(files, spec).batch(64), batches, 64)
  for name, r in rates.items():
    print(f"{name:50s}: {r.examples_per_s:8.0f} examples/s = {r.examples_per_s / cores:7.0f} per "
          f"core; {cost_text(r)}")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--scale", choices=["paper", "tiny", "both"], default="both")
  p.add_argument("--batches", type=int, default=60)
  p.add_argument("--long_clips", action="store_true",
                 help="also the paper-scale reader on a split of 10 s clips (generated once, "
                      "~340 MB)")
  p.add_argument("--spans", action="store_true",
                 help="also config.data.records='spans' (avjax_cpu; needs a C++ compiler)")
  p.add_argument("--cpu_process_settings", action="store_true",
                 help="glibc malloc as avjax_cpu/process.py tunes it for cpu_kernels runs")
  args = p.parse_args()
  tuned = False
  if args.cpu_process_settings:
    from avjax_cpu import process
    tuned = process.tune_allocator()
  print("malloc: " + ("one arena per core, no trimming (avjax_cpu/process.py)" if tuned
                      else "glibc defaults"))
  for scale in (["paper", "tiny"] if args.scale == "both" else [args.scale]):
    bench(scale, args.batches, args.spans)
  if args.long_clips:
    bench_long_clips(max(10, args.batches // 2), args.spans)


if __name__ == "__main__":
  main()
