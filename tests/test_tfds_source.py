"""The TFDS sources through `tfds.data_source` (no TensorFlow, no network): cifar10 mocked, and
split slicing on a tiny dataset that TFDS prepares here (array_record, Tensor features: the
Image feature's encoder needs TensorFlow, a uint8 Tensor does not)."""

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


TRAIN_N, TEST_N = 31, 13  # no .5 in any slice below, so TFDS's rounding is not in question


@pytest.fixture(scope="module")
def sliceable(tmp_path_factory):
  """A prepared 3-class TFDS dataset whose pixel value is the example's id (train 0..30,
  test 100..112), so every selected row can be named."""

  class LwiSlicingCheck(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
          "label": tfds.features.ClassLabel(names=["a", "b", "c"])}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(0, TRAIN_N),
              "test": self._generate_examples(100, TEST_N)}

    def _generate_examples(self, start, n):
      for i in range(start, start + n):
        yield str(i), {"image": np.full((8, 8, 1), i, np.uint8), "label": i % 3}

  data_dir = str(tmp_path_factory.mktemp("tfds"))
  LwiSlicingCheck(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return data_dir


def _ids(split):
  return split.inputs[:, 0, 0, 0].astype(int).tolist()


@pytest.mark.parametrize("train_split,test_split,train_rows,test_rows", [
    ("train[:90%]", "test[10%:]", slice(0, 28), slice(1, TEST_N)),  # round(27.9), round(1.3)
    ("train[3:-2]", "test[:40%]", slice(3, TRAIN_N - 2), slice(0, 5)),  # round(5.2)
])
def test_tfds_images_split_slicing_selects_the_rows(sliceable, train_split, test_split,
                                                    train_rows, test_rows):
  name = "lwi_slicing_check"
  # TFDS stores a split shuffled by key; a slice is of that stored order, read here unsliced
  full = {s: [int(src[i]["image"][0, 0, 0]) for i in range(len(src))] for s, src in zip(
      ("train", "test"), tfds.data_source(name, split=["train", "test"], data_dir=sliceable))}
  assert sorted(full["train"]) == list(range(TRAIN_N))
  cfg = ml_collections.ConfigDict(dict(
      name="tfds_images", tfds_name=name, train_split=train_split, test_split=test_split,
      tfds_data_dir=sliceable, download=False, image_key="image", label_key="label",
      validation_fraction=0.2, split_seed=0, train_per_class=0, test_per_class=0))
  data = data_lib.load_dataset(cfg)
  assert data.class_names == ("a", "b", "c")
  want_train, want_test = full["train"][train_rows], full["test"][test_rows]
  assert len(data.train) + len(data.validation) == len(want_train)
  assert sorted(_ids(data.train) + _ids(data.validation)) == sorted(want_train)
  assert _ids(data.test) == want_test  # the test split is taken as TFDS gives it, in order
  for split in (data.train, data.validation, data.test):
    np.testing.assert_array_equal(split.labels, np.asarray(_ids(split)) % 3)
