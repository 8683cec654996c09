"""Operational safety of a run in its workdir: one process at a time, a clean stop on Ctrl-C,
and a wall clock that survives resumes.

* `workdir_lock`: two processes on one workdir would train the same phases and overwrite each
  other's checkpoints. The lock is an `fcntl.flock` on `<workdir>/LOCK`, which the kernel drops
  when its holder dies (even by kill -9), so a stale lock is simply taken over; the file holds
  the holder's pid and host for the refusal message. In a multi-process JAX run only the
  primary process (index 0) writes, so only it takes the lock.
* `stop_after_epoch`: the first Ctrl-C asks the trainer to stop after the epoch in progress
  has been checkpointed (`Stopped` is raised then); a second one interrupts at once.
* `PhaseClock`: seconds spent per phase, kept in `<workdir>/run_state.json` and updated every
  epoch, so report.md's wall time counts every invocation of a resumed study.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import threading
import time

from lwi_jax.runtime import io_utils

LOCK_FILE = "LOCK"
STATE_FILE = "run_state.json"


class WorkdirLocked(RuntimeError):
  """Another live process holds the workdir."""


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      return f.read().strip() or "unknown process"
  except OSError:
    return "unknown process"


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


@contextlib.contextmanager
def workdir_lock(workdir: str, primary: bool = True, log=print):
  """Holds `<workdir>/LOCK` for the duration (no-op when not `primary`).

  Raises WorkdirLocked naming the holder's pid when another live process has it.
  """
  if not primary:
    yield None
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      raise WorkdirLocked(f"workdir {workdir} is in use by {_holder(path)}; two runs on one "
                          "workdir would overwrite each other's checkpoints") from None
    # The previous holder may have unlinked the file between our open and our flock: then we
    # hold a lock on a file nobody else sees, and must start over on the new one.
    try:
      same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
      same = False
    if same:
      break
    os.close(fd)
  previous = _holder(path)
  pid_text = previous.split("pid ")[-1].split(" ")[0] if "pid " in previous else ""
  if pid_text.isdigit() and int(pid_text) != os.getpid():
    alive = _pid_alive(int(pid_text))
    log(f"taking over the lock of {workdir} left by {previous}"
        + ("" if alive else " (no longer running)"))
  os.ftruncate(fd, 0)
  os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
  try:
    yield path
  finally:
    with contextlib.suppress(OSError):
      os.unlink(path)
    os.close(fd)


class Stopped(KeyboardInterrupt):
  """Raised after the epoch in progress was checkpointed, because the user pressed Ctrl-C."""

  def __init__(self, phase: str, epoch: int, epochs: int):
    super().__init__(f"stopped after epoch {epoch}/{epochs} of phase {phase} (checkpoint saved)")
    self.phase, self.epoch, self.epochs = phase, epoch, epochs


_stop_requested = threading.Event()


def stop_requested() -> bool:
  return _stop_requested.is_set()


def request_stop() -> None:
  """What the first Ctrl-C does (also usable by a caller that wants a graceful stop)."""
  _stop_requested.set()


@contextlib.contextmanager
def stop_after_epoch(log=print):
  """While active, the first SIGINT requests a stop at the next epoch end; the second one
  raises KeyboardInterrupt immediately. Outside the main thread it does nothing."""
  _stop_requested.clear()
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handler(signum, frame):
    if _stop_requested.is_set():
      raise KeyboardInterrupt
    _stop_requested.set()
    log("\nCtrl-C: stopping after this epoch's checkpoint (press Ctrl-C again to stop now, "
        "losing the epoch in progress)")

  previous = signal.signal(signal.SIGINT, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
    _stop_requested.clear()


def _process_started() -> float:
  """time.perf_counter() at this process's start (imports and config parsing included), from
  /proc on Linux; elsewhere the time this module was imported."""
  try:
    with open("/proc/self/stat") as f:
      ticks = float(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start, clock ticks
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
    age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    if 0 <= age < 7 * 24 * 3600:
      return time.perf_counter() - age
  except (OSError, ValueError, IndexError):
    pass
  return _IMPORTED


_IMPORTED = time.perf_counter()


class PhaseClock:
  """Seconds spent on each phase, summed over every invocation, in `<workdir>/run_state.json`.

  `wall_seconds(keys)` is the study's wall time: the phases it is made of (including time
  spent on them by earlier, interrupted invocations) plus this invocation's time outside them,
  counted from the process's start (the imports and the config parsing are part of what the
  command did).
  """

  def __init__(self, workdir: str, primary: bool = True):
    self.path = os.path.join(workdir, STATE_FILE)
    self.primary = primary
    self.started = _process_started()
    self.in_phases = 0.0  # this invocation's seconds inside phases
    self.phases = {}
    try:
      with open(self.path) as f:
        self.phases = {str(k): float(v) for k, v in json.load(f)["phase_seconds"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
      pass  # no state yet, or unreadable: start counting from zero
    self._phase = None

  def start(self, key: str) -> None:
    self._phase = (key, self.phases.get(key, 0.0), time.perf_counter())

  def tick(self) -> None:
    """Records the phase's time so far (called after each epoch's checkpoint and at its end)."""
    if self._phase is None:
      return
    key, before, t0 = self._phase
    self.phases[key] = before + time.perf_counter() - t0
    if self.primary:
      io_utils.atomic_write_json(self.path, {"phase_seconds": self.phases})

  def stop(self) -> None:
    if self._phase is not None:
      self.tick()
      self.in_phases += time.perf_counter() - self._phase[2]
      self._phase = None

  def wall_seconds(self, keys) -> float:
    outside = time.perf_counter() - self.started - self.in_phases
    return sum(self.phases.get(k, 0.0) for k in keys) + outside
