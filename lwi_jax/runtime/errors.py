"""How a run ends: exit codes, and the one clear line and hint launch.py prints when a run fails
or is stopped.

A researcher's mistake (a bad config value, an unreadable data file, a full disk, a busy
workdir) is not a bug, so it gets no traceback: `error: <what>` and `hint: <what to do>`,
exit code 2. The traceback is printed too with absl's `--verbosity=1` (or higher). An
exception that is none of these (raised outside this project's code) is a bug: its traceback
is printed in full as before.

The process then ends with `os._exit`: orbax and tensorboard keep threads that, at interpreter
shutdown after an error, died with hundreds of lines ending in `ImportError: sys.meta_path is
None`. Every result file is written atomically and fsynced before, so skipping the
interpreter's own shutdown loses nothing.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shlex
import sys
import threading
import traceback

from lwi_jax.runtime import run_control

EXIT_ERROR = 2
EXIT_NON_FINITE = 3  # the study finished, but a member went non-finite (see report.md)
EXIT_STOPPED = 130  # the shell's code for "ended by SIGINT"
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROJECT_DIRS = tuple(os.path.join(_REPO, d) for d in ("lwi_jax", "configs", "launch.py"))
TRACEBACK_HINT = "the traceback: rerun with --verbosity=1"

# errno -> (what happened, what to do); orbax/tensorstore report them inside a ValueError's text
# as "[os_error_code='28']", Python as OSError.errno.
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on device", "free some space (or choose another "
                   "--config.workdir); rerunning the same command resumes from the last "
                   "checkpoint"),
    errno.EDQUOT: ("disk quota exceeded", "free some space (or choose another "
                   "--config.workdir); rerunning resumes from the last checkpoint"),
    errno.EROFS: ("the workdir is on a read-only file system",
                  "choose a writable --config.workdir"),
    errno.EACCES: ("permission denied", "choose a --config.workdir you can write to, or fix "
                   "the file's permissions"),
}
_OS_TEXT = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
            errno.EROFS: "Read-only file system"}


class UserError(ValueError):
  """An error in what the user gave (data, a file), not in this code: a subclass says in
  `hint` what to do about it (e.g. data.errors.DataError)."""
  hint = "fix the input named above"


def _chain(e: BaseException):
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def _os_error(e: BaseException) -> tuple[int, str] | None:
  """(errno, file) of a disk / permission failure anywhere in the exception chain."""
  for x in _chain(e):
    if isinstance(x, OSError) and x.errno in _OS_ERRORS:
      return x.errno, x.filename or ""
    text = str(x)
    for code in _OS_ERRORS:
      if f"os_error_code='{code}'" in text or (code in _OS_TEXT and _OS_TEXT[code] in text):
        m = re.search(r'(?:local file|Failed writing:?) "([^"]+)"', text)
        return code, m.group(1) if m else ""
  return None


def _raised_in_project(e: BaseException) -> bool:
  """True when the innermost frame that raised `e` is this project's code (a deliberate,
  worded error) rather than a library's (more likely a bug)."""
  tb = e.__traceback__
  last = None
  while tb is not None:
    last = tb.tb_frame.f_code.co_filename
    tb = tb.tb_next
  return last is not None and os.path.abspath(last).startswith(_PROJECT_DIRS)


def describe(e: BaseException) -> tuple[str, str] | None:
  """(error line, hint) for an error a person can fix; None for a bug (print the traceback)."""
  os_err = _os_error(e)
  if os_err is not None:
    code, filename = os_err
    what, hint = _OS_ERRORS[code]
    return f"{what}{f' while writing {filename}' if filename else ''}", hint
  if isinstance(e, run_control.WorkdirLocked):
    return str(e), "wait for that run to finish, or choose another --config.workdir"
  if isinstance(e, UserError):
    return str(e), e.hint
  if isinstance(e, (ValueError, TypeError, KeyError)) and _raised_in_project(e):
    return str(e), "fix the field named above (--config.<field>=... or the config file)"
  return None


def resume_command() -> str:
  """The exact command of this process, to rerun (resumes from the last checkpoint)."""
  return shlex.join([os.path.basename(sys.executable)] + sys.argv)


def _finish(code: int) -> None:
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


class _HiddenTracebacks(logging.Filter):
  """Keeps library threads' tracebacks off the console while a run goes on (verbosity < 1).

  When a checkpoint save fails (a full disk), orbax's worker threads print ~100 lines of
  tracebacks (through `sys.unraisablehook`, `sys.excepthook`, `threading.excepthook` and ERROR
  logs with exc_info)
  before the error reaches `run`. Here an ERROR log keeps its one-line message, a thread's
  traceback is counted; a run that succeeds says how many were hidden.
  """

  def __init__(self):
    super().__init__()
    self.hidden = 0

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and not os.path.abspath(record.pathname).startswith(_PROJECT_DIRS):
      record.exc_info, record.exc_text = None, None
      self.hidden += 1
    return True

  def hook(self, *args) -> None:
    del args
    self.hidden += 1

  def __enter__(self):
    self._saved = (sys.excepthook, threading.excepthook, sys.unraisablehook,
                   list(logging.root.handlers))
    sys.excepthook = threading.excepthook = sys.unraisablehook = self.hook
    for handler in self._saved[3]:
      handler.addFilter(self)
    return self

  def __exit__(self, *exc):
    sys.excepthook, threading.excepthook, sys.unraisablehook, handlers = self._saved
    for handler in handlers:
      handler.removeFilter(self)


def run(fn, verbosity: int = 0) -> None:
  """Calls `fn()`; ends the process with one line + hint on a known error or a Ctrl-C stop."""
  quiet = _HiddenTracebacks()
  try:
    if verbosity >= 1:
      fn()
    else:
      with quiet:
        fn()
      if quiet.hidden:
        print(f"note: {quiet.hidden} traceback(s) of library threads were hidden; to see "
              "them, rerun with --verbosity=1", file=sys.stderr, flush=True)
  except run_control.Stopped as e:
    print(f"\n{e}. To resume, rerun the same command:\n  {resume_command()}", flush=True)
    _finish(EXIT_STOPPED)
  except KeyboardInterrupt:
    print("\ninterrupted (the epoch in progress is lost). To resume from the last checkpoint, "
          f"rerun the same command:\n  {resume_command()}", flush=True)
    _finish(EXIT_STOPPED)
  except Exception as e:  # noqa: BLE001 - sorted into "a person can fix it" and "a bug"
    message = describe(e)
    if message is None:
      traceback.print_exc()
      _finish(1)
    if verbosity >= 1:
      traceback.print_exc()
    line, hint = (" ".join(part.split()) for part in message)  # one line, whatever the text
    print(f"error: {line}\nhint: {hint} ({TRACEBACK_HINT})", file=sys.stderr, flush=True)
    _finish(EXIT_ERROR)
