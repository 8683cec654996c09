"""CSV strictness: each way a file could silently change the data is a one-line error that
names the file, the line and the column."""

import os

import pytest

from lwi_jax.data import csv_source
from lwi_jax.data.errors import DataError

GOOD_ROWS = "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(6))


def _read(path, **kw):
  kw = {"text_column": "name", "label_column": "country", **kw}
  return csv_source.read_labelled_csv(str(path), **kw)


def _error(path, **kw) -> str:
  with pytest.raises(DataError) as e:
    _read(path, **kw)
  msg = str(e.value)
  assert "\n" not in msg  # one line
  return msg


def test_well_formed_file_reads(tmp_path):
  # Positive control: quotes, doubled inner quotes, a blank line, CRLF, the delimiter in a
  # quoted field.
  path = tmp_path / "ok.csv"
  path.write_bytes(b'name,country\r\n"O""Brien, Pat",IE\r\n\r\nAnn,GB\r\n')
  assert _read(path) == (['O"Brien, Pat', "Ann"], ["IE", "GB"])


def test_duplicate_header_name(tmp_path):
  # Before: the last 'country' column was used silently.
  path = tmp_path / "dup.csv"
  path.write_text("name,country,country\n" + "".join(f"t{i},a,b\n" for i in range(4)))
  assert _error(path) == (f"{path}:1: column 3 repeats the header name 'country' of column 2; "
                          "give every column its own name")


def test_nul_byte_in_a_label_is_not_a_new_class(tmp_path):
  path = tmp_path / "nul.csv"
  path.write_bytes(b"name,country\nann,GB\nbob,G\x00B\n")
  assert _error(path).startswith(f"{path}:3:6: NUL byte in the file")


def test_stray_quote_is_reported_where_it_starts(tmp_path):
  # Before: "unexpected end of data" at the end-of-file line (here 9), not at line 3.
  path = tmp_path / "quote.csv"
  path.write_text("name,country\nann,GB\n\"bob,US\n" + GOOD_ROWS)
  msg = _error(path)
  assert msg.startswith(f"{path}:3:1: malformed quoting")
  path.write_text("name,country\nann,GB\nbob,\"US\"x\n" + GOOD_ROWS)
  assert _error(path).startswith(f"{path}:3:5: malformed quoting")


def test_quote_that_swallows_a_line_break_into_the_label(tmp_path):
  path = tmp_path / "swallow.csv"
  path.write_text('name,country\nann,"GB\nbob",US\n' + GOOD_ROWS)
  msg = _error(path)
  assert msg.startswith(f"{path}:2:5: malformed quoting") and "runs over a line break" in msg


@pytest.mark.parametrize("row, word", [("bob", "fewer"), ("bob,US,extra", "more")])
def test_rows_with_another_field_count(tmp_path, row, word):
  path = tmp_path / "fields.csv"
  path.write_text(f"name,country\nann,GB\n{row}\n")
  assert _error(path).startswith(f"{path}:3: the row has {word} fields than the header")


def test_directory_instead_of_a_file(tmp_path):
  assert _error(tmp_path) == f"data.path={str(tmp_path)!r} is a directory; expected a CSV file"


def test_tilde_is_expanded(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  (tmp_path / "home.csv").write_text("name,country\nann,GB\n")
  assert _read("~/home.csv") == (["ann"], ["GB"])
  assert _read(os.path.join("~", "home.csv"))[1] == ["GB"]


def test_unknown_encoding(tmp_path):
  path = tmp_path / "ok.csv"
  path.write_text("name,country\nann,GB\n")
  assert _error(path, encoding="utf-9").startswith(
      "data.encoding='utf-9' is not a known text encoding")


def test_undecodable_byte_names_line_and_column(tmp_path):
  path = tmp_path / "latin1.csv"
  path.write_bytes("name,country\nann,GB\nJos\xe9,ES\n".encode("latin-1"))
  assert _error(path).startswith(f"{path}:3:4: byte 0xe9 is not valid utf-8-sig text")
  assert _read(path, encoding="latin-1")[0] == ["ann", "José"]
