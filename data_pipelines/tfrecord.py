"""TFRecord framing in Python, without TensorFlow: each record is its length
(uint64 LE), the length's masked CRC32C, the bytes, and their masked CRC32C.

Prepare workers write shards with it (they load no TensorFlow), and the reader
reads with it from storage TensorFlow's filesystems cannot reach (data_pipelines.fs).
"""
from __future__ import annotations

from typing import BinaryIO, Iterator

from data_pipelines import fs


class DataError(Exception):
  """Shards that cannot be read as prepared: one line naming the file."""


def masked_crc32c(data: bytes) -> int:
  import google_crc32c
  crc = int.from_bytes(google_crc32c.Checksum(data).digest(), "big")
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_record(f: BinaryIO, data: bytes) -> None:
  length = len(data).to_bytes(8, "little")
  f.write(length + masked_crc32c(length).to_bytes(4, "little"))
  f.write(data)
  f.write(masked_crc32c(data).to_bytes(4, "little"))


def read_records(path: str) -> Iterator[bytes]:
  """A TFRecord file's records, read through data_pipelines.fs with TFRecord's
  CRC checks; DataError names the file and record that is truncated or corrupted."""
  with fs.open(path, "rb") as f:
    index = 0
    while header := f.read(12):
      length = int.from_bytes(header[:8], "little")
      data, footer = f.read(length), f.read(4)
      if len(header) < 12 or len(data) < length or len(footer) < 4:
        raise DataError(f"{path}: record {index}: truncated")
      if (masked_crc32c(header[:8]) != int.from_bytes(header[8:], "little")
          or masked_crc32c(data) != int.from_bytes(footer, "little")):
        raise DataError(f"{path}: record {index}: corrupted (CRC mismatch)")
      yield data
      index += 1
