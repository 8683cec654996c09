"""A user's own labelled text: one CSV file, a text column and a label column.

  python launch.py --config=configs/names.py:csv --config.data.path=my.csv \
      --config.data.text_column=name --config.data.label_column=country

The file needs a header row. Classes are the distinct label strings, sorted (so the class order
does not depend on the row order). Texts go through the same encoding and the same split rule
as the names dataset (text.py, text_encoding.py, grouped_split.py): identical normalised texts
never sit in two splits, and data.conflicts says what happens to identical inputs with
different labels ('keep' by default: they stay, in one split). Rows whose text is empty after
normalisation are dropped and counted.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re

import numpy as np

from lwi_jax.data import text
from lwi_jax.data.errors import DataError
from lwi_jax.data.types import ClassificationData


def _position(content: str, index: int) -> tuple[int, int]:
  """(line, column), both 1-based, of character `index` of `content`."""
  line_start = content.rfind("\n", 0, index) + 1
  return content.count("\n", 0, index) + 1, index - line_start + 1


def _read_text(path: str, encoding: str) -> str:
  """The whole file decoded; undecodable bytes and NUL bytes named by line and column."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"{path}: cannot be read ({e.strerror or e})") from e
  try:
    content = raw.decode(encoding)
  except UnicodeDecodeError as e:
    before = raw[:e.start].decode(encoding, errors="replace")
    line, col = _position(before + "?", len(before))
    raise DataError(f"{path}:{line}:{col}: byte 0x{raw[e.start]:02x} is not valid {encoding} "
                    "text; set data.encoding to the file's encoding (e.g. 'latin-1', "
                    "'cp1252')") from e
  nul = content.find("\0")
  if nul >= 0:
    line, col = _position(content, nul)
    raise DataError(f"{path}:{line}:{col}: NUL byte in the file (a binary or UTF-16 file? set "
                    "data.encoding, e.g. 'utf-16'); a CSV of labelled text has none")
  return content


def _quote_error(path: str, lines: list[str], start: int, delimiter: str, err) -> DataError:
  """A csv.Error reported at the line where the record (and its opening quote) starts."""
  text = lines[start - 1] if start <= len(lines) else ""
  opening = re.search(r"(^|" + re.escape(delimiter) + r')\s*"', text)
  col = opening.end() if opening else text.find('"') + 1
  where = f"{path}:{start}:{col}" if col > 0 else f"{path}:{start}"
  return DataError(f"{where}: malformed quoting ({err}): the quoted field starting here is not "
                   'closed by a quote followed by the delimiter; a field with quotes inside is '
                   'written "O""Brien" (quoted, inner quotes doubled)')


def read_labelled_csv(path: str, text_column: str, label_column: str, delimiter: str = ",",
                      encoding: str = "utf-8-sig") -> tuple[list[str], list[str]]:
  """(texts, label strings) of every data row; DataErrors name the file, line and column.

  Strict on purpose: a duplicate header name, a NUL byte, a row with a different number of
  fields or a stray quote would otherwise change the data silently (another column, a new
  class, rows swallowed into one field). 'utf-8-sig' reads plain UTF-8 and also drops the
  byte-order mark spreadsheet programs write.
  """
  if not path:
    raise DataError("data.path is empty: set it to a CSV file with a header row "
                    "(--config.data.path=...)")
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    raise DataError(f"data.path={path!r} is a directory; expected a CSV file")
  if not os.path.isfile(path):
    raise DataError(f"data.path={path!r}: no such file")
  if len(delimiter) != 1 or delimiter in '"\r\n\0':
    raise DataError(f"data.delimiter={delimiter!r} must be one character other than a quote or "
                    "line break (',' ';' '\\t' ...)")
  if text_column == label_column:
    raise DataError(f"data.text_column and data.label_column are both {text_column!r}")
  try:
    codecs.lookup(encoding)
  except LookupError as e:
    raise DataError(f"data.encoding={encoding!r} is not a known text encoding (e.g. "
                    "'utf-8-sig', 'latin-1', 'cp1252', 'utf-16')") from e
  content = _read_text(path, encoding)
  lines = io.StringIO(content, newline="").readlines()
  reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)

  def records():
    while True:
      start = reader.line_num + 1
      try:
        row = next(reader)
      except StopIteration:
        return
      except csv.Error as e:
        raise _quote_error(path, lines, start, delimiter, e) from e
      if row:  # blank lines are skipped, as csv.DictReader does
        yield start, reader.line_num > start, row

  rows = records()
  _, _, header = next(rows, (1, False, None))
  if not header:
    raise DataError(f"{path}: the file is empty (expected a header row with columns "
                    f"{text_column!r} and {label_column!r})")
  seen = {}
  for i, name in enumerate(header):
    if name in seen:
      raise DataError(f"{path}:1: column {i + 1} repeats the header name {name!r} of column "
                      f"{seen[name] + 1}; give every column its own name")
    seen[name] = i
  missing = [c for c in (text_column, label_column) if c not in seen]
  if missing:
    raise DataError(f"{path}: column(s) {missing} not in the header {header}; set "
                    "data.text_column / data.label_column (or data.delimiter="
                    f"{delimiter!r} if the file uses another separator)")
  text_index, label_index = seen[text_column], seen[label_column]
  texts, labels = [], []
  for line, spans_lines, row in rows:
    label = row[label_index].strip() if len(row) > label_index else ""
    if spans_lines and (len(row) != len(header) or "\n" in label or "\r" in label):
      raise _quote_error(path, lines, line, delimiter, "a quoted field runs over a line break")
    if len(row) != len(header):
      raise DataError(f"{path}:{line}: the row has {'fewer' if len(row) < len(header) else 'more'}"
                      f" fields than the header ({len(row)} vs {len(header)}); quote fields "
                      f"that contain the delimiter {delimiter!r}")
    if not label:
      raise DataError(f"{path}:{line}: empty label in column {label_column!r}")
    texts.append(row[text_index])
    labels.append(label)
  if not texts:
    raise DataError(f"{path}: the file has a header but no data rows")
  return texts, labels


def load_csv(cfg) -> ClassificationData:
  """`config.data` loader for data.name='csv'."""
  texts, label_strings = read_labelled_csv(cfg.path, cfg.text_column, cfg.label_column,
                                           cfg.get("delimiter", ","),
                                           cfg.get("encoding", "utf-8-sig"))
  class_names = sorted(set(label_strings))
  if len(class_names) < 2:
    raise DataError(f"{cfg.path}: column {cfg.label_column!r} has only the label(s) "
                    f"{class_names}; a classification needs at least 2 classes")
  index = {name: i for i, name in enumerate(class_names)}
  labels = np.asarray([index[s] for s in label_strings], np.int32)
  info = {"source": "csv", "path": os.path.abspath(os.path.expanduser(cfg.path)),
          "rows": len(texts)}
  return text.make_text_data(texts, labels, class_names, cfg, info)
