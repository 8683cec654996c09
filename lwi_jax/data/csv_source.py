"""A user's own labelled text: one CSV file, a text column and a label column.

  python launch.py --config=configs/names.py:csv --config.data.path=my.csv \
      --config.data.text_column=name --config.data.label_column=country

The file needs a header row. Classes are the distinct label strings, sorted (so the class order
does not depend on the row order). Texts go through the same encoding and the same split rule
as the names dataset (text.py): identical normalised texts never sit in two splits, and
data.conflicts says what happens to identical inputs with different labels ('keep' by default:
they stay, in one split). Rows whose text is empty after normalisation are dropped and counted.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from lwi_jax.data import text
from lwi_jax.data.errors import DataError
from lwi_jax.data.types import ClassificationData


def read_labelled_csv(path: str, text_column: str, label_column: str, delimiter: str = ",",
                      encoding: str = "utf-8-sig") -> tuple[list[str], list[str]]:
  """(texts, label strings) of every data row; DataErrors name the file, line and column.

  'utf-8-sig' reads plain UTF-8 and also drops the byte-order mark spreadsheet programs write.
  """
  if not path:
    raise DataError("data.path is empty: set it to a CSV file with a header row "
                    "(--config.data.path=...)")
  if not os.path.isfile(path):
    raise DataError(f"data.path={path!r}: no such file")
  if len(delimiter) != 1:
    raise DataError(f"data.delimiter={delimiter!r} must be one character (',' ';' '\\t' ...)")
  if text_column == label_column:
    raise DataError(f"data.text_column and data.label_column are both {text_column!r}")
  try:
    with open(path, newline="", encoding=encoding) as f:
      reader = csv.DictReader(f, delimiter=delimiter)
      header = reader.fieldnames
      if not header:
        raise DataError(f"{path}: the file is empty (expected a header row with columns "
                        f"{text_column!r} and {label_column!r})")
      missing = [c for c in (text_column, label_column) if c not in header]
      if missing:
        raise DataError(f"{path}: column(s) {missing} not in the header {header}; set "
                        "data.text_column / data.label_column (or data.delimiter="
                        f"{delimiter!r} if the file uses another separator)")
      texts, labels = [], []
      for row in reader:
        line = reader.line_num
        label, value = row.get(label_column), row.get(text_column)
        if label is None or value is None:
          raise DataError(f"{path}:{line}: the row has fewer fields than the header")
        label = label.strip()
        if not label:
          raise DataError(f"{path}:{line}: empty label in column {label_column!r}")
        texts.append(value)
        labels.append(label)
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not readable as {encoding} ({e}); set data.encoding") from e
  except csv.Error as e:
    raise DataError(f"{path}: malformed CSV ({e})") from e
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
  info = {"source": "csv", "path": os.path.abspath(cfg.path), "rows": len(texts)}
  return text.make_text_data(texts, labels, class_names, cfg, info)
