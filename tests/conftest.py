"""Shared test fixtures. Tests run on CPU with tiny models; full runs belong in bench/.

Two CIFAR-10 directories:
- `tiny_cifar10_dir`: a miniature CIFAR-10 "python version" directory generated in a temporary
  directory (the real layout and byte format, a few images per class). Every test that only needs
  files the loader accepts uses it, so the suite passes on a fresh clone with nothing beside it.
- `cifar10_dir`: the real 60,000 images (../shared/data/cifar10/cifar-10-batches-py beside the
  checkout, or $LWI_CIFAR10_DIR), for the tests that check the real files themselves. Missing, it
  SKIPS those tests with the reason; with CI=true a missing copy FAILS them, since CI has the copy
  and a silent skip there would hide a broken path.
"""

from __future__ import annotations

import functools
import os
import pickle

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The real CIFAR-10 (python version) lives beside the checkout, read-only; never copied in.
CIFAR10_DIR = os.environ.get(
    "LWI_CIFAR10_DIR", os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar-10-batches-py"))
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                       "ship", "truck")


def in_ci() -> bool:
  """CI sets CI=true (GitHub Actions, GitLab, .ci/run): real-data tests must run there."""
  return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_real_cifar10() -> str:
  """The real copy's directory; skips the calling test without it (fails under CI=true)."""
  if os.path.isdir(CIFAR10_DIR):
    return CIFAR10_DIR
  reason = (f"real CIFAR-10 python version not found at {os.path.normpath(CIFAR10_DIR)} "
            "(set LWI_CIFAR10_DIR to run the real-data tests)")
  if in_ci():
    pytest.fail(f"{reason}; CI=true requires it, so this is a failure, not a skip")
  pytest.skip(reason)


@pytest.fixture(scope="session")
def cifar10_dir() -> str:
  return require_real_cifar10()


def jit_init(module, *args, **kwargs):
  """`module.init(*args, **kwargs)` as one compiled program.

  Why: an eager flax init dispatches, and compiles, its operations one at a time: 8.9 s for
  the 3-group CNN of test_conv_groups against 1.2-1.9 s as one program (BUILD_NOTES, tenth
  session), compiled as the product compiles its init (programs.jit_init). Keyword arguments
  (`train=False`) stay static.
  """
  from lwi_jax.parallel import programs  # noqa: PLC0415
  return programs.jit_init(functools.partial(module.init, **kwargs))(*args)


# ------------------------------------------------------------- the miniature CIFAR-10 directory


class _Python2Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """Writes protocol-2 pickles the way Python 2 cPickle wrote the real CIFAR-10 files.

  Python 2 `str` became Python 3 `bytes`: stored with the (SHORT_)BINSTRING opcodes, not
  Python 3's `_codecs.encode(..., 'latin1')` call, and numpy's array reconstruction is named
  by its numpy-1 path `numpy.core.multiarray._reconstruct`. A reader that handles these files
  handles the real ones (which load with encoding='bytes' or 'latin1').
  """

  _RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]

  def save_bytes(self, obj):
    n = len(obj)
    if n < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
    else:
      self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
    self.memoize(obj)

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access
  dispatch[bytes] = save_bytes

  def save_global(self, obj, name=None):
    if obj is self._RECONSTRUCT:
      self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
      self.memoize(obj)
      return
    super().save_global(obj, name)


def _dump_python2(path: str, obj) -> None:
  with open(path, "wb") as f:
    _Python2Pickler(f, protocol=2).dump(obj)


def _images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
  """uint8 rows of 3072 ([1024 R | 1024 G | 1024 B]) with a class-dependent colour, so a tiny
  model can learn something, plus noise so that no two images are equal."""
  base = np.stack([(labels * 25) % 256, (labels * 70 + 40) % 256, (250 - labels * 20) % 256], 1)
  rows = np.repeat(base, 1024, axis=1).astype(np.int16)
  rows += rng.integers(-40, 41, rows.shape, dtype=np.int16)
  return np.clip(rows, 0, 255).astype(np.uint8)


def write_tiny_cifar10(directory: str, train_per_class_per_batch: int = 10,
                       test_per_class: int = 20, seed: int = 0) -> str:
  """Writes a miniature CIFAR-10 python-version directory and returns its path.

  The real layout (`data_batch_1..5`, `test_batch`, `batches.meta`) and format (dicts of
  b'data' uint8 [N, 3072], b'labels' list of int, b'batch_label', b'filenames'; Python-2-style
  protocol-2 pickles); 5 x `train_per_class_per_batch` training and `test_per_class` test
  images per class, labels shuffled within each file as in the real batches.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  _dump_python2(os.path.join(directory, "batches.meta"),
                {b"label_names": [n.encode() for n in CIFAR10_CLASS_NAMES],
                 b"num_cases_per_batch": 10 * train_per_class_per_batch, b"num_vis": 3072})
  files = [(f"data_batch_{i}", train_per_class_per_batch, f"training batch {i} of 5")
           for i in range(1, 6)] + [("test_batch", test_per_class, "testing batch 1 of 1")]
  for name, per_class, batch_label in files:
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    _dump_python2(os.path.join(directory, name), {
        b"batch_label": batch_label.encode(),
        b"labels": [int(y) for y in labels],
        b"data": _images(rng, labels),
        b"filenames": [f"{name}/{i:05d}.png".encode() for i in range(labels.size)]})
  return directory


@pytest.fixture(scope="session")
def tiny_cifar10_dir(tmp_path_factory) -> str:
  """A miniature CIFAR-10 python-version directory: 50 training and 20 test images per class.

  Session-scoped and read-only by convention: a test that damages files copies it first
  (shutil.copytree) or calls `write_tiny_cifar10` on its own tmp_path.
  """
  return write_tiny_cifar10(str(tmp_path_factory.mktemp("cifar10") / "cifar-10-batches-py"))


# ----------------------------------------------------------------------- order for pytest -n 2


def pytest_collection_modifyitems(config, items):
  """Runs the `slow` tests first (stable order otherwise).

  pytest-xdist hands the first quarter of the tests out round-robin, so the few heavy tests
  (multi-process launches, the 4-device sharding check) start at once on different workers
  instead of meeting at the end of the run on one of them (the suite's wall time on 2 cores).
  """
  del config
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
  """One persistent XLA compilation cache per test session, shared by the xdist workers and by
  the launch.py processes tests start (through the environment).

  Why: many tests compile the same small programs in different processes (each worker, each
  subprocess run); with the cache each is compiled once per session. Every program is cached,
  not only those over JAX's default one second: the tiny test programs compile in less, and
  on the subprocess-heavy tests caching them all took 151 -> 134 s (BUILD_NOTES, tenth
  session). A cache hit loads the same executable, so no result changes.
  """
  import jax
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the session's directory, above each worker's
  path = str(root / "jax_compilation_cache")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = path
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return path
