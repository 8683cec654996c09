"""Table columns -> one float32 feature matrix, with every statistic fitted on the TRAINING split.

Why training rows only: the validation split drives the class weights and the test split is
the final report; a mean or a category list taken from them would leak their contents into
every model. So `fit` sees the training rows, and `transform` applies the frozen statistics to
any rows (shifting the test split's values changes nothing the model is trained on).

Per column kind:
- numeric: missing values -> the training mean; then standardised with the training mean and
  standard deviation (a constant column gets std 1). If the column has missing values in the
  training split it also gets a 0/1 "missing" indicator column, so the model can tell an
  imputed mean from a real one.
- categorical: one-hot over the training split's categories (a missing value is its own
  category, '<missing>'), the `max_categories` most frequent kept, plus one slot for every
  category never seen in training (or beyond the cap): '<other>'.
"""

from __future__ import annotations

import dataclasses

import numpy as np

MISSING = "<missing>"
OTHER = "<other>"


@dataclasses.dataclass(frozen=True)
class NumericColumn:
  name: str
  mean: float
  std: float
  indicator: bool


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
    """Features [len(rows), num_features] float32 of the given row indices."""
    parts = []
    for c in self.numeric:
      x = numbers[c.name][rows]
      isnan = np.isnan(x)
      parts.append(((np.where(isnan, c.mean, x) - c.mean) / c.std)[:, None])
      if c.indicator:
        parts.append(isnan.astype(np.float64)[:, None])
    for c in self.categorical:
      values = _category_values(strings[c.name][rows], missing[c.name][rows])
      index = {v: i for i, v in enumerate(c.categories)}
      ids = np.fromiter((index.get(v, len(c.categories)) for v in values), np.int64,
                        count=values.shape[0])
      parts.append(np.eye(len(c.categories) + 1)[ids])
    return np.concatenate(parts, axis=1).astype(np.float32)


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
      mean = float(present.mean()) if present.size else 0.0
      std = float(present.std()) if present.size else 0.0
      numeric.append(NumericColumn(name, mean, std if std > 0 else 1.0,
                                   bool(np.isnan(x).any())))
    else:
      values = _category_values(strings[name][train_rows], missing[name][train_rows])
      cats, counts = np.unique(values.astype(str), return_counts=True)
      order = sorted(range(cats.size), key=lambda i: (-counts[i], cats[i]))[:max_categories]
      categorical.append(CategoricalColumn(name, tuple(sorted(str(cats[i]) for i in order))))
  return FeatureTransform(tuple(numeric), tuple(categorical))
