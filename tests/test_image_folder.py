"""The image sources (folder, npz, TFDS by name) on tiny generated data, and the equivalence of a
PNG copy of real CIFAR-10 images with the python pickles (a few hundred images; the full 60,000
and the :smoke study comparison are bench/image_folder_speed.py)."""

import os

import numpy as np
import pytest
from PIL import Image, features

from configs import images as images_config
from lwi_jax import data as data_lib
from lwi_jax.data import cifar10, image_export, image_folder, image_scan
from lwi_jax.data.errors import DataError
from lwi_jax.data.types import Split

WEBP = features.check("webp")
RNG = np.random.default_rng(0)


def _rgb(size=12):
  return RNG.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _cfg(root, tmp_path, **overrides):
  cfg = images_config.get_config("folder").data
  cfg.update(dict(root=str(root), cache_dir=str(tmp_path / "cache"), validation_fraction=0.2,
                  test_fraction=0.2, min_validation_per_class=1), **overrides)
  return cfg


@pytest.fixture()
def mixed(tmp_path):
  """root/<class>/ with every format, mode and oddity the source must handle."""
  root = tmp_path / "mixed"
  for d in ("cat/sub", "dog", "empty"):
    (root / d).mkdir(parents=True)
  pixels = {"cat/a.png": _rgb(), "cat/sub/nested.bmp": _rgb(), "cat/c.png": _rgb()}
  for rel, x in pixels.items():
    Image.fromarray(x).save(root / rel)
  Image.fromarray(_rgb()).save(root / "cat/b.jpg", quality=95)
  grey = RNG.integers(0, 256, (12, 12), dtype=np.uint8)
  Image.fromarray(grey).save(root / "dog/e.png")
  rgba = RNG.integers(0, 256, (12, 12, 4), dtype=np.uint8)
  Image.fromarray(rgba).save(root / "dog/f.png")
  frames = [Image.new("P", (12, 12), c) for c in (3, 7)]
  for f in frames:  # a grey palette: index i is the colour (i, i, i)
    f.putpalette([v for i in range(256) for v in (i, i, i)])
  frames[0].save(root / "dog/g.gif", save_all=True, append_images=frames[1:])
  if WEBP:
    Image.fromarray(_rgb()).save(root / "dog/h.webp", lossless=True)
  (root / "cat/.hidden.png").write_bytes(b"x")
  (root / ".DS_Store").write_bytes(b"x")
  (root / "cat/notes.txt").write_text("not an image")
  (root / "README.md").write_text("outside any class")
  return root, pixels, grey, rgba


def test_class_layout_loads_every_format_and_counts_what_it_skips(mixed, tmp_path):
  root, pixels, grey, rgba = mixed
  scan = image_scan.scan(str(root), "auto")
  assert scan.layout == "class" and scan.class_names == ("cat", "dog")
  assert {k: len(v) for k, v in scan.skipped.items() if v} == {
      "hidden": 2, "not_an_image": 1, "outside_class_folders": 1, "empty_class_folders": 1}
  arrays, _, reused = image_folder.decoded(_cfg(root, tmp_path), scan, str(root))
  by_path = dict(zip(arrays["paths"], arrays["images"]))
  assert not reused and len(by_path) == 7 + WEBP
  assert all(x.shape == (12, 12, 3) for x in by_path.values())  # auto: colour present -> 3
  for rel, x in pixels.items():  # lossless formats, nested folder included, exact pixels
    np.testing.assert_array_equal(by_path[rel], x)
  np.testing.assert_array_equal(by_path["dog/e.png"], np.repeat(grey[..., None], 3, -1))
  np.testing.assert_array_equal(by_path["dog/f.png"], rgba[..., :3])  # alpha dropped
  np.testing.assert_array_equal(by_path["dog/g.gif"], np.full((12, 12, 3), 3))  # frame 0, not 7
  data = data_lib.load_dataset(_cfg(root, tmp_path))
  assert data.info["skipped"]["empty_class_folders"] == 1
  assert len(data.train) + len(data.validation) + len(data.test) == 7 + WEBP
  assert data.info["cache_reused"]
  lines = "\n".join(data_lib.summary_lines(data))
  assert "empty class folders" in lines and "cat" in lines


def test_channels_and_sizes(mixed, tmp_path):
  root = mixed[0]
  grey = image_folder.decoded(_cfg(root, tmp_path, channels=1), image_scan.scan(str(root), "class"),
                              str(root))[0]["images"]
  assert grey.shape[1:] == (12, 12, 1)
  Image.fromarray(_rgb(10)).save(root / "dog/small.png")
  with pytest.raises(DataError, match=r"differ in size.*10x10.*data.image_size"):
    data_lib.load_dataset(_cfg(root, tmp_path))
  data = data_lib.load_dataset(_cfg(root, tmp_path, image_size=8, channels=4))
  assert data.train.inputs.shape[1:] == (8, 8, 4)


def test_unreadable_files_are_named_or_skipped_and_counted(mixed, tmp_path):
  root = mixed[0]
  (root / "dog/bad.png").write_bytes(b"\x89PNG not really")
  good = (root / "cat/a.png").read_bytes()
  (root / "cat/truncated.png").write_bytes(good[:len(good) // 2])
  with pytest.raises(DataError, match=r"bad\.png: not a readable image.*1 more.*skip_bad_images"):
    data_lib.load_dataset(_cfg(root, tmp_path))
  data = data_lib.load_dataset(_cfg(root, tmp_path, skip_bad_images=True))
  assert data.info["skipped"]["unreadable"] == 2
  assert sorted(data.info["unreadable"]) == ["cat/truncated.png", "dog/bad.png"]


def test_cache_follows_edits_and_memory_is_checked(mixed, tmp_path, monkeypatch):
  root = mixed[0]
  first = data_lib.load_dataset(_cfg(root, tmp_path))
  again = data_lib.load_dataset(_cfg(root, tmp_path))
  assert again.info["cache_reused"] and data_lib.content_hash(first) == data_lib.content_hash(again)
  Image.fromarray(_rgb()).save(root / "cat/a.png")
  os.utime(root / "cat/a.png", ns=(1, 1))  # even an old mtime differs from the cached one
  edited = data_lib.load_dataset(_cfg(root, tmp_path))
  assert not edited.info["cache_reused"]
  assert data_lib.content_hash(edited) != data_lib.content_hash(first)
  monkeypatch.setattr(image_folder, "available_memory_bytes", lambda: 1000)
  with pytest.raises(DataError, match=r"need .* GiB .* available; set a smaller data.image_size"):
    data_lib.load_dataset(_cfg(root, tmp_path, image_size=9))


def _split_tree(root, spec):
  for rel, n in spec.items():
    (root / rel).mkdir(parents=True)
    for i in range(n):
      Image.fromarray(_rgb(9)).save(root / rel / f"{i:03d}.png")


def test_split_layout(tmp_path):
  root = tmp_path / "split"
  _split_tree(root, {"train/a": 6, "train/b": 6, "test/a": 2, "test/b": 2, "valid/a": 2,
                     "valid/b": 2, "extras/a": 1})
  data = data_lib.load_dataset(_cfg(root, tmp_path))
  assert (len(data.train), len(data.validation), len(data.test)) == (12, 4, 4)
  assert data.info["layout"] == "split" and data.info["skipped"] == {"not_a_split_folder": 1}
  assert data.train.inputs.shape[1:] == (9, 9, 3)


@pytest.mark.parametrize("spec,error", [
    ({"train/a": 3, "train/b": 3, "test/a": 1}, r"classes without a test image: \['b'\]"),
    ({"train/a": 3, "test/a": 1, "test/z": 1}, r"classes in 'test' without a training image"),
    ({"training/a": 3}, r"no class folder with an image"),
])
def test_split_layout_refusals(tmp_path, spec, error):
  root = tmp_path / "bad"
  _split_tree(root, spec)
  (root / "training/a").mkdir(parents=True, exist_ok=True)  # 'training' is not a split name
  for f in (root / "training/a").iterdir():
    f.unlink()
  with pytest.raises(DataError, match=error):
    data_lib.load_dataset(_cfg(root, tmp_path))


def test_png_copy_of_real_cifar10_loads_to_the_pickles_arrays(cifar10_dir, tmp_path):
  train = cifar10.read_python_batch(os.path.join(cifar10_dir, "data_batch_1")).take(
      np.arange(300))
  test = cifar10.read_python_batch(os.path.join(cifar10_dir, "test_batch")).take(np.arange(100))
  names = cifar10.read_class_names(cifar10_dir)
  parts = {"train": train, "test": test}
  for layout in ("split", "class"):
    image_export.write_image_folder(str(tmp_path / layout), parts, names, layout)
    cfg = _cfg(tmp_path / layout, tmp_path, layout=layout)
    scan = image_scan.scan(cfg.root, layout)
    arrays = image_folder.decoded(cfg, scan, cfg.root)[0]
    np.testing.assert_array_equal(arrays["images"], np.concatenate([train.inputs, test.inputs]))
    np.testing.assert_array_equal(arrays["labels"], np.concatenate([train.labels, test.labels]))
  assert scan.class_names == tuple(sorted(names))  # folder names sort; labels follow them
  loaded = data_lib.load_dataset(_cfg(tmp_path / "split", tmp_path, validation_fraction=0.1))
  np.testing.assert_array_equal(loaded.test.inputs, test.inputs)


def test_npz_source(tmp_path):
  path = tmp_path / "a.npz"
  x = RNG.integers(0, 256, (40, 9, 9), dtype=np.uint8)
  y = np.arange(40) % 4
  np.savez(path, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:],
           class_names=np.array(["w", "x", "y", "z"]))
  cfg = images_config.get_config("npz").data
  cfg.update(dict(path=str(path), validation_fraction=0.2))
  data = data_lib.load_dataset(cfg)
  assert data.train.inputs.shape[1:] == (9, 9, 1) and data.class_names == ("w", "x", "y", "z")
  assert len(data.info["pixel_mean"]) == 1
  np.savez(path, x_train=x[:30].astype(np.float32), y_train=y[:30], x_test=x[30:], y_test=y[30:])
  with pytest.raises(DataError, match="x_train must be uint8"):
    data_lib.load_dataset(cfg)


def test_tfds_images_by_name_with_slicing(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  cfg = images_config.get_config("tfds").data
  cfg.update(dict(train_split="train[:50%]", test_split="test[10%:]", validation_fraction=0.2,
                  min_validation_per_class=1))
  asked = []
  real = tfds.data_source
  monkeypatch.setattr(tfds, "data_source",
                      lambda *a, **k: asked.append(k["split"]) or real(*a, **k))
  # mock_data serves num_examples per split whatever the slice: the slice itself is TFDS's job,
  # so this checks the split strings reach it unchanged, and the arrays and names come back.
  with tfds.testing.mock_data(num_examples=200, policy=tfds.testing.MockPolicy.USE_CODE):
    data = data_lib.load_dataset(cfg)
  assert asked == [["train[:50%]", "test[10%:]"]]
  assert data.class_names == tuple(str(i) for i in range(10))
  assert data.train.inputs.shape[1:] == (28, 28, 1) and len(data.test) == 200
  cfg.tfds_name = "mnist_typo"
  with pytest.raises(DataError, match="mnist_typo"):
    data_lib.load_dataset(cfg)


def test_imbalance_is_reported(tmp_path):
  root = tmp_path / "imb"
  _split_tree(root, {"a": 20, "b": 6})
  data = data_lib.load_dataset(_cfg(root, tmp_path))
  # a: 20 - 4 test - 3 validation = 13 training images; b: 6 - 1 - 1 = 4
  assert not data.info["balanced"] and data.info["imbalance_ratio"] == pytest.approx(13 / 4)
  assert any(l.startswith("WARNING: the training classes are not balanced")
             for l in data_lib.summary_lines(data))


def test_export_refuses_lossy_formats_and_bad_names(tmp_path):
  part = {"train": Split(np.zeros((1, 8, 8, 3), np.uint8), np.zeros(1, np.int32))}
  with pytest.raises(ValueError, match="lossless"):
    image_export.write_image_folder(str(tmp_path), part, ["a"], fmt="jpeg")
  with pytest.raises(ValueError, match="cannot be a folder name"):
    image_export.write_image_folder(str(tmp_path), part, ["../a"])
