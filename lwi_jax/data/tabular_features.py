"""Table columns -> one float32 feature matrix, with every statistic fitted on the TRAINING split.

Why training rows only: the validation split drives the class weights and the test split is
the final report; a mean or a category list taken from them would leak their contents into
every model. So `fit` sees the training rows, and `transform` applies the frozen statistics to
any rows (shifting the test split's values changes nothing the model is trained on).

Per column kind:
- numeric: missing values -> the training mean; then standardised with the training mean and
  standard deviation (a constant column gets std 1), in float64 and, for values whose squares
  would overflow (|x| > 1e150), after dividing by the largest training magnitude, so a column
  of huge values is standardised, never zeroed or turned into NaN. If the column has missing
  values in the training split it also gets a 0/1 "missing" indicator column, so the model can
  tell an imputed mean from a real one.
- categorical: one-hot over the training split's categories (a missing value is its own
  category, '<missing>'), the `max_categories` most frequent kept, plus one slot for every
  category never seen in training (or beyond the cap): '<other>'.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MISSING = "<missing>"
# Above this magnitude a column's squares (its variance) would overflow float64: such columns
# are divided by their largest magnitude first (mean and std in float64 either way).
SAFE_ABS = 1e150
OTHER = "<other>"


@dataclasses.dataclass(frozen=True)
class NumericColumn:
  name: str
  mean: float
  std: float
  indicator: bool
  # Values are divided by `scale` before centring when their squares would overflow float64
  # (|x| > SAFE_ABS); 1.0 otherwise, which keeps the plain arithmetic (and its exact results).
  scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class CategoricalColumn:
  name: str
  categories: tuple[str, ...]  # one-hot slots; OTHER (unseen) comes after them


@dataclasses.dataclass(frozen=True)
class FeatureTransform:
  """Frozen training statistics; `transform` is a pure function of them and the rows."""

  numeric: tuple[NumericColumn, ...]
  categorical: tuple[CategoricalColumn, ...]

  @property
  def feature_names(self) -> list[str]:
    names = []
    for c in self.numeric:
      names.append(c.name)
      if c.indicator:
        names.append(f"{c.name}:missing")
    for c in self.categorical:
      names += [f"{c.name}={v}" for v in c.categories] + [f"{c.name}={OTHER}"]
    return names

  @property
  def num_features(self) -> int:
    return len(self.feature_names)

  def transform(self, numbers: dict, strings: dict, missing: dict, rows: np.ndarray
                ) -> np.ndarray:
    """Features [len(rows), num_features] float32 of the given row indices.

    Each column is computed in float64 and rounded into its float32 slot as it is made, so a
    million-row split never holds the whole matrix in float64 (the values are those of
    computing it all in float64 and rounding at the end).
    """
    out = np.zeros((rows.shape[0], self.num_features), np.float32)
    j = 0
    with np.errstate(over="ignore"):  # a non-finite result is refused by the caller, by name
      for c in self.numeric:
        x = numbers[c.name][rows]
        isnan = np.isnan(x)
        if c.scale == 1.0:
          out[:, j] = (np.where(isnan, c.mean, x) - c.mean) / c.std
        else:
          mean, std = c.mean / c.scale, c.std / c.scale
          out[:, j] = (np.where(isnan, mean, x / c.scale) - mean) / std
        j += 1
        if c.indicator:
          out[:, j] = isnan
          j += 1
    for c in self.categorical:
      values = _category_values(strings[c.name][rows], missing[c.name][rows])
      # pyarrow's hash lookup: a Python dict lookup per row took seconds at a million rows.
      found = pc.index_in(pa.array(values, pa.string()),
                          value_set=pa.array(c.categories, pa.string()))
      ids = np.asarray(pc.fill_null(found, len(c.categories)).to_numpy(zero_copy_only=False),
                       np.int64)
      out[np.arange(rows.shape[0]), j + ids] = 1.0
      j += len(c.categories) + 1
    return out


def _category_values(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
  return np.where(missing, MISSING, values)


def fit(kinds: dict, numbers: dict, strings: dict, missing: dict, train_rows: np.ndarray,
        max_categories: int = 50) -> FeatureTransform:
  """Statistics of every feature column over `train_rows` only."""
  numeric, categorical = [], []
  for name, kind in kinds.items():
    if kind == "numeric":
      x = numbers[name][train_rows]
      present = x[~np.isnan(x)]
      top = float(np.abs(present).max()) if present.size else 0.0
      scale = top if top > SAFE_ABS else 1.0
      mean = float((present / scale).mean()) if present.size else 0.0
      std = float((present / scale).std()) if present.size else 0.0
      numeric.append(NumericColumn(name, mean * scale, std * scale if std > 0 else scale,
                                   bool(np.isnan(x).any()), scale))
    else:
      values = _category_values(strings[name][train_rows], missing[name][train_rows])
      counts = collections.Counter(values.tolist())
      order = sorted(counts, key=lambda v: (-counts[v], v))[:max_categories]
      categorical.append(CategoricalColumn(name, tuple(sorted(order))))
  return FeatureTransform(tuple(numeric), tuple(categorical))
