"""CIFAR-10 python-version loader: the real shared data, the validation split, broken and
malicious files, and the restricted unpickler."""

import builtins
import codecs
import hashlib
import os
import pickle

import ml_collections
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax.data import cifar10, safe_pickle
from lwi_jax.data.errors import DataError
from lwi_jax.data.splits import stratified_split

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
# From ../shared/data/cifar10/README.md (same as the official files).
FIRST_TRAIN_LABELS = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
FIRST_TEST_LABELS = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
BATCH1_COUNTS = [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]


def _cfg(directory, **overrides):
  cfg = ml_collections.ConfigDict(dict(
      name="cifar10", source="python", dir=str(directory), tfds_data_dir="", download=False,
      validation_fraction=0.1, split_seed=0, train_per_class=0, test_per_class=0))
  cfg.update(overrides)
  return cfg


# ------------------------------------------------ the real data, and the miniature copy of it
# Tests on `raw_any` / `split_any` run twice: on the generated miniature directory (always) and
# on the real 60,000 images (skipped without the copy, failed under CI=true; conftest.py).


@pytest.fixture(scope="module")
def raw(cifar10_dir):
  """(train, test, names) of the real copy straight from the loader, once per module (~2 s)."""
  return cifar10.load_python_version(cifar10_dir)


@pytest.fixture(scope="module", params=["tiny", "real"])
def any_dir(request):
  return request.getfixturevalue("tiny_cifar10_dir" if request.param == "tiny" else "cifar10_dir")


@pytest.fixture(scope="module")
def raw_any(request, any_dir):
  if any_dir == request.getfixturevalue("tiny_cifar10_dir"):
    return cifar10.load_python_version(any_dir)
  return request.getfixturevalue("raw")


@pytest.fixture(scope="module")
def split_any(any_dir):
  """The real load_dataset path with a ConfigDict (validation carved with split_seed 0)."""
  return data_lib.load_dataset(_cfg(any_dir))


def test_real_sizes_dtypes_and_counts(raw):
  train, test, names = raw
  assert names == CLASS_NAMES
  assert train.inputs.shape == (50_000, 32, 32, 3) and train.inputs.dtype == np.uint8
  assert test.inputs.shape == (10_000, 32, 32, 3) and test.inputs.dtype == np.uint8
  assert train.labels.dtype == np.int32 and test.labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), np.full(10, 5000))
  np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), np.full(10, 1000))
  np.testing.assert_array_equal(np.bincount(train.labels[:10_000], minlength=10), BATCH1_COUNTS)
  assert train.labels[:10].tolist() == FIRST_TRAIN_LABELS
  assert test.labels[:10].tolist() == FIRST_TEST_LABELS
  assert train.inputs.flags.c_contiguous


def test_tiny_sizes_dtypes_and_counts(tiny_cifar10_dir):
  train, test, names = cifar10.load_python_version(tiny_cifar10_dir)
  assert names == CLASS_NAMES
  assert train.inputs.shape == (500, 32, 32, 3) and train.inputs.dtype == np.uint8
  assert test.inputs.shape == (200, 32, 32, 3) and train.labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), np.full(10, 50))
  np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), np.full(10, 20))
  assert train.inputs.flags.c_contiguous


@pytest.mark.parametrize("split, filename, index", [("train", "data_batch_1", 0),
                                                    ("train", "data_batch_3", 23),
                                                    ("test", "test_batch", -1)])
def test_pixel_layout_is_rgb_nhwc(raw_any, any_dir, split, filename, index):
  # Row layout: [1024 red | 1024 green | 1024 blue], each channel row-major (README).
  with open(os.path.join(any_dir, filename), "rb") as f:
    rows = safe_pickle.restricted_load(f)[b"data"]
  offset = 2 * len(rows) if filename == "data_batch_3" else 0
  image = (raw_any[0] if split == "train" else raw_any[1]).inputs[offset + index]
  row = rows[index]
  for y, x, c in [(0, 0, 0), (0, 31, 1), (31, 0, 2), (17, 5, 0), (3, 29, 2), (31, 31, 1)]:
    assert image[y, x, c] == row[c * 1024 + y * 32 + x], (y, x, c)


def test_validation_split_is_stratified_and_disjoint(raw_any, split_any):
  train, test, _ = raw_any
  split0 = split_any
  n, per_class = len(train), len(train) // 10  # both copies are balanced
  assert split0.class_names == CLASS_NAMES
  assert split0.info["source"] == "python"
  assert len(split0.train) == n * 9 // 10 and len(split0.validation) == n // 10
  np.testing.assert_array_equal(np.bincount(split0.validation.labels, minlength=10),
                                np.full(10, per_class // 10))
  np.testing.assert_array_equal(np.bincount(split0.train.labels, minlength=10),
                                np.full(10, per_class * 9 // 10))
  np.testing.assert_array_equal(split0.class_counts, np.full(10, per_class * 9 // 10))
  # The test split is untouched.
  np.testing.assert_array_equal(split0.test.labels, test.labels)
  assert np.array_equal(split0.test.inputs, test.inputs)
  # By indices: the split load_dataset made is stratified_split(seed) of the pool, disjoint.
  keep, held = stratified_split(train.labels, 0.1, 0)
  assert np.intersect1d(keep, held).size == 0
  assert np.union1d(keep, held).size == n
  np.testing.assert_array_equal(split0.validation.labels, train.labels[held])
  assert np.array_equal(split0.validation.inputs, train.inputs[held])
  np.testing.assert_array_equal(split0.train.labels, train.labels[keep])
  assert np.array_equal(split0.train.inputs[::97], train.inputs[keep[::97]])
  # By content: no validation image's bytes equal any training image row.
  train_hashes = {hashlib.blake2b(r.tobytes(), digest_size=16).digest()
                  for r in split0.train.inputs.reshape(len(split0.train), -1)}
  assert len(train_hashes) == len(split0.train)  # sanity: the hash tells images apart
  m = min(1000, len(split0.validation))
  sample = np.random.default_rng(0).choice(len(split0.validation), m, replace=False)
  val_rows = split0.validation.inputs.reshape(len(split0.validation), -1)[sample]
  assert not any(hashlib.blake2b(r.tobytes(), digest_size=16).digest() in train_hashes
                 for r in val_rows)
  # ...and the check would catch a leak: a training row is found.
  row = split0.train.inputs[123].reshape(-1)
  assert hashlib.blake2b(row.tobytes(), digest_size=16).digest() in train_hashes


def test_validation_split_is_seeded(tiny_cifar10_dir):
  first = data_lib.load_dataset(_cfg(tiny_cifar10_dir, split_seed=0))
  again = data_lib.load_dataset(_cfg(tiny_cifar10_dir, split_seed=0))
  np.testing.assert_array_equal(again.validation.labels, first.validation.labels)
  assert np.array_equal(again.validation.inputs, first.validation.inputs)
  other = data_lib.load_dataset(_cfg(tiny_cifar10_dir, split_seed=1))
  np.testing.assert_array_equal(np.bincount(other.validation.labels, minlength=10),
                                np.full(10, 5))
  assert not np.array_equal(other.validation.inputs, first.validation.inputs)


def test_stratified_split_indices_by_seed():
  labels = np.repeat(np.arange(4), 50).astype(np.int32)
  k0, h0 = stratified_split(labels, 0.1, 0)
  k0b, h0b = stratified_split(labels, 0.1, 0)
  _, h1 = stratified_split(labels, 0.1, 1)
  np.testing.assert_array_equal(h0, h0b)
  np.testing.assert_array_equal(k0, k0b)
  assert not np.array_equal(h0, h1)
  np.testing.assert_array_equal(np.bincount(labels[h0]), [5, 5, 5, 5])
  assert (np.diff(h0) > 0).all() and (np.diff(k0) > 0).all()  # sorted, no repeats


def test_per_class_subsets(tiny_cifar10_dir):
  d = data_lib.load_dataset(_cfg(tiny_cifar10_dir, train_per_class=20, test_per_class=7))
  np.testing.assert_array_equal(np.bincount(d.train.labels, minlength=10), np.full(10, 18))
  np.testing.assert_array_equal(np.bincount(d.validation.labels, minlength=10), np.full(10, 2))
  np.testing.assert_array_equal(np.bincount(d.test.labels, minlength=10), np.full(10, 7))


def test_config_errors_name_the_field(tiny_cifar10_dir):
  cifar10_dir = tiny_cifar10_dir
  with pytest.raises(DataError, match="data.source='bogus'") as e:
    data_lib.load_dataset(_cfg(cifar10_dir, source="bogus"))
  assert "python" in str(e.value) and "tfds" in str(e.value)
  with pytest.raises(DataError, match="data.name='mnist'"):
    data_lib.load_dataset(_cfg(cifar10_dir, name="mnist"))
  with pytest.raises(DataError, match="data.dir"):
    data_lib.load_dataset(_cfg("", source="python"))
  with pytest.raises(ValueError, match="validation fraction"):
    data_lib.load_dataset(_cfg(cifar10_dir, validation_fraction=1.0))


def test_missing_directory(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(DataError, match="data.dir") as e:
    cifar10.load_python_version(str(missing))
  assert str(missing) in str(e.value)


# ------------------------------------------------------------------------ fake batch files


def _write(path, obj, protocol=2):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=protocol)


def _batch(n=4, seed=0, labels=None):
  rng = np.random.default_rng(seed)
  data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
  if labels is None:
    labels = [int(v) for v in rng.integers(0, 10, n)]
  return {b"batch_label": b"fake", b"labels": labels, b"data": data,
          b"filenames": [b"x.png"] * n}


@pytest.fixture
def fake_dir(tmp_path):
  """A well-formed miniature python-version directory (pickle protocol 2, like the originals)."""
  d = tmp_path / "cifar-10-batches-py"
  d.mkdir()
  _write(d / "batches.meta", {b"label_names": [n.encode() for n in CLASS_NAMES],
                              b"num_cases_per_batch": 4, b"num_vis": 3072})
  for i, name in enumerate(cifar10.TRAIN_FILES + (cifar10.TEST_FILE,)):
    _write(d / name, _batch(seed=i))
  return d


def test_fake_dir_loads(fake_dir):
  # Positive control for every negative test below: the files are otherwise well formed.
  train, test, names = cifar10.load_python_version(str(fake_dir))
  assert names == CLASS_NAMES
  assert train.inputs.shape == (20, 32, 32, 3) and test.inputs.shape == (4, 32, 32, 3)
  expected = _batch(seed=0)
  np.testing.assert_array_equal(train.labels[:4], expected[b"labels"])
  np.testing.assert_array_equal(train.inputs[0].transpose(2, 0, 1).reshape(-1),
                                expected[b"data"][0])


@pytest.mark.parametrize("missing", ["data_batch_3", "test_batch", "batches.meta"])
def test_missing_file_names_the_file(fake_dir, missing):
  os.remove(fake_dir / missing)
  with pytest.raises(DataError, match="missing") as e:
    cifar10.load_python_version(str(fake_dir))
  assert str(fake_dir / missing) in str(e.value)


@pytest.mark.parametrize("keep", [0, 10, 0.5])
def test_truncated_file_names_the_file(fake_dir, keep):
  path = fake_dir / "data_batch_2"
  blob = path.read_bytes()
  path.write_bytes(blob[:int(len(blob) * keep) if isinstance(keep, float) else keep])
  with pytest.raises(DataError) as e:
    cifar10.load_python_version(str(fake_dir))
  assert str(path) in str(e.value)
  assert "truncated" in str(e.value) or "corrupt" in str(e.value)


def test_garbage_file(fake_dir):
  path = fake_dir / "data_batch_4"
  path.write_bytes(os.urandom(64) + b"not a pickle")
  with pytest.raises(DataError) as e:
    cifar10.load_python_version(str(fake_dir))
  assert str(path) in str(e.value)


@pytest.mark.parametrize("mutate, needle", [
    (lambda b: {**b, b"data": b[b"data"][:, :3000]}, "(N, 3072)"),
    (lambda b: {**b, b"data": b[b"data"].reshape(4, 3, 32, 32)}, "(N, 3072)"),
    (lambda b: {**b, b"data": b[b"data"].astype(np.float32)}, "uint8"),
    (lambda b: {**b, b"labels": [0, 10, 1, 2]}, "labels must be in 0..9"),
    (lambda b: {**b, b"labels": [0, -1, 1, 2]}, "labels must be in 0..9"),
    (lambda b: {**b, b"labels": [0, 1, 2]}, "labels for 4 images"),
    (lambda b: {b"data": b[b"data"]}, "b'labels'"),
    (lambda b: [b[b"data"]], "expected a dict"),
])
def test_malformed_batch_names_the_file(fake_dir, mutate, needle):
  path = fake_dir / "data_batch_5"
  _write(path, mutate(_batch(seed=4)))
  with pytest.raises(DataError) as e:
    cifar10.load_python_version(str(fake_dir))
  assert str(path) in str(e.value)
  assert needle in str(e.value)


def test_bad_meta(fake_dir):
  _write(fake_dir / "batches.meta", {b"label_names": [b"a", b"b"]})
  with pytest.raises(DataError, match="label_names") as e:
    cifar10.load_python_version(str(fake_dir))
  assert str(fake_dir / "batches.meta") in str(e.value)


# ------------------------------------------------------------------------- malicious pickles


class _Reduce:
  """Pickles as `fn(*args)`: what an attacker puts in a downloaded batch file."""

  def __init__(self, fn, args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    return self.fn, self.args


def _payloads(marker):
  return {
      "os.system": _Reduce(os.system, (f"echo pwned > {marker}",)),
      "builtins.eval": _Reduce(builtins.eval, (f"open({str(marker)!r}, 'w').write('pwned')",)),
      "builtins.exec": _Reduce(builtins.exec, (f"open({str(marker)!r}, 'w').write('pwned')",)),
      "nested": {b"data": _Reduce(os.system, (f"echo pwned > {marker}",)), b"labels": []},
  }


def test_payload_really_runs_under_plain_pickle(tmp_path):
  # Control: the eval payload does write the marker when unpickled without restrictions.
  marker = tmp_path / "control"
  pickle.loads(pickle.dumps(_payloads(marker)["builtins.eval"], protocol=2))
  assert marker.exists()


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "builtins.exec", "nested"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_refused_without_side_effect(tmp_path, kind, protocol):
  marker = tmp_path / "pwned"
  blob = pickle.dumps(_payloads(marker)[kind], protocol=protocol)
  with pytest.raises(safe_pickle.UnsafePickleError) as e:
    safe_pickle.restricted_loads(blob)
  assert "refusing to load global" in str(e.value)
  assert ("system" if kind in ("os.system", "nested") else kind.split(".")[1]) in str(e.value)
  assert not marker.exists()


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "nested"])
def test_malicious_batch_file_gives_clear_data_error(fake_dir, tmp_path, kind):
  marker = tmp_path / "pwned"
  path = fake_dir / "data_batch_1"
  _write(path, _payloads(marker)[kind])
  with pytest.raises(DataError) as e:
    cifar10.load_python_version(str(fake_dir))
  msg = str(e.value)
  assert str(path) in msg and "unsafe pickle refused" in msg
  assert not marker.exists()
  assert not (fake_dir / "pwned").exists() and not os.path.exists("pwned")


def test_codecs_encode_only_latin1(tmp_path):
  # Protocol 2 stores bytes as _codecs.encode(str, 'latin1'); other codecs stay refused.
  assert codecs.encode.__module__ == "_codecs"
  blob = pickle.dumps(_Reduce(codecs.encode, ("abc", "rot13")), protocol=2)
  with pytest.raises(safe_pickle.UnsafePickleError, match="latin1"):
    safe_pickle.restricted_loads(blob)


# ---------------------------------------------------------------------- legitimate pickles


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("encoding", ["bytes", "latin1"])
def test_restricted_unpickler_loads_numpy_arrays(protocol, encoding):
  obj = {b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072),
         b"labels": [3, 7], b"name": b"training batch 1 of 5",
         "f64": np.linspace(0, 1, 6).reshape(2, 3), "fortran": np.asfortranarray(np.eye(3)),
         "scalar": np.float32(2.5)}
  out = safe_pickle.restricted_loads(pickle.dumps(obj, protocol=protocol), encoding=encoding)
  np.testing.assert_array_equal(out[b"data"], obj[b"data"])
  assert out[b"data"].dtype == np.uint8
  assert out[b"labels"] == [3, 7] and out[b"name"] == b"training batch 1 of 5"
  np.testing.assert_array_equal(out["f64"], obj["f64"])
  np.testing.assert_array_equal(out["fortran"], obj["fortran"])
  assert out["scalar"] == np.float32(2.5)


@pytest.mark.parametrize("encoding, key", [("bytes", b"data"), ("latin1", "data")])
def test_restricted_unpickler_reads_python2_style_files(any_dir, encoding, key):
  # The real files are Python 2 cPickle output (str opcodes); so is the miniature copy.
  with open(os.path.join(any_dir, "batches.meta"), "rb") as f:
    meta = safe_pickle.restricted_load(f, encoding=encoding)
  names_key = b"label_names" if encoding == "bytes" else "label_names"
  assert [n.decode() if isinstance(n, bytes) else n for n in meta[names_key]] == \
      list(CLASS_NAMES)
  with open(os.path.join(any_dir, "test_batch"), "rb") as f:
    d = safe_pickle.restricted_load(f, encoding=encoding)
  labels_key = b"labels" if encoding == "bytes" else "labels"
  assert d[key].shape == (len(d[labels_key]), 3072) and d[key].dtype == np.uint8
  if len(d[labels_key]) == 10_000:  # the real copy
    assert d[labels_key][:10] == FIRST_TEST_LABELS
