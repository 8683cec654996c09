"""CIFAR-10 from the "python version" directory layout or from TFDS.

The python layout (`data_batch_1..5`, `test_batch`, `batches.meta`) is what torchvision and
keras leave on disk, so most researchers already have it. TFDS is the online alternative.
Both return the same uint8 NHWC arrays and int32 labels.
"""

from __future__ import annotations

import os
import socket

import numpy as np

from lwi_jax.data.errors import DataError
from lwi_jax.data.safe_pickle import UnsafePickleError, restricted_load
from lwi_jax.data import splits
from lwi_jax.data.types import ClassificationData, Split

NUM_CLASSES = 10
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
# Where TFDS downloads cifar10 from; probed before a download so offline users fail in seconds.
TFDS_DOWNLOAD_HOST = ("www.cs.toronto.edu", 443)
LOCAL_HINT = ("use a local copy of the CIFAR-10 python version instead: "
              "--config.data.source=python --config.data.dir=/path/to/cifar-10-batches-py")


def _load_pickle(path: str):
  """The file's object through the memory-safe restricted unpickler; every failure a DataError."""
  if os.path.isdir(path) or not os.path.exists(path):
    raise DataError(f"CIFAR-10 file missing: {path} (expected the python-version layout "
                    f"{', '.join(TRAIN_FILES + (TEST_FILE, META_FILE))})")
  try:
    with open(path, "rb") as f:
      return restricted_load(f, encoding="bytes")
  except UnsafePickleError as e:
    raise DataError(f"{path}: unsafe pickle refused: {e}") from e
  except OSError as e:
    raise DataError(f"{path}: cannot be read: {e.strerror or e}") from e
  except Exception as e:  # noqa: BLE001 - any failure to parse an untrusted file is "corrupt"
    raise DataError(f"{path}: not a readable CIFAR-10 batch (truncated or corrupt?): "
                    f"{type(e).__name__}: {str(e)[:300]}") from e


def _labels(path: str, labels, n: int) -> np.ndarray:
  """b'labels' as int32, checked element by element: a list of ints (the original files) or a
  1-D integer array; strings, floats (NaN) and booleans are refused with the file named."""
  if isinstance(labels, np.ndarray):
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
      raise DataError(f"{path}: labels must be in 0..{NUM_CLASSES - 1} (integers), got an "
                      f"array of {labels.dtype} with shape {labels.shape}")
    values = labels
  elif isinstance(labels, (list, tuple)):
    bad = next((i for i, v in enumerate(labels)
                if type(v) is not int or not 0 <= v < NUM_CLASSES), None)
    if bad is not None:
      raise DataError(f"{path}: labels must be in 0..{NUM_CLASSES - 1} (integers), got "
                      f"{type(labels[bad]).__name__} {labels[bad]!r:.50} at index {bad}")
    values = np.asarray(labels, np.int64)
  else:
    raise DataError(f"{path}: b'labels' must be a list of integers, got "
                    f"{type(labels).__name__}")
  if values.shape != (n,):
    raise DataError(f"{path}: {values.shape} labels for {n} images")
  if values.size and (values.min() < 0 or values.max() >= NUM_CLASSES):
    raise DataError(f"{path}: labels must be in 0..{NUM_CLASSES - 1}, got range "
                    f"[{values.min()}, {values.max()}]")
  return values.astype(np.int32)


def read_python_batch(path: str) -> Split:
  """Reads one `data_batch_*` / `test_batch` file into uint8 NHWC images and int32 labels."""
  d = _load_pickle(path)
  if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
    raise DataError(f"{path}: expected a dict with keys b'data' and b'labels', got "
                    f"{type(d).__name__} with keys "
                    f"{sorted(map(repr, d)) if isinstance(d, dict) else '-'}")
  data = d[b"data"]
  if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
      or data.shape[1] != 3 * 32 * 32:
    raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got "
                    f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
  labels = _labels(path, d[b"labels"], data.shape[0])
  # Rows are [1024 red | 1024 green | 1024 blue], each channel row-major.
  images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  return Split(images, labels)


def read_class_names(directory: str) -> tuple[str, ...]:
  meta = _load_pickle(os.path.join(directory, META_FILE))
  names = meta.get(b"label_names") if isinstance(meta, dict) else None
  if not isinstance(names, list) or len(names) != NUM_CLASSES \
      or not all(isinstance(n, (bytes, str)) for n in names):
    raise DataError(f"{os.path.join(directory, META_FILE)}: expected {NUM_CLASSES} "
                    f"b'label_names', got {names!r}")
  try:
    return tuple(n.decode() if isinstance(n, bytes) else n for n in names)
  except UnicodeDecodeError as e:
    raise DataError(f"{os.path.join(directory, META_FILE)}: b'label_names' are not UTF-8 "
                    f"({e})") from e


def load_python_version(directory: str) -> tuple[Split, Split, tuple[str, ...]]:
  """(train, test, class names) from a `cifar-10-batches-py` directory."""
  directory = os.path.expanduser(directory)
  if not os.path.isdir(directory):
    raise DataError(f"data.dir={directory!r} is not a directory; it should hold the CIFAR-10 "
                    "python version (data_batch_1..5, test_batch, batches.meta)")
  names = read_class_names(directory)
  parts = [read_python_batch(os.path.join(directory, f)) for f in TRAIN_FILES]
  train = Split(np.concatenate([p.inputs for p in parts]),
                np.concatenate([p.labels for p in parts]))
  test = read_python_batch(os.path.join(directory, TEST_FILE))
  return train, test, names


def _host_reachable(host_port: tuple[str, int], timeout: float) -> bool:
  try:
    with socket.create_connection(host_port, timeout=timeout):
      return True
  except OSError:
    return False


def _tfds_split_to_arrays(source) -> Split:
  records = [source[i] for i in range(len(source))]
  if not records:
    return Split(np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0,), np.int32))
  images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
  labels = np.asarray([int(r["label"]) for r in records], np.int32)
  return Split(images, labels)


def load_tfds(data_dir: str | None, download: bool, probe_timeout: float = 3.0
              ) -> tuple[Split, Split, tuple[str, ...]]:
  """(train, test, class names) through `tfds.data_source`, preparing the dataset if allowed.

  TFDS retries an offline download for minutes; we probe the download host first and fail in
  seconds with a message that names the local-directory option.
  """
  import tensorflow_datasets as tfds  # Imported lazily: heavy, and only this path needs it.

  def sources():
    return tfds.data_source("cifar10", split=["train", "test"], data_dir=data_dir, download=False)

  try:
    train_src, test_src = sources()
  except Exception as not_prepared:  # TFDS raises several types for "not prepared here".
    if not download:
      raise DataError(f"TFDS cifar10 is not prepared in data_dir={data_dir!r} and "
                      f"data.download=False; {LOCAL_HINT}") from not_prepared
    if not _host_reachable(TFDS_DOWNLOAD_HOST, probe_timeout):
      raise DataError(f"TFDS would download cifar10 from {TFDS_DOWNLOAD_HOST[0]}, which is "
                      f"unreachable (offline?); {LOCAL_HINT}") from not_prepared
    try:
      builder = tfds.builder("cifar10", data_dir=data_dir, file_format="array_record")
      builder.download_and_prepare()
    except ImportError as e:
      raise DataError("TFDS needs TensorFlow to prepare cifar10: pip install "
                      f"'lwi-jax[tfds-prepare]'; or {LOCAL_HINT}") from e
    train_src, test_src = sources()
  names = tuple(train_src.dataset_info.features["label"].names)
  return _tfds_split_to_arrays(train_src), _tfds_split_to_arrays(test_src), names


def load(cfg) -> ClassificationData:
  """CIFAR-10 from `data.source`: a cifar-10-batches-py directory (`data.dir`) or TFDS."""
  if cfg.source == "python":
    if not cfg.dir:
      raise DataError("data.dir must point at a cifar-10-batches-py directory when "
                      "data.source='python'")
    train, test, names = load_python_version(cfg.dir)
    info = {"source": "python", "dir": cfg.dir}
  elif cfg.source == "tfds":
    train, test, names = load_tfds(cfg.tfds_data_dir or None, cfg.download)
    info = {"source": "tfds"}
  else:
    raise DataError(f"data.source={cfg.source!r} is not one of ['python', 'tfds']")
  return splits.with_validation_split(train, test, names, cfg, info)
