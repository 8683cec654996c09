"""A read table's columns typed: the label, numeric columns, categorical columns.

The file is read by tabular_read.py (pyarrow, with this project's strict checks); the kinds are
decided here, by the rules below, never by pyarrow's type inference. Separate from the text CSV
reader (csv_source.py) because a table has many feature columns whose kinds must be decided,
and its values become floats, not token ids.

Column kinds (`detect_kinds`): a column is numeric when every non-missing value parses as a
finite number, categorical otherwise, unless the config says so (data.numeric_columns /
data.categorical_columns). A column whose values are mostly numbers (NUMERIC_LOOKING) but not all
is almost certainly a typo in a numeric column, not a category: that is an error naming the
file, line and column, never a silent switch to one category per distinct number.
Missing values are the strings in data.missing_values ('' always counts); a column with no
value at all is unusable and dropped (listed in info['unusable_columns']).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lwi_jax.data.errors import DataError
from lwi_jax.data.tabular_read import RawTable, read_table, release_freed_memory

__all__ = ["RawTable", "read_table", "release_freed_memory", "detect_kinds", "missing_mask",
           "parse_numbers"]

DEFAULT_MISSING = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
# A column this numeric-looking (share of its values that are numbers or look like numbers:
# 'inf', '3,5', '12,34%') with a non-number in it is refused, never one-hot encoded.
NUMERIC_LOOKING = 0.5


def missing_mask(values, missing_values: Sequence[str]) -> np.ndarray:
  """Rows whose value (a column of a RawTable, or an array of str) is a missing-value token."""
  tokens = sorted(set(missing_values) | {""})
  if isinstance(values, (pa.Array, pa.ChunkedArray)):
    found = pc.is_in(values, value_set=pa.array(tokens, pa.string()))
    return np.asarray(found.to_numpy(zero_copy_only=False), bool)
  tokens = set(tokens)
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


def _parse_values(values: np.ndarray, decimal: str) -> tuple[np.ndarray, np.ndarray]:
  """(floats, not-a-number mask) of non-missing values: all at once when every one is a plain
  number, else one by one under the rule above."""
  out = np.full(values.shape[0], np.nan, np.float64)
  bad = np.zeros(values.shape[0], bool)
  try:
    if decimal != ".":
      raise ValueError("decimal comma: every value goes through _parse_one")
    out[:] = values.astype(np.float64)
  except ValueError:
    for i, v in enumerate(values):
      try:
        out[i] = _parse_one(v, decimal)
      except ValueError:
        bad[i] = True
  return out, bad


def parse_numbers(values, missing: np.ndarray, decimal: str = "."
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(floats with NaN where missing, mask of non-missing values that are not finite numbers).

  `values`: a RawTable column (pyarrow) or an array of str. A pyarrow column of plain numbers
  is cast by pyarrow (correctly rounded, as float() is; it accepts no string float() refuses);
  otherwise each DISTINCT value is parsed once, which gives every row the result it would get
  alone and costs the number of distinct values, not of rows.
  """
  n = len(values)
  out = np.full(n, np.nan, np.float64)
  bad = np.zeros(n, bool)
  present = np.flatnonzero(~missing)
  if isinstance(values, (pa.Array, pa.ChunkedArray)):
    if decimal == ".":
      try:
        cast = pc.cast(values.take(pa.array(present, pa.int64())), pa.float64())
        out[present] = np.asarray(cast.to_numpy(zero_copy_only=False), np.float64)
      except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
      else:
        bad[present] = ~np.isfinite(out[present])
        out[bad] = np.nan
        return out, bad
    encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray)
                                   else values)
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
  else:
    distinct, index = np.unique(np.asarray(values, dtype=object), return_inverse=True)
  used = np.unique(index[present])
  parsed, unparsed = _parse_values(distinct[used], decimal)
  where = np.searchsorted(used, index[present])
  out[present], bad[present] = parsed[where], unparsed[where]
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


def detect_kinds(table: RawTable, label_column: str, cfg, consume: bool = False
                 ) -> tuple[dict, dict, list[str], dict]:
  """(kinds {column: 'numeric'|'categorical'}, parsed numeric columns, unusable columns,
  missing-value masks of the kinds' columns).

  Feature columns: data.feature_columns if given, else every column but the label and
  data.ignore_columns. Columns kept in header order. consume=True drops a numeric column's
  strings from `table` as soon as it is parsed (for a caller that owns the table and needs only
  the numbers after this): the floats then replace the text instead of joining it, which is
  what keeps a large CSV's load near the file's size.
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
  kinds, numbers, unusable, masks = {}, {}, [], {}
  for col in features:
    missing = missing_mask(table.columns[col], missing_values)
    if missing.all():
      unusable.append(col)
      continue
    masks[col] = missing
    if col in categorical_cfg:
      kinds[col] = "categorical"
      continue
    parsed, bad = parse_numbers(table.columns[col], missing, decimal)
    n_present, n_bad = int((~missing).sum()), int(bad.sum())
    if n_bad == 0:
      kinds[col], numbers[col] = "numeric", parsed
      if consume:
        del table.columns[col]
        release_freed_memory()
      continue
    declared = col in numeric_cfg
    bad_rows = np.flatnonzero(bad)
    distinct, index = table.distinct(col)
    bad_values, count = np.unique(index[bad_rows], return_counts=True)
    number_like = sum(int(k) for v, k in zip(distinct[bad_values], count) if _NUMBER_LIKE.match(v))
    if declared or n_present - n_bad + number_like >= NUMERIC_LOOKING * n_present:
      raise _not_numeric(table, col, distinct[index], bad_rows, decimal,
                         "declared in data.numeric_columns" if declared else
                         f"{n_present - n_bad + number_like} of its {n_present} values are "
                         "number-like")
    kinds[col] = "categorical"
  if not kinds:
    raise DataError(
        f"{table.path}:1: no usable feature column: the header has {list(table.header)}, the "
        f"label is {label_column!r}, ignored {ignore}, without any value {unusable}; a table "
        "needs at least one feature column with values")
  return kinds, numbers, unusable, masks


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
