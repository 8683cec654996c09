"""Issue #25: a user's rows never silently change the study. Every test here failed (a silent
change, a traceback or a missing warning) on the code before the fix."""

import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax.data import DataError, csv_source
from tests.test_tabular import _cfg, _table, _write


def _lines(d):
  return "\n".join(data_lib.summary_lines(d))


def test_quote_spanning_lines_names_the_line_where_it_opened(tmp_path):
  rows = [[f"{i}.5", "red", "ab"[i % 2]] for i in range(60)]
  rows[10][1] = '"red'  # line 12 (header is line 1): opens a quote ...
  rows[40][1] = 'blue"'  # ... that a stray quote on line 42 would close, swallowing 30 rows
  path = _write(tmp_path, rows)
  with pytest.raises(DataError, match=rf"{path}:12: a quoted field opens on this line and runs "
                     r"on to line 42.*data.multiline_fields=True"):
    data_lib.load_dataset(_cfg(path=path))
  # A file whose fields legitimately hold line breaks says so and reads.
  path = tmp_path / "multi.csv"
  path.write_text("num,cat,label\n" + "".join(f'{i},"two\nlines",{"ab"[i % 2]}\n'
                                                for i in range(20)))
  d = data_lib.load_dataset(_cfg(path=str(path), multiline_fields=True))
  assert d.info["rows_read"] == 20


def test_missing_labels_are_dropped_counted_and_shown(tmp_path):
  rows = _table(n_per_class=20)
  for i in range(0, 60, 10):
    rows[i][2] = "NA"
  d = data_lib.load_dataset(_cfg(path=_write(tmp_path, rows)))
  assert d.class_names == ("a", "b", "c")
  assert d.info["dropped_missing_label"] == 6 and d.info["rows_read"] == 60
  assert "6 of 60 rows have no label" in _lines(d) and "lines 2, 12, 22" in _lines(d)


def test_balancing_shows_the_rows_it_drops_per_class(tmp_path):
  rows = [[f"{i}.5", "red", "a" if i % 20 else "b"] for i in range(400)]
  d = data_lib.load_dataset(_cfg(path=_write(tmp_path, rows), balance=True))
  assert d.info["rows_used_per_class"] == {"a": 20, "b": 20}
  text = _lines(d)
  assert "a 20/380, b 20/20" in text
  assert "WARNING: data.balance=True uses 40 of 400 labelled rows (10.0%)" in text


def test_labels_differing_in_case_or_whitespace_warn_or_merge(tmp_path):
  rows = _table(n_per_class=10, classes=("A", "b", "a", "B  x", "b x"))
  path = _write(tmp_path, rows)
  d = data_lib.load_dataset(_cfg(path=path))
  assert len(d.class_names) == 5
  assert "'A' / 'a'" in _lines(d) and "'B  x' / 'b x'" in _lines(d)
  merged = data_lib.load_dataset(_cfg(path=path, merge_label_variants=True))
  assert len(merged.class_names) == 3 and merged.info["merged_label_variants"]
  assert sum(merged.info["rows_used_per_class"].values()) == 50


def test_texts_shared_between_classes_are_warned_with_counts(tmp_path):
  path = tmp_path / "t.csv"
  rows = [f"name{i},{'ab'[i % 2]}" for i in range(40)] + ["same,a", "same,b", "Same,b"]
  path.write_text("name,country\n" + "\n".join(rows) + "\n")
  cfg = _cfg(name="csv", path=str(path), text_column="name", label_column="country",
             normalization="nfkc_casefold")
  d = csv_source.load_csv(cfg)
  assert d.info["conflicting_rows"] == 3
  assert "WARNING: 1 distinct text(s) appear under more than one class (3 rows)" in _lines(d)


def _numbers_file(tmp_path, cells, delimiter=","):
  path = tmp_path / "n.csv"
  lines = [delimiter.join(("num", "label"))]
  lines += [delimiter.join((c, "ab"[i % 2])) for i, c in enumerate(cells)]
  path.write_text("\n".join(lines) + "\n")
  return str(path)


def test_numbers_as_users_write_them_are_parsed(tmp_path):
  cells = [f'"{1000 * i + 340:,}"' for i in range(20)]  # "12,340"
  d = data_lib.load_dataset(_cfg(path=_numbers_file(tmp_path, cells)))
  assert d.info["numeric_columns"] == ["num"] and d.info["num_features"] == 1
  cells = [f"{i},5" for i in range(20)]  # decimal comma, ';' separated
  path = _numbers_file(tmp_path, cells, ";")
  d = data_lib.load_dataset(_cfg(path=path, delimiter=";", decimal=","))
  assert d.info["numeric_columns"] == ["num"]
  with pytest.raises(DataError, match=r"column 'num': '0,5'.*line 2: '0,5'.*data.decimal=','"):
    data_lib.load_dataset(_cfg(path=path, delimiter=";"))
  d = data_lib.load_dataset(_cfg(path=_numbers_file(tmp_path, [f"{i}.5%" for i in range(20)])))
  assert d.info["numeric_columns"] == ["num"]


def test_a_mostly_numeric_column_is_refused_not_one_hot(tmp_path):
  cells = ["inf" if i % 4 == 0 else f"{i}.5" for i in range(40)]
  with pytest.raises(DataError, match=r":2: column 'num': 'inf' is not a finite number.*"
                     r"10 such value\(s\): line 2: 'inf', line 6: 'inf'"):
    data_lib.load_dataset(_cfg(path=_numbers_file(tmp_path, cells)))


@pytest.mark.parametrize("scale", [1e200, 1e307])
def test_huge_values_are_standardised_not_zeroed(tmp_path, scale):
  cells = [repr((1.0 + (i % 2)) * scale) for i in range(40)]  # informative: the label is i % 2
  d = data_lib.load_dataset(_cfg(path=_numbers_file(tmp_path, cells)))
  x, y = d.train.inputs[:, 0], d.train.labels
  assert np.isfinite(x).all()
  np.testing.assert_allclose(x[y == 1], 1.0, rtol=1e-5)
  np.testing.assert_allclose(x[y == 0], -1.0, rtol=1e-5)


def test_a_non_finite_feature_is_refused_naming_the_column(tmp_path):
  cells = [f"{i % 3}.0" for i in range(40)]
  cells[39] = "1e300"  # line 41: far outside every training value: float32 inf
  with pytest.raises(DataError, match=r":41: feature 'num' is not finite"):
    data_lib.load_dataset(_cfg(path=_numbers_file(tmp_path, cells), test_fraction=0.5,
                               split_seed=3))


def test_eval_batches_are_no_larger_than_the_split():
  from lwi_jax import train
  x = np.zeros((20, 10_000), np.int32)  # 20 long texts; eval_batch_size=1000 would pad 50x
  xb, yb, mb = train.batch_for_eval(x, np.zeros(20, np.int32), 1000)
  assert xb.shape == (1, 20, 10_000) and mb.all()
  xb, _, mb = train.batch_for_eval(x, np.zeros(20, np.int32), 8)
  assert xb.shape == (3, 8, 10_000) and mb.sum() == 20
