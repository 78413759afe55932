"""The reader's one seam to its records, in the manner of DMVR's `Source`:
`config.data.records` names a source, and the reader asks it for each shard's
items (in file order) and for the serialized record of an item.

- "tfrecord" (the default): tf.data.TFRecordDataset, on every file system
  TensorFlow reaches (local, gs://). Items are the records themselves, so the
  shuffle buffer holds records.
- "spans": the opt-in avjax_cpu package (avjax_cpu/spans.py). Items are local
  shards' byte spans, so the buffer holds spans and a record is read when it
  leaves it. Shards it cannot serve (in a bucket) keep TFRecordDataset, said once
  in the log.

Both give the same records in the same order (avjax_cpu/tests/test_spans.py).
"""
from __future__ import annotations

import functools
import importlib
import logging
from typing import Protocol, Sequence

import tensorflow as tf

# name -> "module:class" of the source, imported only when chosen, so that the
# core never loads an opt-in package it was not asked for. A class that cannot
# work here raises RuntimeError, in one line saying why, when it is built.
SOURCES = {"tfrecord": "data_pipelines.records:TFRecordSource",
           "spans": "avjax_cpu.spans:SpanSource"}


class Source(Protocol):
  def serves(self, files: Sequence[str]) -> str:
    """"" where it reads these files, else why not."""

  def items(self, path) -> tf.data.Dataset:
    """A shard's items in file order (`path`: a string tensor)."""

  def read(self, item) -> tf.Tensor:
    """The serialized record of an item."""


class TFRecordSource:
  """tf.data.TFRecordDataset's reading."""
  opens_in_parallel = True  # opening a file reads ahead: worth a thread per open file

  def serves(self, files) -> str:
    del files
    return ""

  def items(self, path) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(path)

  def read(self, item):
    return item


TFRECORD = TFRecordSource()


def _load(name: str) -> Source:
  if name not in SOURCES:
    raise ValueError(f"config.data.records: unknown source {name!r}; known: {sorted(SOURCES)}")
  module, _, attr = SOURCES[name].partition(":")
  try:
    return getattr(importlib.import_module(module), attr)()
  except (ImportError, RuntimeError) as e:
    raise ValueError(f"config.data.records={name!r}: {e}") from None


def source(name: str, files: Sequence[str]) -> Source:
  """The source `name` for these files: itself where it serves them, else the
  TFRecord one (logged once, with why)."""
  chosen = _load(name)
  why = chosen.serves(files)
  if why:
    _say_once(f"config.data.records={name!r} cannot read {files[0]} ({why}); reading with "
              "TFRecordDataset")
    return TFRECORD
  return chosen


@functools.cache
def _say_once(message: str) -> None:
  logging.getLogger(__name__).warning(message)


def skip_keys(files: Sequence[str], skip: dict) -> list[int]:
  """`skip` (file -> record positions) as sorted keys of `file_items`: the file's
  index in `files`, then the position."""
  return sorted((i << 32) | p for i, f in enumerate(files) for p in skip.get(f, ()))


def file_items(src: Source, path, file_index, keys: Sequence[int]) -> tf.data.Dataset:
  """A shard's items in file order, less those whose key (`skip_keys`) is in
  `keys`: records left out before anything downstream numbers them."""
  items = src.items(path)
  if not keys:
    return items
  table = tf.constant(list(keys), tf.int64)

  def keep(position, item):
    del item
    key = tf.cast(file_index, tf.int64) * (1 << 32) + position
    j = tf.minimum(tf.searchsorted(table, key[None])[0], len(keys) - 1)
    return table[j] != key

  return items.enumerate().filter(keep).map(lambda position, item: item)


def record_dataset(files: Sequence[str], src: Source = TFRECORD,
                   skip: dict | None = None) -> tf.data.Dataset:
  """Serialized records of `files`, in order, less the positions `skip` lists
  per file."""
  keys = skip_keys(files, skip or {})
  if isinstance(src, TFRecordSource) and not keys:
    return tf.data.TFRecordDataset(list(files))
  paths = tf.data.Dataset.from_tensor_slices((list(files), tf.range(len(files), dtype=tf.int64)))
  # An item may be a tuple (a span), which map would spread over arguments.
  return paths.flat_map(lambda f, i: file_items(src, f, i, keys)).map(
      lambda *item: src.read(item[0] if len(item) == 1 else item),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
