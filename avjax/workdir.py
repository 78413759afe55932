"""A training workdir belongs to one job: a lock with a heartbeat, and the config
the job was started with.

The lock is WORKDIR/lock.json, written by process 0 of the job (the other hosts
of a multi-host job learn the outcome from it, see `hold`). It names its holder
(host, pid, start time) and is rewritten every `heartbeat_s` seconds. A second
job finds it and stops, naming the holder. A lock left by a killed job is taken
over, never deleted blindly: on the same host when its pid is gone, on another
host when its heartbeat is older than `stale_after_s`. The heartbeat also
notices a takeover (another job's token in the file), and the trainer then stops
instead of writing beside the other job.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid

from data_pipelines import fs

LOCK = "lock.json"
CONFIG = "config.json"
log = logging.getLogger("avjax")


class WorkdirError(ValueError):
  """The workdir is another job's, or holds another config."""


@dataclasses.dataclass
class Holder:
  host: str
  pid: int
  started: float
  heartbeat: float
  token: str

  def describe(self, now: float) -> str:
    started = datetime.datetime.fromtimestamp(self.started).isoformat(timespec="seconds")
    return (f"host {self.host} pid {self.pid}, started {started}, last heartbeat "
            f"{now - self.heartbeat:.0f} s ago")


def pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


def holder_alive(holder: Holder, *, now: float, stale_after_s: float) -> bool:
  """On this host the pid decides; elsewhere, the heartbeat's age."""
  if holder.host == socket.gethostname():
    return pid_alive(holder.pid)
  return now - holder.heartbeat < stale_after_s


class Lock:
  """The workdir lock of one job (see the module docstring)."""

  def __init__(self, workdir: str, *, heartbeat_s: float = 10.0, stale_after_s: float = 60.0,
               settle_s: float = 0.5):
    self.path = fs.join(workdir, LOCK)
    self.heartbeat_s, self.stale_after_s, self.settle_s = heartbeat_s, stale_after_s, settle_s
    now = time.time()
    self.me = Holder(socket.gethostname(), os.getpid(), now, now, uuid.uuid4().hex)
    self.lost: str | None = None  # set by the heartbeat when another job took over
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def read(self) -> Holder | None:
    try:
      return Holder(**json.loads(fs.read_text(self.path)))
    except FileNotFoundError:
      return None
    except (json.JSONDecodeError, TypeError, OSError) as e:
      raise WorkdirError(f"{self.path}: unreadable lock ({e}); if no job uses this workdir, "
                         "remove the file") from None

  def _write(self, holder: Holder, *, exclusive: bool) -> bool:
    data = json.dumps(dataclasses.asdict(holder))
    if fs.is_url(self.path):
      # Buckets have no exclusive create: a newcomer writes, and `acquire` reads
      # back after settling (as for a takeover); the heartbeat catches the rest.
      if exclusive and fs.exists(self.path):
        return False
      fs.write_text(self.path, data)
      return True
    if exclusive:
      try:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(fd, "w") as f:
        f.write(data)
      return True
    tmp = f"{self.path}.{holder.token}.tmp"
    with open(tmp, "w") as f:
      f.write(data)
    os.replace(tmp, self.path)  # atomic: readers see the old holder or the new
    return True

  def acquire(self) -> None:
    """Takes the lock or raises WorkdirError naming the job that holds it."""
    if self._write(self.me, exclusive=True):
      self._start_heartbeat()
      return
    holder = self.read()
    now = time.time()
    if holder is not None and holder_alive(holder, now=now, stale_after_s=self.stale_after_s):
      raise WorkdirError(f"{fs.dirname(self.path)} is in use by another job "
                         f"({holder.describe(now)}); use another --workdir or stop that job")
    # A dead job's lock: replace it, then make sure no other newcomer replaced ours.
    self._write(self.me, exclusive=False)
    time.sleep(self.settle_s)
    winner = self.read()
    if winner is None or winner.token != self.me.token:
      raise WorkdirError(f"{fs.dirname(self.path)}: another job took the workdir at the "
                         f"same time ({winner.describe(time.time()) if winner else 'gone'})")
    if holder is not None:
      log.warning("took over the workdir lock of a job that is gone (%s)", holder.describe(now))
    self._start_heartbeat()

  def _start_heartbeat(self) -> None:
    self._thread = threading.Thread(target=self._beat, daemon=True, name="workdir-heartbeat")
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_s):
      try:
        current = self.read()
      except WorkdirError as e:
        self.lost = str(e)
        return
      if current is None or current.token != self.me.token:
        self.lost = (f"{self.path}: another job took this workdir "
                     f"({current.describe(time.time()) if current else 'lock removed'})")
        return
      self.me.heartbeat = time.time()
      self._write(self.me, exclusive=False)

  def check(self) -> None:
    """Raises WorkdirError when the heartbeat found the workdir taken over."""
    if self.lost:
      raise WorkdirError(self.lost)

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    with contextlib.suppress(WorkdirError):
      current = self.read()
      if current is not None and current.token == self.me.token:
        fs.remove(self.path)


# Display-only keys: changing them between attempts changes no result.
DISPLAY_ONLY = ("progress_bar",)


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
  """Lines `key: old -> new` for every leaf that differs between two config dicts.

  Keys the old config did not have are not changes: a locked config cannot gain
  keys from the command line, so they come from a newer avjax's configs (a loss
  listed at weight 0, a mesh section), whose defaults keep the old behaviour.
  """
  out = []
  for k in sorted(set(old) - (set() if prefix else set(DISPLAY_ONLY))):
    a, b = old[k], new.get(k, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += config_changes(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k}: {a!r} -> {b!r}")
  return out


def check_config(workdir: str, config_json: str, *, changes_ok: bool) -> None:
  """Refuses a config unlike the one the workdir's job started with, unless
  `changes_ok`; then (or the first time) records `config_json`."""
  path = fs.join(workdir, CONFIG)
  if fs.exists(path):
    changes = config_changes(json.loads(fs.read_text(path)), json.loads(config_json))
    if changes and not changes_ok:
      shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
      raise WorkdirError(f"{workdir} was started with another config ({shown}); use another "
                         "--workdir, or --config_changes_ok to continue with this one")
    if changes:
      log.warning("%s: continuing with a changed config: %s", workdir, "; ".join(changes))
  fs.write_text(path, config_json)


def make_writable(workdir: str) -> None:
  """Creates `workdir` if needed and checks that this job can write there;
  WorkdirError, in one line naming it, where it is a file or cannot be written."""
  if fs.exists(workdir) and not fs.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir}: is a file, not a folder")
  probe = fs.join(workdir, f".write-check-{os.getpid()}")
  try:
    fs.makedirs(workdir)
    fs.write_text(probe, "")
    fs.remove(probe)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: cannot write there "
                       f"({e.strerror or type(e).__name__})") from None


def take(workdir: str, config_json: str, *, changes_ok: bool) -> Lock | None:
  """Makes `workdir` this job's: process 0 takes the lock and checks the config,
  and every host learns the outcome, so that no host of a refused job goes on.
  -> the lock on process 0 (release it when done), None elsewhere."""
  import jax
  from jax.experimental import multihost_utils
  import numpy as np
  lock, error = None, None
  if jax.process_index() == 0:
    lock = Lock(workdir)
    try:
      lock.acquire()
      check_config(workdir, config_json, changes_ok=changes_ok)
    except WorkdirError as e:
      error = e
      lock.release()  # only removes the file if this job had taken it
  if jax.process_count() > 1:
    ok = bool(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
    if not ok and error is None:
      raise WorkdirError(f"{workdir}: process 0 could not take the workdir (see its error)")
  if error is not None:
    raise error
  return lock
