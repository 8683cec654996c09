"""What a run shows on the console: the project's own lines and a progress bar, no library logs.

Why: left at their defaults, orbax prints hundreds of INFO lines (checkpoint-manager internals,
one block per save) and JAX its "Unable to initialize backend 'tpu'" probe, burying the few
lines a user follows (data, epochs, members, time left, results). So library INFO logs are
hidden unless absl's `--verbosity` flag is given (`--verbosity=0` INFO, `--verbosity=1` DEBUG);
warnings and errors always show.

The progress bar inside an epoch is fed by a host callback in the compiled epoch
(train.train_epoch's `on_step`), compiled in on one device. It reads nothing the step
computes, so results are bit-identical with and without it (tests/test_console.py); its cost
is measured in BUILD_NOTES.md ("Console"). On a terminal it draws the bar; off one (a log
file, a batch job) the same callback can time the first steps and report the pace once, because
an epoch of a large model on a CPU is many silent minutes otherwise (`epoch_progress`; the
trainer decides when, study/trainer.py).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Callable

from absl import flags, logging


Printer = Callable[[str], None]  # where a run's console lines go (tests pass a list's append)


def print_line(msg: str) -> None:
  """The default Printer: stdout, flushed (lines must show while a long epoch runs)."""
  print(msg, flush=True)


def configure_logging() -> None:
  """Hides library INFO logs unless the user passed --verbosity (call after flag parsing)."""
  if "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present:
    return  # absl's own levels, as asked
  logging.set_verbosity(logging.WARNING)  # absl and Python loggers: warnings and errors only


def interactive(stream=None) -> bool:
  """True when `stream` (stderr) is a terminal: bars are for people, not for log files."""
  stream = sys.stderr if stream is None else stream
  return bool(getattr(stream, "isatty", lambda: False)())


class _Bar:
  """One tqdm bar over the steps of one epoch (all member passes), updated from the callback."""

  def __init__(self, desc: str, total_steps: int, stream):
    from tqdm import tqdm  # lazy: only interactive runs draw bars
    self._lock = threading.Lock()
    self._tqdm = tqdm(total=total_steps, desc=desc, unit="step", leave=False, file=stream,
                      dynamic_ncols=True, mininterval=0.5)

  def advance(self, done: int, every: int) -> None:
    # Steps since the previous point: `every`, or the remainder at the epoch's last step.
    with self._lock:
      self._tqdm.update(done - every * ((done - 1) // every))

  def close(self) -> None:
    with self._lock:
      self._tqdm.close()


class _Pace:
  """Off a terminal: times the steps between the epoch's first two progress points (the first
  point comes after the compilation) and hands `report(seconds_per_step, total_steps)` the pace
  once; later points only count."""

  def __init__(self, total_steps: int, report: Callable[[float, int], None]):
    self._lock = threading.Lock()
    self._total = total_steps
    self._report = report
    self._done = 0
    self._first = None  # (steps done, time) at the first point

  def advance(self, done: int, every: int) -> None:
    with self._lock:
      self._done += done - every * ((done - 1) // every)
      now = time.perf_counter()
      if self._report is None:
        return
      if self._first is None:
        self._first = (self._done, now)
        return
      steps, t0 = self._done - self._first[0], self._first[1]
      report, self._report = self._report, None
    if steps > 0:
      report((now - t0) / steps, self._total)

  def close(self) -> None:
    pass


_active: _Bar | _Pace | None = None


def on_train_step(done, every) -> None:
  """The host callback compiled into the epoch (a stable function: one compiled program)."""
  tracker = _active
  if tracker is not None:
    tracker.advance(int(done), int(every))


@contextlib.contextmanager
def epoch_progress(desc: str, total_steps: int, bar: bool,
                   on_pace: Callable[[float, int], None] | None = None, stream=None):
  """While the body trains one epoch (and waits for its results): a bar when `bar`, else, if
  `on_pace` is given, the pace of the first steps reported to it; otherwise nothing."""
  global _active
  if bar:
    tracker = _Bar(desc, total_steps, sys.stderr if stream is None else stream)
  elif on_pace is not None:
    tracker = _Pace(total_steps, on_pace)
  else:
    yield
    return
  _active = tracker
  try:
    yield
  finally:
    _active = None
    tracker.close()


def format_seconds(seconds: float) -> str:
  """'42s', '3m05s', '1h02m': short enough for an epoch line."""
  seconds = max(0, int(round(seconds)))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def spread(values, fmt: str = "{:.3f}") -> str:
  """One number for one member, 'min–max' over several (NaNs ignored; '–' if none)."""
  import math
  vals = [float(v) for v in values if math.isfinite(float(v))]
  if not vals:
    return "–"
  lo, hi = min(vals), max(vals)
  return fmt.format(lo) if lo == hi or len(vals) == 1 else f"{fmt.format(lo)}–{fmt.format(hi)}"
