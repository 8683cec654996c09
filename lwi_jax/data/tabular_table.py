"""Reading a tabular CSV into typed columns: the label, numeric columns, categorical columns.

Separate from the text CSV reader (csv_source.py) because a table has many feature columns
whose kinds must be decided, and its values become floats, not token ids.

Column kinds (`detect_kinds`): a column is numeric when every non-missing value parses as a
finite number, categorical otherwise, unless the config says so (data.numeric_columns /
data.categorical_columns). A column whose values are nearly all numbers (>= 90%) but not all
is almost certainly a typo in a numeric column, not a category: that is an error naming the
file, line and column, never a silent switch to one category per distinct number.
Missing values are the strings in data.missing_values ('' always counts); a column with no
value at all is unusable and dropped (listed in info['unusable_columns']).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import re
from typing import Sequence

import numpy as np

from lwi_jax.data.errors import DataError

DEFAULT_MISSING = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
# A column this numeric-looking (share of its values that are numbers or look like numbers:
# 'inf', '3,5', '12,34%') with a non-number in it is refused, never one-hot encoded.
NUMERIC_LOOKING = 0.5


@dataclasses.dataclass(frozen=True)
class RawTable:
  """Every data row of the file as stripped strings, with the file line each row ends on."""

  path: str
  header: tuple[str, ...]
  columns: dict  # name -> np.ndarray of str (object), one entry per row
  lines: np.ndarray  # [N] int, 1-based line number of each row in the file

  def __len__(self) -> int:
    return int(self.lines.shape[0])

  def take(self, rows: np.ndarray) -> "RawTable":
    return RawTable(self.path, self.header, {k: v[rows] for k, v in self.columns.items()},
                    self.lines[rows])


def _open_text(path: str, encoding: str):
  if path.endswith(".gz"):
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
  return open(path, encoding=encoding, newline="")


def _quote_error(path: str, start: int, why: str) -> DataError:
  return DataError(f"{path}:{start}: a quoted field opens on this line and {why}; a field "
                   'with quotes inside is written "O""Brien" (quoted, inner quotes doubled). If '
                   "the file's fields really hold line breaks, set data.multiline_fields=True")


def read_table(path: str, delimiter: str = ",", encoding: str = "utf-8-sig",
               multiline: bool = False) -> RawTable:
  """Reads a CSV (optionally .gz) with a header row; DataErrors name the file and line.

  A quoted field that runs over a line break is an error naming the line where its quote
  opened (`multiline`=False, the default): a stray quote would otherwise swallow every row up
  to the next quote into one field, and the study would train on fewer rows without a word.
  """
  if not path:
    raise DataError("data.path is empty: set it to a CSV file with a header row "
                    "(--config.data.path=...)")
  if not os.path.isfile(path):
    raise DataError(f"data.path={path!r}: no such file")
  if len(delimiter) != 1:
    raise DataError(f"data.delimiter={delimiter!r} must be one character (',' ';' '\\t' ...)")
  rows, lines = [], []
  start = 1
  try:
    with _open_text(path, encoding) as f:
      reader = csv.reader(f, delimiter=delimiter, strict=True)
      header = next(reader, None)
      if not header:
        raise DataError(f"{path}: the file is empty (expected a header row)")
      header = tuple(h.strip() for h in header)
      empty = [i + 1 for i, h in enumerate(header) if not h]
      if empty:
        raise DataError(f"{path}:1: header field(s) {empty} are empty; every column needs a name")
      dupes = sorted({h for h in header if header.count(h) > 1})
      if dupes:
        raise DataError(f"{path}:1: duplicate column name(s) {dupes} in the header")
      start = reader.line_num + 1
      for row in reader:
        if reader.line_num > start and not multiline:
          raise _quote_error(path, start, f"runs on to line {reader.line_num}")
        if not row or (len(row) == 1 and not row[0].strip()):
          start = reader.line_num + 1
          continue  # blank line
        if len(row) != len(header):
          raise DataError(f"{path}:{reader.line_num}: {len(row)} fields, but the header has "
                          f"{len(header)} (data.delimiter={delimiter!r})")
        rows.append([v.strip() for v in row])
        lines.append(reader.line_num)
        start = reader.line_num + 1
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not readable as {encoding} ({e}); set data.encoding") from e
  except csv.Error as e:
    raise _quote_error(path, start, f"is not closed properly ({e})") from e
  except (OSError, EOFError) as e:
    raise DataError(f"{path}: unreadable CSV ({e})") from e
  if not rows:
    raise DataError(f"{path}: the file has a header but no data rows")
  values = np.asarray(rows, dtype=object)
  columns = {name: values[:, j] for j, name in enumerate(header)}
  return RawTable(path, header, columns, np.asarray(lines, np.int64))


def missing_mask(values: np.ndarray, missing_values: Sequence[str]) -> np.ndarray:
  tokens = set(missing_values) | {""}
  return np.fromiter((v in tokens for v in values), bool, count=values.shape[0])


# What users write for numbers (the stated detection rule). With data.decimal='.', a ','
# is a thousands separator only between groups of exactly three digits ('12,340'); with
# data.decimal=',' the comma is the decimal mark and '.' or ' ' may separate thousands
# ('12.340,5'). A trailing '%' divides by 100 ('1.5%' -> 0.015). Anything else that merely
# looks like a number ('3,5' under decimal '.') counts as number-like for the refusal below.
_THOUSANDS = {".": re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$"),
              ",": re.compile(r"^[+-]?\d{1,3}([. ]\d{3})+(,\d*)?$|^[+-]?\d*,\d+$|^[+-]?\d+,$")}
_NUMBER_LIKE = re.compile(r"^[+-]?(\d+([.,' ]\d+)*[.,]?|[.,]\d+)([eE][+-]?\d+)?%?$"
                          r"|^[+-]?(inf|infinity|nan)$", re.IGNORECASE)
DECIMALS = (".", ",")


def _parse_one(v: str, decimal: str) -> float:
  """float(v) under the rule above; ValueError when v is not a number."""
  scale = 1.0
  if v.endswith("%"):
    v, scale = v[:-1].rstrip(), 0.01
  if decimal == "." and "," not in v and "_" not in v:
    return float(v) * scale
  if _THOUSANDS[decimal].match(v):
    if decimal == ".":
      return float(v.replace(",", "")) * scale
    return float(v.replace(".", "").replace(" ", "").replace(",", ".")) * scale
  if decimal == "," and "," not in v and "." not in v and "_" not in v:
    return float(v) * scale
  raise ValueError(v)


def parse_numbers(values: np.ndarray, missing: np.ndarray, decimal: str = "."
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(floats with NaN where missing, mask of non-missing values that are not finite numbers)."""
  out = np.full(values.shape[0], np.nan, np.float64)
  bad = np.zeros(values.shape[0], bool)
  present = np.flatnonzero(~missing)
  try:
    if decimal != ".":
      raise ValueError("decimal comma: every value goes through _parse_one")
    out[present] = values[present].astype(np.float64)
  except ValueError:
    for i in present:
      try:
        out[i] = _parse_one(values[i], decimal)
      except ValueError:
        bad[i] = True
  bad[present] |= ~np.isfinite(out[present]) & ~bad[present]
  out[bad] = np.nan
  return out, bad


def check_decimal(cfg) -> str:
  decimal = cfg.get("decimal", ".")
  if decimal not in DECIMALS:
    raise DataError(f"data.decimal={decimal!r} is not one of {list(DECIMALS)}")
  return decimal


def _not_numeric(table: RawTable, col: str, values: np.ndarray, bad_rows: np.ndarray,
                 decimal: str, why: str) -> DataError:
  """The refusal of a numeric-looking column with non-numbers, naming example cells."""
  shown = ", ".join(f"line {table.lines[i]}: {values[i]!r}" for i in bad_rows[:3])
  hints = ["fix the values", "list them in data.missing_values",
           "declare the column in data.categorical_columns"]
  if decimal == "." and any("," in values[i] for i in bad_rows[:50]):
    hints.insert(0, "set data.decimal=',' if the file writes decimal commas")
  first = int(bad_rows[0])
  return DataError(
      f"{table.path}:{table.lines[first]}: column {col!r}: {values[first]!r} is not a finite "
      f"number, but the column is numeric ({why}; {bad_rows.size} such value(s): {shown}). "
      "To go on: " + "; or ".join(hints))


def _check_names(table: RawTable, names: Sequence[str], field: str) -> None:
  unknown = [n for n in names if n not in table.header]
  if unknown:
    raise DataError(f"{table.path}:1: data.{field} names column(s) {unknown} that are not in "
                    f"the header {list(table.header)}")


def detect_kinds(table: RawTable, label_column: str, cfg) -> tuple[dict, dict, list[str]]:
  """(kinds {column: 'numeric'|'categorical'}, parsed numeric columns, unusable columns).

  Feature columns: data.feature_columns if given, else every column but the label and
  data.ignore_columns. Columns kept in header order.
  """
  numeric_cfg = list(cfg.get("numeric_columns", ()) or ())
  categorical_cfg = list(cfg.get("categorical_columns", ()) or ())
  ignore = list(cfg.get("ignore_columns", ()) or ())
  chosen = list(cfg.get("feature_columns", ()) or ())
  for field, names in (("numeric_columns", numeric_cfg), ("categorical_columns", categorical_cfg),
                       ("ignore_columns", ignore), ("feature_columns", chosen)):
    _check_names(table, names, field)
  both = sorted(set(numeric_cfg) & set(categorical_cfg))
  if both:
    raise DataError(f"column(s) {both} are in both data.numeric_columns and "
                    "data.categorical_columns")
  if label_column in numeric_cfg + categorical_cfg + chosen:
    raise DataError(f"{table.path}: the label column {label_column!r} cannot also be a feature")
  features = chosen or [c for c in table.header if c != label_column and c not in ignore]
  missing_values = tuple(cfg.get("missing_values", DEFAULT_MISSING))
  decimal = check_decimal(cfg)
  kinds, numbers, unusable = {}, {}, []
  for col in features:
    values = table.columns[col]
    missing = missing_mask(values, missing_values)
    if missing.all():
      unusable.append(col)
      continue
    if col in categorical_cfg:
      kinds[col] = "categorical"
      continue
    parsed, bad = parse_numbers(values, missing, decimal)
    n_present, n_bad = int((~missing).sum()), int(bad.sum())
    if n_bad == 0:
      kinds[col], numbers[col] = "numeric", parsed
      continue
    declared = col in numeric_cfg
    bad_rows = np.flatnonzero(bad)
    number_like = sum(bool(_NUMBER_LIKE.match(values[i])) for i in bad_rows)
    if declared or n_present - n_bad + number_like >= NUMERIC_LOOKING * n_present:
      raise _not_numeric(table, col, values, bad_rows, decimal,
                         "declared in data.numeric_columns" if declared else
                         f"{n_present - n_bad + number_like} of its {n_present} values are "
                         "number-like")
    kinds[col] = "categorical"
  if not kinds:
    raise DataError(
        f"{table.path}:1: no usable feature column: the header has {list(table.header)}, the "
        f"label is {label_column!r}, ignored {ignore}, without any value {unusable}; a table "
        "needs at least one feature column with values")
  return kinds, numbers, unusable


def class_order(labels: Sequence[str]) -> list[str]:
  """Distinct labels, sorted; numerically when all are integers ('2' before '10')."""
  names = sorted(set(labels))
  try:
    return sorted(names, key=int)
  except ValueError:
    return names


def label_variants(labels: Sequence[str]) -> dict[str, list[str]]:
  """Labels that differ only in case or whitespace: {canonical key: spellings, most rows first}."""
  spellings, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
  groups: dict[str, list] = {}
  for name, n in zip(spellings.tolist(), counts.tolist()):
    groups.setdefault(" ".join(name.split()).casefold(), []).append((-n, name))
  return {k: [name for _, name in sorted(v)] for k, v in groups.items() if len(v) > 1}
