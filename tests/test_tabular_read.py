"""The tabular CSV reader (issue #25, item 3): pyarrow's reader with this project's checks on
top gives what the strict csv-module reader gives, and every file pyarrow alone would read
differently (or cannot place on a line) ends in the strict reader's one-line error."""

import gzip
import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from lwi_jax.data import DataError, tabular_read


def _same(a, b):
  assert a.header == b.header
  np.testing.assert_array_equal(a.lines, b.lines)
  for name in a.header:
    assert a.columns[name].to_pylist() == b.columns[name].to_pylist(), name


@pytest.mark.parametrize("gz", [False, True])
def test_fast_path_reads_what_the_strict_reader_reads(tmp_path, gz):
  body = ('\ufeffnum , cat,label\r\n 1.5,"Smith, J",a\r\n\r\n2,"say ""hi""",b\r\n'
          '3,  blue ,a\r\n\r\n4,,b\r\n5,ab"c,a')  # BOM, CRLF, blank lines, quotes, no final break
  path = tmp_path / ("t.csv.gz" if gz else "t.csv")
  data = body.encode("utf-8")
  path.write_bytes(gzip.compress(data) if gz else data)
  fast = tabular_read._read_fast(str(path), ",", "utf-8-sig")  # no fallback: the fast path
  _same(fast, tabular_read.read_table(str(path), engine="strict"))
  assert fast.header == ("num", "cat", "label") and fast.lines.tolist() == [2, 4, 5, 7, 8]
  assert fast.columns["cat"].to_pylist() == ["Smith, J", 'say "hi"', "blue", "", 'ab"c']
  assert fast.strings("label").tolist() == ["a", "b", "a", "b", "a"]


def test_text_after_a_closing_quote_is_refused_though_pyarrow_reads_it(tmp_path):
  path = tmp_path / "q.csv"
  path.write_text("num,cat,label\n" + "".join(f"{i},x,a\n" for i in range(5)) + '9,"red"x,b\n')
  alone = pa_csv.read_csv(io.BytesIO(path.read_bytes()))
  assert alone.column("cat").to_pylist()[-1] == "redx"  # what pyarrow alone would train on
  with pytest.raises(DataError, match=rf"{path}:7: a quoted field opens on this line and is "
                     "not closed properly"):
    tabular_read.read_table(str(path))


def test_nul_byte_and_ragged_row_are_named_by_line(tmp_path):
  path = tmp_path / "n.csv"
  path.write_bytes(b"num,cat,label\n1,x,a\n2,r\x00d,b\n")
  with pytest.raises(DataError, match=rf"{path}:3: column 'cat' holds a NUL byte"):
    tabular_read.read_table(str(path))
  path.write_text("num,cat,label\n1,x,a\n2,y,b\n3,z\n")
  with pytest.raises(DataError, match=rf"{path}:4: 2 fields, but the header has 3"):
    tabular_read.read_table(str(path))


def test_a_line_of_spaces_falls_back_and_is_skipped(tmp_path):
  path = tmp_path / "s.csv"
  path.write_text("num,label\n1,a\n   \n2,b\n")
  with pytest.raises(tabular_read._NotFast):
    tabular_read._read_fast(str(path), ",", "utf-8-sig")
  table = tabular_read.read_table(str(path))
  assert table.lines.tolist() == [2, 4] and table.columns["num"].to_pylist() == ["1", "2"]


def test_undecodable_bytes_and_latin_1(tmp_path):
  path = tmp_path / "e.csv"
  path.write_bytes("num,cat,label\n1,caf\xe9,a\n".encode("latin-1"))
  with pytest.raises(DataError, match=rf"{path}: not readable as utf-8-sig"):
    tabular_read.read_table(str(path))
  table = tabular_read._read_fast(str(path), ",", "iso8859-1")
  assert table.columns["cat"].to_pylist() == ["café"]
  assert isinstance(table.columns["cat"], pa.ChunkedArray)
