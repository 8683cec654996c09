"""The CIFAR reader is memory-safe: crafted dtype / array states, declared sizes far beyond the
file, bad labels, and a fuzz run of mutated batch files that must never crash the process."""

import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

from lwi_jax.data import cifar10, safe_pickle
from lwi_jax.data.errors import DataError

TESTS = os.path.dirname(os.path.abspath(__file__))
TiB = 2 ** 40


class _Reduce:
  """Pickles as `fn(*args)` (+ BUILD(state)): lets a test write any numpy state it wants."""

  def __init__(self, fn, args, state=None):
    self.fn, self.args, self.state = fn, args, state

  def __reduce__(self):
    return (self.fn, self.args) + (() if self.state is None else (self.state,))


def _reconstruct():
  return np.ndarray.__reduce__(np.zeros(1))[0]


def _crafted_array(shape, raw: bytes, dtype_code="i8", dtype_state=None):
  """An ndarray as numpy pickles one, but with the dtype and array state given here."""
  dtype_state = dtype_state or (3, "<", None, None, None, -1, -1, 0)
  dt = _Reduce(np.dtype, (dtype_code, False, True), dtype_state)
  return _Reduce(_reconstruct(), (np.ndarray, (0,), b"b"), (1, shape, dt, False, raw))


def _structured_labels(n, offset):
  """The issue's reproducer: labels whose dtype declares one int64 field at `offset`."""
  state = (3, "|", None, ("f",), {"f": (np.dtype("<i8"), offset)}, 8, 1, 16)
  return _crafted_array((n,), np.arange(n, dtype="<i8").tobytes(), "V8", state)


def _batch(n=4, seed=0, labels=None, protocol=2):
  rng = np.random.default_rng(seed)
  data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
  labels = [int(v) for v in rng.integers(0, 10, n)] if labels is None else labels
  return pickle.dumps({b"batch_label": b"fake", b"labels": labels, b"data": data,
                       b"filenames": [b"x.png"] * n}, protocol=protocol)


def _read(tmp_path, blob, name="data_batch_1"):
  path = tmp_path / name
  path.write_bytes(blob)
  return path, cifar10.read_python_batch(str(path))


def test_well_formed_batches_load(tmp_path):
  # Positive control for every refusal below, in every protocol and both label forms.
  for protocol in (2, 3, 4, 5):
    for labels in ([1, 2, 3, 4], np.array([1, 2, 3, 4], ">i2")):
      _, split = _read(tmp_path, _batch(labels=labels, protocol=protocol))
      assert split.inputs.shape == (4, 32, 32, 3) and split.labels.tolist() == [1, 2, 3, 4]
      assert split.labels.dtype == np.int32


@pytest.mark.parametrize("offset", [TiB, 8, 64])
def test_structured_dtype_with_field_offset_is_refused(tmp_path, offset):
  # A data_batch_1 of a few KB like this segfaulted numpy (offset 2**40) or read heap memory out of
  # bounds without an error (small offsets) inside np.asarray of the labels.
  blob = _batch(n=1, labels=_structured_labels(1, offset))
  with pytest.raises(DataError) as e:
    _read(tmp_path, blob)
  msg = str(e.value)
  assert str(tmp_path / "data_batch_1") in msg and "unsafe pickle refused" in msg
  assert "structured dtypes" in msg or "V8" in msg


@pytest.mark.parametrize("code, state, needle", [
    ("O8", (3, "|", None, None, None, -1, -1, 63), "'O8'"),  # object array: pointers
    ("U3", (3, "<", None, None, None, 12, 4, 8), "'U3'"),
    ("i8", (3, "<", ((np.dtype("i8"), (2,))), None, None, -1, -1, 0), "subarrays"),
    ("i8", (3, "<", None, None, None, 64, -1, 0), "structured dtypes"),  # elsize override
    ("i8", (3, "?", None, None, None, -1, -1, 0), "byte order"),
])
def test_only_plain_numeric_dtypes(code, state, needle):
  blob = pickle.dumps({b"labels": _crafted_array((1,), b"\0" * 8, code, state)}, protocol=2)
  with pytest.raises(safe_pickle.UnsafePickleError, match="refusing dtype") as e:
    safe_pickle.restricted_loads(blob)
  assert needle in str(e.value)


def test_declared_terabyte_array_is_refused_before_allocating(tmp_path):
  # Shape says 1 TiB of int64, the payload is 32 bytes: refused by the size check, not by
  # a MemoryError (nothing of that size is ever requested).
  labels = _crafted_array((TiB // 8,), np.arange(4, dtype="<i8").tobytes())
  with pytest.raises(DataError) as e:
    _read(tmp_path, _batch(labels=labels))
  msg = str(e.value)
  assert str(tmp_path / "data_batch_1") in msg
  assert "declares shape (137438953472,) of int64 (1,099,511,627,776 bytes)" in msg
  assert "holds 32 bytes" in msg


@pytest.mark.parametrize("blob, needle", [
    # BINBYTES8 declaring a 1 TiB string in a 14-byte file.
    (b"\x80\x04\x8e" + TiB.to_bytes(8, "little") + b"abc.", "expected 1099511627776 bytes"),
    # A FRAME declaring 1 TiB.
    (b"\x80\x04\x95" + TiB.to_bytes(8, "little") + b"N.", "frame at byte 2 declares"),
    # LONG_BINPUT at memo index 2**31 (numpy-free, but C pickle would size its memo to it).
    (b"\x80\x02N" + b"r" + (2 ** 31).to_bytes(4, "little") + b".", "memo index 2147483648"),
    (pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5)[:2] + b"\x97.", "NEXT_BUFFER"),
])
def test_declared_lengths_are_checked_against_the_file(tmp_path, blob, needle):
  with pytest.raises(DataError) as e:
    _read(tmp_path, blob)
  assert str(tmp_path / "data_batch_1") in str(e.value) and needle in str(e.value)


@pytest.mark.parametrize("labels, needle", [
    (["cat", 1, 2, 3], "got str 'cat' at index 0"),
    ([0, float("nan"), 1, 2], "got float nan at index 1"),
    ([0, 1, True, 2], "got bool True at index 2"),
    ([0, 1, 2, 10 ** 30], "at index 3"),
    (np.array([0.0, np.nan, 1, 2]), "array of float64"),
    (np.array([[0, 1], [2, 3]]), "shape (2, 2)"),
    (b"\x00\x01\x02\x03", "must be a list of integers, got bytes"),
])
def test_bad_labels_name_the_file(tmp_path, labels, needle):
  with pytest.raises(DataError) as e:
    _read(tmp_path, _batch(labels=labels))
  assert str(tmp_path / "data_batch_1") in str(e.value) and needle in str(e.value)


# ------------------------------------------------------------------------------------- fuzz


def _mutations(blob: bytes, count: int, seed: int, window=None):
  """`count` mutated copies of `blob`: byte flips, insertions, deletions, truncations and
  overwritten integers; `window` = (start, end) limits where they land."""
  rng = random.Random(seed)
  lo, hi = window or (0, len(blob))
  for _ in range(count):
    b = bytearray(blob)
    for _ in range(rng.randint(1, 3)):
      i = rng.randrange(lo, min(hi, len(b)))
      kind = rng.random()
      if kind < 0.45:
        b[i] = rng.randrange(256)
      elif kind < 0.6:
        b[i:i] = bytes([rng.randrange(256)])
      elif kind < 0.75:
        del b[i:i + rng.randint(1, 8)]
      elif kind < 0.85:
        b[i:i + 4] = rng.choice([0xFFFFFFFF, 2 ** 31, 2 ** 31 - 1, 0]).to_bytes(4, "little")
      else:
        del b[i:]
    yield bytes(b)


def _corpus():
  """Well-formed small batches in the real format (several protocols, both label forms) and
  the crafted states above: the seeds the fuzzer mutates."""
  labels_array = np.array([1, 2, 3, 4], "<i8")
  return [_batch(protocol=2), _batch(protocol=4, seed=1), _batch(protocol=5, seed=2),
          _batch(labels=labels_array, protocol=2), _batch(labels=labels_array, protocol=5),
          _batch(n=1, labels=_structured_labels(1, TiB)),
          _batch(labels=_crafted_array((4,), labels_array.tobytes()))]


def fuzz(directory: str, real_file: str = "", per_seed: int = 50, real_count: int = 0) -> None:
  """Runs in a child process (a segfault must show as a failed test, not a dead pytest).

  Every mutated file must either load as a valid batch or raise DataError; anything else
  (another exception type, a crash) fails.
  """
  per_seed, real_count = int(per_seed), int(real_count)
  jobs = [(m, None) for k, blob in enumerate(_corpus()) for m in _mutations(blob, per_seed, k)]
  if real_file:
    with open(real_file, "rb") as f:
      real = f.read()
    # The header (labels, dtype and array state) is where a mutation can mislead the reader.
    jobs += [(m, None) for m in _mutations(real, real_count, 99, window=(0, 40_000))]
  path = os.path.join(directory, "data_batch_1")
  outcomes = {"loaded": 0, "DataError": 0}
  for blob, _ in jobs:
    with open(path, "wb") as f:
      f.write(blob)
    try:
      split = cifar10.read_python_batch(path)
    except DataError as e:
      assert path in str(e)
      outcomes["DataError"] += 1
      continue
    assert split.inputs.dtype == np.uint8 and split.inputs.shape[1:] == (32, 32, 3)
    assert split.labels.dtype == np.int32 and len(split.labels) == len(split.inputs)
    assert ((split.labels >= 0) & (split.labels < 10)).all()
    outcomes["loaded"] += 1
  print("FUZZ", len(jobs), outcomes, flush=True)


def _run_fuzz(tmp_path, *args):
  code = f"import sys; sys.path.insert(0, {TESTS!r}); import {__name__} as t; t.fuzz(*sys.argv[1:])"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), *map(str, args)],
                        capture_output=True, text=True, timeout=120, env=env)
  assert proc.returncode == 0, (f"fuzzed load crashed (exit {proc.returncode}):\n"
                                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
  return proc.stdout


def _counts(out):
  line = [x for x in out.splitlines() if x.startswith("FUZZ")][-1]
  return eval(line.split(" ", 2)[2])  # noqa: S307 - our own child's dict literal


def test_fuzzed_small_batches_never_crash(tmp_path):
  counts = _counts(_run_fuzz(tmp_path, "", 50))
  assert sum(counts.values()) == 350
  assert counts["DataError"] > 100 and counts["loaded"] > 10  # both paths were exercised


def test_fuzzed_real_batch_never_crashes(tmp_path, cifar10_dir):
  counts = _counts(_run_fuzz(tmp_path, os.path.join(cifar10_dir, "data_batch_1"), 0, 6))
  assert sum(counts.values()) == 6 and counts["DataError"] > 0
