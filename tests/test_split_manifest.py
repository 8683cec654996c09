"""The split manifest of an image folder (data.split_manifest): what is written, reusing it
exactly, and what a reuse refuses or ignores, on tiny generated folders. The study writing it
to the workdir and a rerun reusing it: tests/test_image_recipe.py::test_folder_study_end_to_end."""

import json

import numpy as np
import pytest
from PIL import Image

from configs import images as images_config
from lwi_jax import data as data_lib
from lwi_jax.data import split_manifest
from lwi_jax.data.errors import DataError
from lwi_jax.study import phases

RNG = np.random.default_rng(0)
SPLITS = ("train", "validation", "test")


def _folder(root, spec):
  for rel, n in spec.items():
    (root / rel).mkdir(parents=True, exist_ok=True)
    for i in range(n):
      Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
          root / rel / f"{i:03d}.png")
  return root


def _cfg(root, tmp_path, **overrides):
  cfg = images_config.get_config("folder").data
  cfg.update(dict(root=str(root), cache_dir=str(tmp_path / "cache"), validation_fraction=0.25,
                  test_fraction=0.25, min_validation_per_class=1), **overrides)
  return cfg


def _write(manifest, path):
  path.write_text(split_manifest.to_text(manifest))
  return str(path)


def _arrays(data):
  return [getattr(data, s).inputs for s in SPLITS] + [getattr(data, s).labels for s in SPLITS]


@pytest.fixture()
def carved(tmp_path):
  root = _folder(tmp_path / "img", {"cat": 12, "dog": 8})
  data = data_lib.load_dataset(_cfg(root, tmp_path))
  return root, data, _write(data.split_manifest, tmp_path / "split_manifest.json")


def test_manifest_lists_every_file_with_its_class_rule_and_seed(carved):
  root, data, path = carved
  m = split_manifest.read(path)
  assert m == data.split_manifest  # the text form reads back to the same dict
  assert m["layout"] == "class" and m["class_names"] == ["cat", "dog"]
  assert m["rule"] == {"split_seed": 0, "train_per_class": 0, "test_per_class": 0,
                       "test_fraction": 0.25, "validation_fraction": 0.25}
  assert [len(m["splits"][s]) for s in SPLITS] == [len(getattr(data, s)) for s in SPLITS]
  listed = [p for s in SPLITS for p, _ in m["splits"][s]]
  assert sorted(listed) == sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
  for s in SPLITS:  # the class of each listed file is its folder, in the split's label order
    classes = [c for _, c in m["splits"][s]]
    assert classes == [data.class_names[y] for y in getattr(data, s).labels]
    assert all(p.startswith(c + "/") for p, c in m["splits"][s])


def test_reuse_gives_the_same_split_whatever_the_seed(carved, tmp_path):
  root, data, path = carved
  other_seed = data_lib.load_dataset(_cfg(root, tmp_path, split_seed=3))
  assert data_lib.content_hash(other_seed) != data_lib.content_hash(data)  # the seed matters...
  for seed in (0, 3):  # ...unless the manifest is given
    again = data_lib.load_dataset(_cfg(root, tmp_path, split_seed=seed, split_manifest=path))
    for a, b in zip(_arrays(again), _arrays(data)):
      np.testing.assert_array_equal(a, b)
    assert data_lib.content_hash(again) == data_lib.content_hash(data)
    assert again.split_manifest["splits"] == data.split_manifest["splits"]
    assert again.split_manifest["rule"] == data.split_manifest["rule"]  # the rule it came from
    assert again.info["split_manifest_reused"] == path and again.info["unlisted"] == 0


def test_a_moved_file_changes_the_data_hash(carved, tmp_path):
  root, data, path = carved
  m = split_manifest.read(path)
  m["splits"]["test"].append(m["splits"]["train"].pop(0))
  moved = data_lib.load_dataset(_cfg(root, tmp_path,
                                     split_manifest=_write(m, tmp_path / "moved.json")))
  assert len(moved.test) == len(data.test) + 1
  assert data_lib.content_hash(moved) != data_lib.content_hash(data)


def test_a_missing_listed_file_is_refused_by_name_and_count(carved, tmp_path):
  root, data, path = carved
  gone = [data.split_manifest["splits"][s][0][0] for s in ("validation", "test")]
  for rel in gone:
    (root / rel).unlink()
  with pytest.raises(DataError, match=rf"data.split_manifest=.*: 2 listed file\(s\) not found "
                                      rf".*first '{gone[0]}'"):
    data_lib.load_dataset(_cfg(root, tmp_path, split_manifest=path))


def test_files_not_listed_are_ignored_and_counted(carved, tmp_path):
  root, data, path = carved
  _folder(root / "cat" / "new", {"": 2})
  again = data_lib.load_dataset(_cfg(root, tmp_path, split_manifest=path))
  assert again.info["unlisted"] == 2 and again.info["unlisted_examples"] == [
      "cat/new/000.png", "cat/new/001.png"]
  assert data_lib.content_hash(again) == data_lib.content_hash(data)
  line = [l for l in data_lib.summary_lines(again) if "split reused from" in l]
  assert line and "2 file(s) in data.root not listed there, ignored" in line[0]


@pytest.mark.parametrize("change,error", [
    ("class", r"made for source 'image_folder', layout 'class', classes \['cat', 'dog'\]; this "
              r"data is .*classes \['bird', 'cat', 'dog'\]"),
    ("layout", r"layout 'class'.*this data is source 'image_folder', layout 'split'"),
    ("relabel", r"lists 'cat/000.png' as class 'dog'; the folder has it as 'cat'"),
    ("twice", r"lists '.*' twice"),
    ("not_json", r"cannot be read as JSON"),
    ("foreign", r"is not a split manifest"),
])
def test_a_manifest_of_other_data_is_refused(carved, tmp_path, change, error):
  root, data, path = carved
  m = split_manifest.read(path)
  if change == "class":
    _folder(root / "bird", {"": 4})
  if change == "layout":  # the same files under train/ and test/: a split-layout folder
    root = _folder(tmp_path / "split", {"train/cat": 4, "train/dog": 4, "test/cat": 2,
                                        "test/dog": 2})
  if change == "relabel":
    entry = next(e for s in SPLITS for e in m["splits"][s] if e[0] == "cat/000.png")
    entry[1] = "dog"
  if change == "twice":
    m["splits"]["test"].append(m["splits"]["train"][0])
  path = _write(m, tmp_path / "edited.json")
  if change == "not_json":
    (tmp_path / "edited.json").write_text("{ not json")
  if change == "foreign":
    (tmp_path / "edited.json").write_text(json.dumps({"train": []}))
  with pytest.raises(DataError, match=error):
    data_lib.load_dataset(_cfg(root, tmp_path, split_manifest=path))


def test_split_layout_manifest_and_fingerprint(tmp_path):
  root = _folder(tmp_path / "split", {"train/a": 6, "train/b": 6, "test/a": 2, "test/b": 2})
  data = data_lib.load_dataset(_cfg(root, tmp_path))
  m = data.split_manifest
  assert m["layout"] == "split" and "test_fraction" not in m["rule"]
  assert sorted(p for p, _ in m["splits"]["test"]) == ["test/a/000.png", "test/a/001.png",
                                                       "test/b/000.png", "test/b/001.png"]
  path = _write(m, tmp_path / "m.json")
  again = data_lib.load_dataset(_cfg(root, tmp_path, split_manifest=path))
  assert data_lib.content_hash(again) == data_lib.content_hash(data)
  # the path is not part of a phase's identity: the split it gives is in the data hash
  config = images_config.get_config("folder")
  key = phases.fingerprint(config, "baseline", "hash")
  config.data.split_manifest = path
  assert phases.fingerprint(config, "baseline", "hash") == key
  config.data.split_seed = 1
  assert phases.fingerprint(config, "baseline", "hash") != key
