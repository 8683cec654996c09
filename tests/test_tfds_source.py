"""The TFDS source through `tfds.data_source`, mocked (no TensorFlow, no network)."""

import socket
import time

import ml_collections
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax.data import cifar10
from lwi_jax.data.errors import DataError

tfds = pytest.importorskip("tensorflow_datasets")

NUM_EXAMPLES = 200


def _cfg(**overrides):
  cfg = ml_collections.ConfigDict(dict(
      name="cifar10", source="tfds", dir="", tfds_data_dir="", download=False,
      validation_fraction=0.1, split_seed=0, train_per_class=0, test_per_class=0))
  cfg.update(overrides)
  return cfg


@pytest.fixture(scope="module")
def mocked():
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    train, test, names = cifar10.load_tfds(None, download=False)
    data = data_lib.load_dataset(_cfg())
  return train, test, names, data


def test_load_tfds_arrays(mocked):
  train, test, names, _ = mocked
  for split in (train, test):
    assert split.inputs.shape == (NUM_EXAMPLES, 32, 32, 3)
    assert split.inputs.dtype == np.uint8
    assert split.labels.shape == (NUM_EXAMPLES,) and split.labels.dtype == np.int32
    assert split.labels.min() >= 0 and split.labels.max() < 10
  assert len(names) == 10
  # Mocked images are random, not constant: the conversion kept the pixels.
  assert train.inputs.std() > 10


def test_load_dataset_tfds_carves_validation(mocked):
  train, test, _, data = mocked
  assert data.info["source"] == "tfds"
  assert len(data.train) + len(data.validation) == NUM_EXAMPLES
  assert len(data.test) == NUM_EXAMPLES
  np.testing.assert_array_equal(data.test.labels, test.labels)
  counts = np.bincount(train.labels, minlength=10)
  val_counts = np.bincount(data.validation.labels, minlength=10)
  # Stratified: round(10%) of every class, at least one.
  np.testing.assert_array_equal(val_counts, np.maximum(np.round(0.1 * counts), 1).astype(int))
  np.testing.assert_array_equal(np.bincount(data.train.labels, minlength=10), counts - val_counts)


def test_offline_download_fails_fast_with_local_hint(tmp_path, monkeypatch):
  probed = []

  def unreachable(host_port, timeout):
    probed.append(host_port)
    return False

  monkeypatch.setattr(cifar10, "_host_reachable", unreachable)
  start = time.perf_counter()
  with pytest.raises(DataError) as e:
    data_lib.load_dataset(_cfg(tfds_data_dir=str(tmp_path), download=True))
  elapsed = time.perf_counter() - start
  msg = str(e.value)
  assert "data.source=python" in msg and "data.dir" in msg
  assert "unreachable" in msg
  assert probed == [cifar10.TFDS_DOWNLOAD_HOST]
  assert elapsed < 30, f"offline failure took {elapsed:.0f}s"
  assert not any(tmp_path.rglob("*.array_record*"))


def test_unprepared_without_download_is_a_data_error(tmp_path, monkeypatch):
  def must_not_probe(*args):
    raise AssertionError("download=False must not touch the network")

  monkeypatch.setattr(cifar10, "_host_reachable", must_not_probe)
  with pytest.raises(DataError) as e:
    cifar10.load_tfds(str(tmp_path), download=False)
  assert "data.download=False" in str(e.value)
  assert str(tmp_path) in str(e.value)
  assert "data.source=python" in str(e.value)


def test_host_probe_on_local_sockets():
  server = socket.socket()
  server.bind(("127.0.0.1", 0))
  server.listen(1)
  port = server.getsockname()[1]
  try:
    assert cifar10._host_reachable(("127.0.0.1", port), timeout=2.0)
  finally:
    server.close()
  # Nothing listens there any more.
  assert not cifar10._host_reachable(("127.0.0.1", port), timeout=2.0)
