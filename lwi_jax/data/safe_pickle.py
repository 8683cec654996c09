"""A restricted unpickler for the CIFAR-10 "python version" batches.

Those files are pickles, and unpickling runs whatever callable the file names. A downloaded
file must not get to run code, so only the globals a CIFAR batch actually contains are
allowed: numpy's array reconstruction, `ndarray` and `dtype`. Plain containers (dict, list,
bytes, str, int) need no globals at all, except that a protocol-2 pickle written by Python 3
stores every `bytes` object as `_codecs.encode(str, 'latin1')`; that one call is allowed with
the latin1 codec only.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

# (module, name) pairs a CIFAR batch may reference. numpy 2 moved `numpy.core` to
# `numpy._core`; files written by numpy 1 (and Python 2 cPickle) name the old path.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # protocol >= 5 pickles rebuild contiguous arrays with np.frombuffer(...).reshape(...).
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError):
  """Raised when a pickle references anything beyond what a CIFAR batch contains."""


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
  """`_codecs.encode` as protocol 2 uses it for bytes: (str, 'latin1') only, no other codec."""
  if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
    raise UnsafePickleError(f"refusing _codecs.encode({type(obj).__name__}, {encoding!r}): only "
                            "latin1-encoded str (how protocol 2 stores bytes) is allowed")
  return obj.encode("latin1")


def _frombuffer(buf, dtype, shape, order):
  """numpy's own `_frombuffer` (protocol 5), without importing a private module by name."""
  return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


class _RestrictedUnpickler(pickle.Unpickler):

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in _ALLOWED:
      raise UnsafePickleError(
          f"refusing to load global {module}.{name}: only numpy array reconstruction "
          f"is allowed in a CIFAR batch ({sorted(m + '.' + n for m, n in _ALLOWED)})")
    if name == "_reconstruct":
      return np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct, any version
    if name == "scalar":
      return np.float32(0).__reduce__()[0]  # numpy's scalar constructor
    if name == "encode":
      return _latin1_encode
    if name == "_frombuffer":
      return _frombuffer
    return getattr(np, name)


def restricted_load(f: BinaryIO, encoding: str = "bytes") -> Any:
  """`pickle.load(f, encoding=...)` that refuses every global outside `_ALLOWED`."""
  return _RestrictedUnpickler(f, encoding=encoding).load()


def restricted_loads(data: bytes, encoding: str = "bytes") -> Any:
  return restricted_load(io.BytesIO(data), encoding=encoding)
