"""A restricted, memory-safe unpickler for the CIFAR-10 "python version" batches.

Those files are pickles, and unpickling runs whatever callable the file names. A downloaded
file must not get to run code, and it must not get to hand numpy a crafted dtype or array
state either: numpy's own `dtype.__setstate__` accepts structured fields with arbitrary
offsets, and an array built on one reads (or segfaults on) memory outside its buffer. So numpy
never sees the file's state. The globals a CIFAR batch names (numpy's array reconstruction,
`ndarray`, `dtype`, `scalar`, `_frombuffer`) are replaced by recipes that check everything
first, then build the array themselves:

  * a dtype must be a plain numeric type (bool, int, uint, float; any byte order) with the
    exact state numpy writes for one: no fields, no offsets, no subarray, no metadata;
  * an array's declared shape times its item size must equal the bytes the file holds for it,
    so nothing is allocated from a declared size;
  * before unpickling, every opcode is scanned (`pickletools.genops`): each declared string,
    bytes or frame length must fit in what is left of the file, and memo indices must be
    small, so a 3 KB file cannot ask for a terabyte.

Plain containers (dict, list, bytes, str, int) need no globals at all, except that a
protocol-2 pickle written by Python 3 stores every `bytes` object as
`_codecs.encode(str, 'latin1')`; that one call is allowed with the latin1 codec only.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
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
# dtype codes as numpy pickles them (`np.dtype(code, False, True)`): plain numbers only.
PLAIN_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4",
                          "f8"})
# Opcodes a pickle of dicts, lists, bytes and numpy arrays never needs; each could reach an
# object constructor or an outside resource.
_REFUSED_OPCODES = frozenset({"PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "INST", "OBJ",
                              "NEWOBJ", "NEWOBJ_EX", "NEXT_BUFFER", "READONLY_BUFFER"})
_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})


class UnsafePickleError(pickle.UnpicklingError):
  """Raised when a pickle holds anything beyond what a CIFAR batch contains."""


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
  """`_codecs.encode` as protocol 2 uses it for bytes: (str, 'latin1') only, no other codec."""
  if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
    raise UnsafePickleError(f"refusing _codecs.encode({type(obj).__name__}, {encoding!r}): only "
                            "latin1-encoded str (how protocol 2 stores bytes) is allowed")
  return obj.encode("latin1")


def _as_bytes(raw, what: str) -> bytes:
  """Array / scalar payload as bytes (Python 2 files read with encoding='latin1' give str)."""
  if isinstance(raw, str):
    try:
      return raw.encode("latin1")
    except UnicodeEncodeError as e:
      raise UnsafePickleError(f"{what}: payload is not latin1 text") from e
  if isinstance(raw, (bytes, bytearray)):
    return bytes(raw)
  if isinstance(raw, pickle.PickleBuffer):
    return bytes(raw.raw())
  raise UnsafePickleError(f"{what}: payload must be bytes, got {type(raw).__name__} (object "
                          "arrays are refused)")


class _DtypeRecipe:
  """Stands in for `numpy.dtype(code, align, copy)` + BUILD(state); plain numbers only."""

  def __init__(self, code, align=False, copy=True):
    if isinstance(code, bytes):
      code = code.decode("latin1")
    if not isinstance(code, str) or code not in PLAIN_DTYPES:
      raise UnsafePickleError(f"refusing dtype {code!r}: only plain numeric dtypes "
                              f"{sorted(PLAIN_DTYPES)} are allowed")
    if not isinstance(align, bool) or not isinstance(copy, bool):
      raise UnsafePickleError("refusing a dtype with non-boolean align/copy arguments")
    self.code = code
    self.dtype = np.dtype(code)

  def __setstate__(self, state):
    # numpy writes (3, byteorder, subarray, names, fields, elsize, alignment, flags) for a plain
    # numeric dtype: subarray, names and fields None, elsize and alignment -1, flags 0.
    if not isinstance(state, tuple) or len(state) != 8:
      raise UnsafePickleError(f"refusing dtype {self.code!r}: unexpected state {state!r:.200}")
    version, order, subarray, names, fields, elsize, alignment, flags = state
    if version != 3 or (subarray, names, fields) != (None, None, None) \
        or (elsize, alignment, flags) != (-1, -1, 0):
      raise UnsafePickleError(
          f"refusing dtype {self.code!r} with state {state!r:.200}: structured dtypes, field "
          "offsets, subarrays and flags are not part of a CIFAR batch")
    if isinstance(order, bytes):
      order = order.decode("latin1")
    if order not in ("<", ">", "|", "="):
      raise UnsafePickleError(f"refusing dtype {self.code!r} with byte order {order!r}")
    self.dtype = np.dtype(self.code).newbyteorder(order) if order in "<>" else np.dtype(self.code)


def _plain_dtype(dtype, what: str) -> np.dtype:
  if not isinstance(dtype, _DtypeRecipe):
    raise UnsafePickleError(f"{what}: dtype must be a plain numeric numpy dtype, got "
                            f"{type(dtype).__name__}")
  return dtype.dtype


def _checked_array(raw, dtype, shape, fortran: bool, what: str) -> np.ndarray:
  """The array the (already checked) dtype, shape and payload describe, or an error."""
  dt = _plain_dtype(dtype, what)
  if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
    raise UnsafePickleError(f"{what}: shape must be a tuple of non-negative ints, got "
                            f"{shape!r:.200}")
  raw = _as_bytes(raw, what)
  declared = math.prod(shape) * dt.itemsize  # Python ints: no overflow
  if declared != len(raw):
    raise UnsafePickleError(f"{what}: declares shape {shape} of {dt} ({declared:,} bytes) but "
                            f"holds {len(raw):,} bytes")
  array = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C")
  return array.copy(order="K")  # writeable, owns its memory


_NDARRAY = object()  # what `numpy.ndarray` unpickles to: only a marker for _reconstruct


class _ArrayRecipe:
  """Stands in for `numpy.core.multiarray._reconstruct(ndarray, ...)` + BUILD(state)."""

  def __init__(self, cls, shape=None, typecode=None):
    del shape, typecode  # numpy's placeholder arguments; the real ones come with BUILD
    if cls is not _NDARRAY:
      raise UnsafePickleError("refusing _reconstruct of anything but numpy.ndarray")
    self.array = None

  def __setstate__(self, state):
    if not isinstance(state, tuple) or len(state) not in (4, 5):
      raise UnsafePickleError(f"refusing ndarray state {state!r:.200}")
    if len(state) == 5:
      if state[0] != 1:
        raise UnsafePickleError(f"refusing ndarray state version {state[0]!r}")
      state = state[1:]
    shape, dtype, fortran, raw = state
    if not isinstance(fortran, (bool, int)):
      raise UnsafePickleError(f"refusing ndarray order flag {fortran!r:.100}")
    self.array = _checked_array(raw, dtype, shape, bool(fortran), "ndarray")


def _frombuffer(buf, dtype, shape, order="C"):
  """numpy's `_frombuffer` (protocol 5), with the checks of `_checked_array`."""
  if order not in ("C", "F"):
    raise UnsafePickleError(f"refusing array order {order!r:.100}")
  return _checked_array(buf, dtype, shape, order == "F", "ndarray (protocol 5)")


def _scalar(dtype, raw=None):
  """numpy's scalar constructor for plain numeric dtypes only."""
  dt = _plain_dtype(dtype, "numpy scalar")
  return _checked_array(raw, dtype, (), False, f"numpy scalar of {dt}")[()]


_REPLACEMENTS = {"_reconstruct": _ArrayRecipe, "ndarray": _NDARRAY, "dtype": _DtypeRecipe,
                 "scalar": _scalar, "_frombuffer": _frombuffer, "encode": _latin1_encode}


class _RestrictedUnpickler(pickle.Unpickler):

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in _ALLOWED:
      raise UnsafePickleError(
          f"refusing to load global {module}.{name}: only numpy array reconstruction "
          f"is allowed in a CIFAR batch ({sorted(m + '.' + n for m, n in _ALLOWED)})")
    return _REPLACEMENTS[name]


def check_opcodes(data: bytes) -> None:
  """Every opcode of `data` checked before anything is built.

  `pickletools.genops` reads each argument from a BytesIO, so a declared length longer than
  what is left raises instead of allocating; frame sizes and memo indices are bounded here.
  """
  ops = 0
  try:
    for op, arg, pos in pickletools.genops(io.BytesIO(data)):
      ops += 1
      if op.name in _REFUSED_OPCODES:
        raise UnsafePickleError(f"refusing pickle opcode {op.name} at byte {pos}")
      if op.name == "FRAME" and arg > len(data) - pos:
        raise UnsafePickleError(f"frame at byte {pos} declares {arg:,} bytes but only "
                                f"{len(data) - pos:,} remain in the file")
      if op.name in _MEMO_OPCODES and not (isinstance(arg, int) and 0 <= arg <= ops):
        raise UnsafePickleError(f"memo index {arg!r:.50} at byte {pos} is out of range")
  except UnsafePickleError:
    raise
  except (ValueError, TypeError, pickle.UnpicklingError, OverflowError, MemoryError) as e:
    # genops' own errors: truncated arguments ("expected N bytes ... only M remain"), unknown
    # opcodes, no STOP.
    raise pickle.UnpicklingError(f"malformed pickle: {e}") from e


def _resolve(obj):
  """Replaces every recipe in the loaded structure by the array or dtype it built.

  Iterative (a crafted file can nest lists millions deep) and visits each container once.
  """

  def value(v):
    if isinstance(v, _ArrayRecipe):
      if v.array is None:
        raise UnsafePickleError("an ndarray without its state (shape, dtype, data)")
      return v.array
    if isinstance(v, _DtypeRecipe):
      return v.dtype
    if v is _NDARRAY:
      raise UnsafePickleError("a bare numpy.ndarray reference outside _reconstruct")
    return v

  root = [obj]
  stack, seen = [root], set()
  while stack:
    c = stack.pop()
    if id(c) in seen:
      continue
    seen.add(id(c))
    if isinstance(c, dict):
      for k in list(c):
        c[k] = value(c[k])
        if isinstance(c[k], (dict, list, tuple)):
          stack.append(c[k])
    elif isinstance(c, list):
      for i, v in enumerate(c):
        c[i] = value(v)
        if isinstance(c[i], (dict, list, tuple)):
          stack.append(c[i])
    else:  # tuple: immutable; recipes inside a tuple are refused rather than rebuilt
      for v in c:
        if isinstance(v, (_ArrayRecipe, _DtypeRecipe)) or v is _NDARRAY:
          raise UnsafePickleError("refusing a numpy object inside a tuple (not part of a "
                                  "CIFAR batch)")
        if isinstance(v, (dict, list, tuple)):
          stack.append(v)
  return value(root[0])


def restricted_loads(data: bytes, encoding: str = "bytes") -> Any:
  """`pickle.loads(data, encoding=...)` that builds only plain containers and checked arrays."""
  check_opcodes(data)
  return _resolve(_RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load())


def restricted_load(f: BinaryIO, encoding: str = "bytes") -> Any:
  """`restricted_loads` of a whole file (its size bounds everything that is allocated)."""
  return restricted_loads(f.read(), encoding=encoding)
