"""Atomic file output: a reader (or a crashed run) never sees a half-written result.

JSON has no NaN or infinity. Writing them as `null` made a diverged member's numbers look like
missing values; they are written as the strings "nan", "inf" and "-inf" instead (strict JSON a
reader cannot mistake for a number), and `decode_non_finite` turns them back into floats.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np


def _to_jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_to_jsonable(v) for v in obj]
  if hasattr(obj, "tolist"):  # numpy / jax arrays and scalars
    return _to_jsonable(np.asarray(obj).tolist())
  if isinstance(obj, float) and not np.isfinite(obj):
    return NON_FINITE_STRINGS[0 if np.isnan(obj) else (1 if obj > 0 else 2)]
  return obj


NON_FINITE_STRINGS = ("nan", "inf", "-inf")


def decode_non_finite(obj):
  """Inverse of the writer's NaN/inf encoding, for the numeric parts of a saved file."""
  if isinstance(obj, dict):
    return {k: decode_non_finite(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [decode_non_finite(v) for v in obj]
  if isinstance(obj, str) and obj in NON_FINITE_STRINGS:
    return float(obj)
  return obj


def _umask() -> int:
  """The process umask, read without changing it where Linux allows (os.umask() sets it, a
  race with threads that create files meanwhile)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `path` through a temporary file and a rename, with the mode a plain open() would
  give it (mkstemp's are 0600: results a collaborator could not read)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
  try:
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj) -> str:
  """Strict JSON (non-finite numbers become null) of numpy / jax containers."""
  return json.dumps(_to_jsonable(obj), indent=1, allow_nan=False) + "\n"


def atomic_write_json(path: str, obj) -> None:
  atomic_write_text(path, json_text(obj))
