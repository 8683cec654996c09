"""Tabular sources: the bundled tables, a user's CSV (kinds, missing values, unseen categories,
errors naming file/line/column), training-split-only statistics."""

import re

import ml_collections
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax.data import DataError, tabular


def _cfg(**kw):
  cfg = ml_collections.ConfigDict(dict(
      name="tabular", path="", label_column="label", delimiter=",", encoding="utf-8-sig",
      feature_columns=(), ignore_columns=(), numeric_columns=(), categorical_columns=(),
      missing_values=("", "?", "NA"), max_categories=50, balance=False,
      validation_fraction=0.2, test_fraction=0.2, split_seed=0))
  cfg.update(kw)
  return cfg


def _write(tmp_path, rows, header=("num", "cat", "label"), name="t.csv"):
  path = tmp_path / name
  path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
  return str(path)


def _table(n_per_class=10, classes=("a", "b", "c"), seed=0):
  """num: a number, '?' every 7th row; cat: red/green/blue or missing; label."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n_per_class * len(classes)):
    num = "?" if i % 7 == 3 else f"{rng.normal(10 * (i % len(classes)), 1.0):.3f}"
    cat = ["red", "green", "blue", ""][i % 4]
    rows.append([num, cat, classes[i % len(classes)]])
  return rows


@pytest.fixture(scope="module")
def satimage():
  return data_lib.load_dataset(_cfg(name="satimage", balance=True, validation_fraction=0.1))


def test_satimage_balanced_shapes_counts(satimage):
  d = satimage
  assert d.num_classes == 6 and "damp grey soil" in d.class_names
  assert d.train.inputs.shape == (len(d.train), 36) and d.train.inputs.dtype == np.float32
  # 626 rows per class (the smallest class), 20% test, 10% of the rest validation.
  for split, n in (("train", 451), ("validation", 50), ("test", 125)):
    np.testing.assert_array_equal(np.bincount(getattr(d, split).labels, minlength=6), n)
  assert d.info["balanced_per_class"] == 626 and d.info["rows"] == 6435
  # Standardised with training statistics: zero mean / unit std on train, not exactly on test.
  np.testing.assert_allclose(d.train.inputs.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(d.train.inputs.std(0), 1, atol=1e-4)


def test_satimage_deterministic_seeded_and_full_set(satimage):
  again = data_lib.load_dataset(_cfg(name="satimage", balance=True, validation_fraction=0.1))
  np.testing.assert_array_equal(again.test.inputs, satimage.test.inputs)
  np.testing.assert_array_equal(again.train.labels, satimage.train.labels)
  other = data_lib.load_dataset(_cfg(name="satimage", balance=True, validation_fraction=0.1,
                                     split_seed=1))
  assert not np.array_equal(other.test.inputs, satimage.test.inputs)
  full = data_lib.load_dataset(_cfg(name="satimage", validation_fraction=0.1))
  total = sum(np.bincount(s.labels, minlength=6) for s in (full.train, full.validation, full.test))
  np.testing.assert_array_equal(total, [703, 626, 1358, 1533, 707, 1508])


def test_letter_is_bundled():
  d = data_lib.load_dataset(_cfg(name="letter", validation_fraction=0.1))
  assert d.class_names[0] == "A" and d.num_classes == 26 and d.train.inputs.shape[1] == 16
  assert len(d.train) + len(d.validation) + len(d.test) == 20000


def test_csv_kinds_missing_indicator_and_unseen_category(tmp_path):
  rows = _table()
  path = _write(tmp_path, rows)
  d = data_lib.load_dataset(_cfg(path=path))
  names = d.info["feature_names"]
  assert d.info["numeric_columns"] == ["num"] and d.info["categorical_columns"] == ["cat"]
  assert names[:2] == ["num", "num:missing"]
  assert set(names[2:]) == {"cat=<missing>", "cat=blue", "cat=green", "cat=red", "cat=<other>"}
  assert d.train.inputs.shape[1] == len(names) == 7
  x = np.concatenate([d.train.inputs, d.validation.inputs, d.test.inputs])
  # A missing number is imputed with the (standardised) training mean 0 and flagged.
  flagged = x[:, 1] == 1
  assert flagged.any() and (x[flagged, 0] == 0).all()
  # One-hot: every row has exactly one category slot set.
  np.testing.assert_array_equal(x[:, 2:].sum(1), 1)
  # A category never seen in training goes to '<other>' (forced by renaming one test value).
  unseen = [r[:] for r in rows]
  split = tabular.split_rows(np.asarray([["a", "b", "c"].index(r[2]) for r in rows]), _cfg())
  i = int(split["test"][0])
  unseen[i][1] = "purple"
  d2 = data_lib.load_dataset(_cfg(path=_write(tmp_path, unseen, name="u.csv")))
  assert d2.info["feature_names"] == names
  other = names.index("cat=<other>")
  assert d2.test.inputs[0, other] == 1 and d.test.inputs[0, other] == 0


def test_statistics_come_from_the_training_split_only(tmp_path):
  rows = _table(n_per_class=12)
  labels = np.asarray([["a", "b", "c"].index(r[2]) for r in rows])
  cfg = _cfg(path=_write(tmp_path, rows))
  before = data_lib.load_dataset(cfg)
  split = tabular.split_rows(labels, cfg)
  shifted = [r[:] for r in rows]
  for i in split["test"]:  # huge values, new missing values and a new category in test only
    shifted[i][0] = "?" if i % 2 else "1e6"
    shifted[i][1] = "never-seen"
  after = data_lib.load_dataset(_cfg(path=_write(tmp_path, shifted, name="s.csv")))
  np.testing.assert_array_equal(after.train.inputs, before.train.inputs)
  np.testing.assert_array_equal(after.validation.inputs, before.validation.inputs)
  np.testing.assert_array_equal(after.train.labels, before.train.labels)
  assert after.info["feature_names"] == before.info["feature_names"]
  assert not np.array_equal(after.test.inputs, before.test.inputs)


def test_declared_kinds_override_detection(tmp_path):
  rows = [[i % 3, f"x{i % 2}", "ab"[i % 2]] for i in range(20)]
  path = _write(tmp_path, rows)
  d = data_lib.load_dataset(_cfg(path=path, categorical_columns=("num",),
                                 ignore_columns=("cat",)))
  assert d.info["categorical_columns"] == ["num"] and d.info["numeric_columns"] == []
  assert d.train.inputs.shape[1] == 4  # categories 0, 1, 2 + <other>


def _error(tmp_path, rows, header=("num", "cat", "label"), **kw):
  path = _write(tmp_path, rows, header)
  with pytest.raises(DataError) as e:
    data_lib.load_dataset(_cfg(path=path, **kw))
  return path, str(e.value)


def test_error_non_numeric_value_in_numeric_column(tmp_path):
  rows = _table()
  rows[14][0] = "12,5".replace(",", ";")  # a typo among numbers (auto-detected as numeric)
  path, msg = _error(tmp_path, rows)
  assert f"{path}:16:" in msg and "'num'" in msg and "12;5" in msg  # header is line 1
  rows = [[f"v{i}", "red", "ab"[i % 2]] for i in range(20)]  # declared numeric, all text
  path, msg = _error(tmp_path, rows, numeric_columns=("num",))
  assert f"{path}:2:" in msg and "'num'" in msg and "data.numeric_columns" in msg


def test_error_no_usable_feature_column(tmp_path):
  rows = [["", "", "ab"[i % 2]] for i in range(20)]
  path, msg = _error(tmp_path, rows)
  assert f"{path}:1:" in msg and "no usable feature column" in msg
  path, msg = _error(tmp_path, [[1, "ab"[i % 2]] for i in range(20)], header=("id", "label"),
                     ignore_columns=("id",))
  assert "no usable feature column" in msg


def test_error_label_with_one_class(tmp_path):
  path, msg = _error(tmp_path, [[i, "red", "only"] for i in range(20)])
  assert path in msg and "'label'" in msg and "only" in msg and "2 classes" in msg


def test_error_class_too_small_for_the_split(tmp_path):
  rows = _table(classes=("a", "b")) + [[1.0, "red", "rare"], [2.0, "blue", "rare"]]
  path, msg = _error(tmp_path, rows)
  assert re.search(r"class 'rare' has 2 row\(s\) \(line\(s\) 22, 23\)", msg), msg
  assert path in msg and "'label'" in msg and "at least 3" in msg


def test_error_unknown_column_names(tmp_path):
  path, msg = _error(tmp_path, _table(), numeric_columns=("nope",))
  assert f"{path}:1:" in msg and "nope" in msg and "data.numeric_columns" in msg
  path, msg = _error(tmp_path, _table(), label_column="y")
  assert "label column 'y'" in msg


def test_bundled_files_are_package_data():
  """A non-editable install must carry the tables: pyproject's package-data globs match them."""
  import fnmatch
  import os
  import tomllib
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(repo, "pyproject.toml"), "rb") as f:
    globs = tomllib.load(f)["tool"]["setuptools"]["package-data"]["lwi_jax.data"]
  for filename in [f for f, _ in tabular.BUNDLED.values()] + ["ATTRIBUTION.md"]:
    rel = f"tabular_data/{filename}"
    assert any(fnmatch.fnmatch(rel, g) for g in globs), (rel, globs)
    assert os.path.isfile(os.path.join(repo, "lwi_jax", "data", rel))
