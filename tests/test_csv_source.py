"""The CSV source: a good file loads like the names data; bad files fail with a clear error."""

import ml_collections
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax.data import text_encoding
from lwi_jax.data.errors import DataError


def _cfg(path, **kw):
  base = dict(name="csv", path=str(path), text_column="name", label_column="country",
              delimiter=",", encoding="utf-8-sig", max_len=16, conflicts="keep",
              validation_fraction=0.1, test_fraction=0.2, split_seed=0,
              vocabulary="latin", normalization="strip_accents")  # text.py's own tests: learned
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _write(path, content, encoding="utf-8"):
  path.write_text(content, encoding=encoding)
  return path


def _good_rows(n=20):
  rows = []
  for i in range(n):
    rows.append(f"José García {i},ES")
    rows.append(f'"Müller, Anna {i}",DE')  # quoted comma inside the text
  return rows


def test_good_file(tmp_path):
  path = _write(tmp_path / "names.csv", "id,name,country\n" + "\n".join(
      f"{i},{r}" for i, r in enumerate(_good_rows())) + "\n", encoding="utf-8-sig")  # with BOM
  data = data_lib.load_dataset(_cfg(path))
  assert data.class_names == ("DE", "ES")  # sorted label strings
  assert len(data.train) + len(data.validation) + len(data.test) == 40
  np.testing.assert_array_equal(np.bincount(data.test.labels), [4, 4])
  np.testing.assert_array_equal(np.bincount(data.validation.labels), [2, 2])
  decoded = {text_encoding.decode(r) for r in data.train.inputs}
  assert any(s.startswith("jose garcia") for s in decoded)
  assert any(s.startswith("muller, anna") for s in decoded)
  assert data.info["source"] == "csv" and data.info["rows"] == 40
  assert data.info["vocab_size"] == text_encoding.VOCAB_SIZE


def test_semicolon_file_and_duplicates_stay_in_one_split(tmp_path):
  rows = [f"Name {i % 10};{'ab'[i % 2]}" for i in range(60)]  # each text 6 times
  path = _write(tmp_path / "dup.csv", "name;country\n" + "\n".join(rows) + "\n")
  data = data_lib.load_dataset(_cfg(path, delimiter=";", conflicts="drop"))
  splits = [{text_encoding.decode(r) for r in getattr(data, s).inputs}
            for s in ("train", "validation", "test")]
  assert not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not (splits[1] & splits[2])
  assert data.info["conflicting_texts"] == 0  # i % 10 fixes i % 2: one label per text


@pytest.mark.parametrize("content, match", [
    ("", "the file is empty"),
    ("name,country\n", "header but no data rows"),
    ("name,label\nann,a\n", r"column\(s\) \['country'\] not in the header \['name', 'label'\]"),
    ("text,country\nann,a\n", r"column\(s\) \['name'\]"),
    ("name,country\nann,a\nbob,\n", r"bad.csv:3: empty label in column 'country'"),
    ("name,country\nann,a\nbob\n", "fewer fields than the header"),
    ("name,country\n" + "\n".join(f"n{i},a" for i in range(10)) + "\n",
     "only the label\\(s\\) \\['a'\\]"),
])
def test_bad_files(tmp_path, content, match):
  path = _write(tmp_path / "bad.csv", content)
  with pytest.raises(DataError, match=match):
    data_lib.load_dataset(_cfg(path))


def test_a_class_too_small_for_the_split(tmp_path):
  rows = [f"a{i},big" for i in range(30)] + ["b1,small", "b2,small"]
  path = _write(tmp_path / "small.csv", "name,country\n" + "\n".join(rows) + "\n")
  with pytest.raises(DataError, match="class 'small' has 2 distinct text"):
    data_lib.load_dataset(_cfg(path))


def test_config_errors_name_the_field(tmp_path):
  with pytest.raises(DataError, match="data.path is empty"):
    data_lib.load_dataset(_cfg(""))
  with pytest.raises(DataError, match="no such file"):
    data_lib.load_dataset(_cfg(tmp_path / "missing.csv"))
  path = _write(tmp_path / "ok.csv", "name,country\nann,a\n")
  with pytest.raises(DataError, match="data.delimiter"):
    data_lib.load_dataset(_cfg(path, delimiter="||"))
  with pytest.raises(DataError, match="both 'name'"):
    data_lib.load_dataset(_cfg(path, label_column="name"))
  latin1 = tmp_path / "latin1.csv"
  latin1.write_bytes("name,country\nJos\xe9,es\n".encode("latin-1"))
  with pytest.raises(DataError, match="data.encoding"):
    data_lib.load_dataset(_cfg(latin1))
  with pytest.raises(DataError, match="data.conflicts"):
    rows = "\n".join(f"t{i},{'xy'[i % 2]}" for i in range(20))
    data_lib.load_dataset(_cfg(_write(tmp_path / "c.csv", "name,country\n" + rows + "\n"),
                               conflicts="vote"))
