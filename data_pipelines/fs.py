"""One filesystem layer for every path a user gives: local paths and URLs.

Videos, prepared shards, split globs, workdirs (config, lock, TensorBoard
events, metrics, pictures, checkpoints) and embedding inputs and outputs may all
be bucket URLs (`gs://bucket/...`), or any other scheme fsspec serves. This
module is fsspec (gcsfs for gs://); the other libraries are pointed at the same
storage:

- orbax (through etils.epath) and TensorStore read and write gs:// themselves;
- TensorFlow reads gs:// shards with its own GCS client (`tf_reads`), which is
  fast but whose endpoints are compiled in: it cannot be pointed at an emulator.
  With STORAGE_EMULATOR_HOST set (a local GCS emulator, as the tests use), the
  reader gives TensorFlow local copies of the shards instead (`cached_copy`), and
  orbax's epath and TensorStore are pointed at the emulator too
  (`point_libraries_at_emulator`);
- PyAV reads a remote video from a local temporary copy (`local_copy`).

Errors name the path or URL: FileNotFoundError("gs://b/x: not found"), and
StorageError("gs://b/x: cannot reach storage.googleapis.com:443 (...)") for storage
that cannot be reached or refuses access: said at once, instead of after a
minute of the client's retries.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import os
import posixpath
import shutil
import socket
import tempfile
import urllib.parse
import uuid
from typing import IO, Iterator

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def point_libraries_at_emulator() -> None:
  """With STORAGE_EMULATOR_HOST set, the libraries that can be told are told
  (call it before they are imported)."""
  host = os.environ.get(EMULATOR_ENV)
  if host:
    os.environ.setdefault("EPATH_USE_TF", "false")  # epath through gcsfs, which honours it
    os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", host)
    # gcsfs asks the gRPC control API whether a bucket is hierarchical; an HTTP
    # emulator cannot answer, and each bucket would wait a minute for it.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


point_libraries_at_emulator()


GCS_ENDPOINT = "https://storage.googleapis.com"
REACH_TIMEOUT_S = 10
CREDENTIALS_HINT = ("give credentials: `gcloud auth application-default login`, or "
                    "GOOGLE_APPLICATION_CREDENTIALS=key.json")


class StorageError(OSError):
  """The storage behind a URL cannot be reached, or refuses access."""


def is_url(path: str) -> bool:
  return "://" in str(path)


def _fs(path: str):
  import fsspec
  try:
    fs, p = fsspec.core.url_to_fs(str(path))
  except (ImportError, ValueError) as e:
    raise ValueError(f"{path}: no filesystem for this URL ({e})") from None
  if str(path).startswith(("gs://", "gcs://")):
    _check_reachable(path, os.environ.get(EMULATOR_ENV) or GCS_ENDPOINT)
  return fs, p


def _host_port(endpoint: str) -> tuple[str, int]:
  parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
  return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)


@functools.cache
def _unreachable(endpoint: str) -> str:
  """Why `endpoint` takes no TCP connection ("" when it does), asked once per
  process: a client's retries would spend a minute on what one connect says."""
  host, port = _host_port(endpoint)
  try:
    socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    return ""
  except OSError as e:
    return f"cannot reach {host}:{port} ({e.strerror or e})"


def _check_reachable(path: str, endpoint: str) -> None:
  reason = _unreachable(endpoint)
  if reason:
    where = f"; {EMULATOR_ENV}={endpoint}" if endpoint != GCS_ENDPOINT else ""
    raise StorageError(f"{path}: {reason}{where}")


def _storage_reason(e: BaseException) -> str | None:
  """A storage client's failure in a few words, or None for other errors."""
  module = type(e).__module__
  if module.startswith(("gcsfs", "google.auth")):
    code = getattr(e, "code", None)
    if code in (401, 403) or module.startswith("google.auth"):
      return f"access denied ({_brief(e)}); {CREDENTIALS_HINT}"
    return f"storage error ({_brief(e)})"
  if module.startswith("aiohttp"):
    return f"cannot reach the storage ({_brief(e)})"
  return None


def _brief(e: BaseException) -> str:
  return " ".join(str(getattr(e, "message", "") or e).split())[:300] or type(e).__name__


@contextlib.contextmanager
def _storage_errors(path: str) -> Iterator[None]:
  """A storage client's errors inside, as StorageError naming `path`."""
  try:
    yield
  except Exception as e:
    reason = _storage_reason(e)
    if reason is None:
      raise
    raise StorageError(f"{path}: {reason}") from e


def _remote_errors(fn):
  """`fn(path, ...)`'s storage client errors as StorageError naming the path."""
  @functools.wraps(fn)
  def wrapped(path, *args, **kwargs):
    with _storage_errors(path):
      return fn(path, *args, **kwargs)
  return wrapped


def _url(fs, path: str, like: str) -> str:
  """fsspec's protocol-less path back to a URL of `like`'s scheme."""
  if not is_url(like):
    return path
  return f"{like.split('://', 1)[0]}://{path.split('://', 1)[-1]}"


def join(base: str, *parts: str) -> str:
  return posixpath.join(str(base), *parts) if is_url(base) else os.path.join(base, *parts)


def dirname(path: str) -> str:
  return posixpath.dirname(str(path).rstrip("/")) if is_url(path) else os.path.dirname(path)


def basename(path: str) -> str:
  return posixpath.basename(str(path).rstrip("/"))


def absolute(path: str) -> str:
  return str(path) if is_url(path) else os.path.abspath(path)


@_remote_errors
def exists(path: str) -> bool:
  if not is_url(path):
    return os.path.exists(path)
  fs, p = _fs(path)
  return fs.exists(p)


@_remote_errors
def isdir(path: str) -> bool:
  if not is_url(path):
    return os.path.isdir(path)
  fs, p = _fs(path)
  return fs.isdir(p)


@_remote_errors
def listdir(path: str) -> list[str]:
  """Names (not paths) in a folder; FileNotFoundError naming it if there is none."""
  if not is_url(path):
    try:
      return sorted(os.listdir(path))
    except FileNotFoundError:
      raise FileNotFoundError(f"{path}: not found") from None
  fs, p = _fs(path)
  if not fs.isdir(p):
    raise FileNotFoundError(f"{path}: not found")
  return sorted(basename(e) for e in fs.ls(p, detail=False) if e.rstrip("/") != p.rstrip("/"))


@_remote_errors
def walk_files(root: str) -> list[str]:
  """Every file under `root`, as paths relative to it, sorted."""
  if not is_url(root):
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, _, names in os.walk(root) for n in names)
  fs, p = _fs(root)
  return sorted(posixpath.relpath(f, p) for f in fs.find(p))


@_remote_errors
def glob(pattern: str) -> list[str]:
  if not is_url(pattern):
    import glob as glob_lib
    return sorted(glob_lib.glob(pattern))
  fs, p = _fs(pattern)
  return sorted(_url(fs, f, pattern) for f in fs.glob(p))


@_remote_errors
def makedirs(path: str) -> None:
  if not is_url(path):
    os.makedirs(path, exist_ok=True)
  else:  # buckets have no folders; check the bucket exists, for an error that names it
    fs, p = _fs(path)
    bucket = p.split("/", 1)[0]
    if not fs.exists(bucket):
      raise FileNotFoundError(f"{path}: bucket {bucket!r} does not exist")


@_remote_errors
def getsize(path: str) -> int:
  if not is_url(path):
    return os.path.getsize(path)
  fs, p = _fs(path)
  return fs.size(p)


@_remote_errors
def open(path: str, mode: str = "r") -> IO:  # noqa: A001 (the layer's open)
  """A file object at `path`, local or remote (use it in `with`); FileNotFoundError
  names a missing one. A remote file being written appears when it is closed."""
  try:
    if not is_url(path):
      return builtins.open(path, mode)
    fs, p = _fs(path)
    return fs.open(p, mode)
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: not found") from None


def read_text(path: str) -> str:
  with open(path) as f:
    return f.read()


def write_text(path: str, text: str) -> None:
  """Written whole: a reader sees the old file or the new, never half of one
  (a local temporary renamed; a remote object is replaced in one upload)."""
  if is_url(path):
    with open(path, "w") as f:
      f.write(text)
    return
  tmp = f"{path}.{uuid.uuid4().hex}.tmp"
  with builtins.open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


@_remote_errors
def remove(path: str) -> None:
  if not is_url(path):
    os.remove(path)
  else:
    fs, p = _fs(path)
    fs.rm(p)


@_remote_errors
def rmtree(path: str) -> None:
  if not is_url(path):
    shutil.rmtree(path)
  else:
    fs, p = _fs(path)
    fs.rm(p, recursive=True)


@_remote_errors
def rename(src: str, dst: str) -> None:
  """Moves a file or folder (remote: copied, then the source removed)."""
  if not is_url(src) and not is_url(dst):
    os.replace(src, dst)
    return
  fs, p = _fs(src)
  _, q = _fs(dst)
  fs.mv(p, q, recursive=fs.isdir(p))


def put(local: str, path: str) -> None:
  """Copies a local file to `path` (local: renamed into place)."""
  if not is_url(path):
    os.replace(local, path)
    return
  with _storage_errors(path):
    fs, p = _fs(path)
    fs.put_file(local, p)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """A local path holding `path`'s bytes (itself when local), removed afterwards:
  for libraries that read only local files (PyAV's demuxers)."""
  if not is_url(path):
    yield path
    return
  with tempfile.TemporaryDirectory(prefix="avjax-") as tmp:
    local = os.path.join(tmp, basename(path))
    with _storage_errors(path):
      fs, p = _fs(path)
      if not fs.exists(p):
        raise FileNotFoundError(f"{path}: not found")
      fs.get_file(p, local)
    yield local


def _cache_folder(url: str) -> str:
  """The local cache folder for copies of what lies under `url`'s folder."""
  import hashlib
  root = os.environ.get("AVJAX_CACHE") or os.path.join(tempfile.gettempdir(),
                                                       f"avjax-cache-{os.getuid()}")
  return os.path.join(root, hashlib.sha1(url.encode()).hexdigest()[:16])


def _fetch(path: str, local: str) -> None:
  """Copy remote `path` to `local` unless a copy of the same size is there."""
  if os.path.exists(local) and os.path.getsize(local) == getsize(path):
    return
  os.makedirs(os.path.dirname(local), exist_ok=True)
  fs, p = _fs(path)
  tmp = f"{local}.{uuid.uuid4().hex}.tmp"
  fs.get_file(p, tmp)
  os.replace(tmp, local)


@_remote_errors
def cached_copy(path: str) -> str:
  """A local copy of a remote file, kept in a cache folder ($AVJAX_CACHE, else
  the temporary folder) and reused while its size matches: for TensorFlow's
  readers where its filesystems cannot reach the storage."""
  if not is_url(path):
    return path
  local = os.path.join(_cache_folder(dirname(path)), basename(path))
  _fetch(path, local)
  return local


@_remote_errors
def cached_tree(folder: str) -> str:
  """A local copy of a remote folder, its layout kept, under the same cache as
  `cached_copy` and reused file by file while sizes match (a local folder is
  itself); FileNotFoundError naming the folder if it holds no file."""
  if not is_url(folder):
    return folder
  files = walk_files(folder) if exists(folder) else []
  if not files:
    raise FileNotFoundError(f"{folder}: not found")
  local = os.path.join(_cache_folder(folder), basename(folder.rstrip("/")))
  for rel in files:
    _fetch(join(folder, rel), os.path.join(local, rel))
  return local


def tf_reads(path: str) -> bool:
  """Whether TensorFlow's own filesystems serve `path`: local files, and gs://
  unless a GCS emulator is configured (TF's GCS endpoints cannot be changed)."""
  if not is_url(path):
    return True
  return str(path).startswith("gs://") and not os.environ.get(EMULATOR_ENV)
