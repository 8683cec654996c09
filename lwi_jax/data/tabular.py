"""Tabular sources: the bundled satimage / letter tables and a user's own CSV (data.name='tabular').

  python launch.py --config=configs/tabular.py                 # satimage, balanced (default)
  python launch.py --config=configs/tabular.py:letter          # letter recognition
  python launch.py --config=configs/tabular.py:csv --config.data.path=my.csv \
      --config.data.label_column=label

The steps, in order (each seeded by data.split_seed, none looks at feature values):
  1. read the file, decide column kinds (tabular_table.py);
  2. `data.balance`: subsample every class to the size of the smallest one (the study is about
     learnability, not frequency, imbalance); off = every row;
  3. stratified test split (data.test_fraction of each class), then the validation split
     carved from what is left (data.validation_fraction of each class), as for the other
     sources: weights come from validation, never test;
  4. imputation, standardisation and one-hot fitted on the training split only
     (tabular_features.py), applied to all three splits.
Inputs are float32 [N, F]; `info` names the features and what was dropped or imputed.
"""

from __future__ import annotations

import importlib.resources
import os

import numpy as np

from lwi_jax.data import tabular_features, tabular_table
from lwi_jax.data.errors import DataError
from lwi_jax.data.splits import held_out_count, per_class_subset, stratified_split
from lwi_jax.data.types import ClassificationData, Split

# data.balance keeping less than this share of the labelled rows is a console WARNING (the
# per-class counts are printed either way).
BALANCE_WARN_SHARE = 0.5
# name -> (file in lwi_jax/data/tabular_data, label column); see ATTRIBUTION.md there.
BUNDLED = {"satimage": ("satimage.csv.gz", "class"), "letter": ("letter.csv.gz", "letter")}


def bundled_path(name: str) -> str:
  """Path of a bundled table inside the installed package (works for non-editable installs)."""
  filename = BUNDLED[name][0]
  path = str(importlib.resources.files("lwi_jax.data") / "tabular_data" / filename)
  if not os.path.isfile(path):
    raise DataError(f"the bundled file {filename} is missing from the installed package at "
                    f"{path}; reinstall lwi-jax (its package data includes tabular_data/)")
  return path


def _check_class_sizes(path, label_column, class_names, labels, lines, test_fraction,
                       validation_fraction) -> None:
  """A class too small to appear in train, validation and test is an error naming it."""

  def fits(n):
    pool = n - held_out_count(test_fraction, n)
    return pool > 0 and pool - held_out_count(validation_fraction, pool) > 0 and (
        test_fraction == 0 or held_out_count(test_fraction, n) < n)

  need = next(n for n in range(1, 1000) if fits(n))
  for c, name in enumerate(class_names):
    rows = np.flatnonzero(labels == c)
    if not fits(rows.size):
      shown = ", ".join(str(x) for x in lines[rows[:5]])
      raise DataError(
          f"{path}: column {label_column!r}: class {name!r} has {rows.size} row(s) (line(s) "
          f"{shown}); the split needs at least {need} per class (test_fraction={test_fraction}, "
          f"validation_fraction={validation_fraction}): add rows, remove the class, or lower "
          "the fractions")


def split_rows(labels: np.ndarray, cfg, check=lambda rows: None) -> dict[str, np.ndarray]:
  """Row indices of train / validation / test (steps 2-3): a function of the labels and the
  seed only, so a table's values never move a row from one split to another."""
  seed = int(cfg.split_seed)
  rows = np.arange(labels.shape[0])
  if cfg.get("balance", False):
    rows = per_class_subset(labels, int(np.bincount(labels).min()), seed)
  check(rows)
  pool_idx, test_idx = stratified_split(labels[rows], float(cfg.get("test_fraction", 0.2)), seed)
  pool, test = rows[pool_idx], rows[test_idx]
  train_idx, val_idx = stratified_split(labels[pool], float(cfg.validation_fraction), seed + 1)
  return {"train": pool[train_idx], "validation": pool[val_idx], "test": test}


def make_tabular_data(table: tabular_table.RawTable, label_column: str, cfg,
                      info: dict | None = None) -> ClassificationData:
  """Steps 1-4 of the module docstring on an already read table, which it consumes (numeric
  columns' text is dropped as they are parsed, the rest once the features are built)."""
  path = table.path
  if label_column not in table.header:
    raise DataError(f"{path}:1: label column {label_column!r} not in the header "
                    f"{list(table.header)}; set data.label_column")
  missing_values = tuple(cfg.get("missing_values", tabular_table.DEFAULT_MISSING))
  rows_read = len(table)
  no_label = tabular_table.missing_mask(table.columns[label_column], missing_values)
  dropped_lines = table.lines[no_label]
  if no_label.any():
    table = table.take(np.flatnonzero(~no_label))
  label_strings, warnings, merged = _label_spellings(
      table.strings(label_column), label_column, bool(cfg.get("merge_label_variants", False)))
  if dropped_lines.size:
    shown = ", ".join(map(str, dropped_lines[:5])) + (" ..." if dropped_lines.size > 5 else "")
    warnings.insert(0, f"{dropped_lines.size} of {rows_read} rows have no label (a value of "
                    f"data.missing_values in column {label_column!r}, lines {shown}): dropped")
  class_names = tabular_table.class_order(label_strings.tolist())
  if len(class_names) < 2:
    raise DataError(f"{path}: column {label_column!r} has only the class {class_names}; a "
                    "classification needs at least 2 classes")
  # consume: the table is this function's (load_table_file keeps no reference to it)
  kinds, numbers, unusable, missing = tabular_table.detect_kinds(table, label_column, cfg,
                                                                 consume=True)
  index = {name: i for i, name in enumerate(class_names)}
  labels = np.fromiter((index[s] for s in label_strings), np.int32, count=len(table))
  del label_strings
  counts = np.bincount(labels, minlength=len(class_names))
  lines, n_rows = table.lines, len(table)
  splits = split_rows(labels, cfg, lambda rows: _check_class_sizes(
      path, label_column, class_names, labels[rows], lines[rows],
      float(cfg.get("test_fraction", 0.2)), float(cfg.validation_fraction)))

  strings = {c: table.strings(c) for c, kind in kinds.items() if kind == "categorical"}
  # The string columns are not needed any more: a million-row file's text is freed before the
  # feature matrix is built (when the caller passed the table without keeping it).
  del table
  tabular_table.release_freed_memory()
  transform = tabular_features.fit(kinds, numbers, strings, missing, splits["train"],
                                   int(cfg.get("max_categories", 50)))
  def take(r):
    x = _finite(transform, transform.transform(numbers, strings, missing, r), path, lines[r])
    tabular_table.release_freed_memory()  # the one-hot lookups' pyarrow buffers
    return Split(x, labels[r])

  kept = np.bincount(labels[np.concatenate(list(splits.values()))], minlength=len(class_names))
  if cfg.get("balance", False) and kept.sum() < BALANCE_WARN_SHARE * counts.sum():
    warnings.append(f"data.balance=True uses {kept.sum()} of {counts.sum()} labelled rows "
                    f"({100 * kept.sum() / counts.sum():.1f}%): every class is cut to the "
                    f"smallest one's {counts.min()} rows (data.balance=False keeps every row)")
  info = dict(info or {})
  info.update({
      "path": os.path.abspath(path), "rows": n_rows, "rows_read": rows_read,
      "dropped_missing_label": int(dropped_lines.size), "merged_label_variants": merged,
      "rows_used_per_class": {n: int(k) for n, k in zip(class_names, kept)},
      "warnings": warnings,
      "balanced_per_class": int(counts.min()) if cfg.get("balance", False) else 0,
      "rows_per_class": {n: int(k) for n, k in zip(class_names, counts)},
      "numeric_columns": [c for c, k in kinds.items() if k == "numeric"],
      "categorical_columns": [c for c, k in kinds.items() if k == "categorical"],
      "unusable_columns": unusable,
      "missing_values_by_column": {c: int(m.sum()) for c, m in missing.items() if m.any()},
      "num_features": transform.num_features,
      "feature_names": transform.feature_names})
  return ClassificationData(train=take(splits["train"]), validation=take(splits["validation"]),
                            test=take(splits["test"]), class_names=tuple(class_names), info=info)


def _label_spellings(labels: np.ndarray, label_column: str, merge: bool
                     ) -> tuple[np.ndarray, list[str], dict]:
  """(labels, warnings, {spelling: merged into}): labels differing only in case or whitespace
  are warned about (they would be separate classes), or merged into their most frequent
  spelling when data.merge_label_variants=True."""
  variants = tabular_table.label_variants(labels.tolist())
  if not variants:
    return labels, [], {}
  if not merge:
    shown = "; ".join(" / ".join(map(repr, v)) for v in list(variants.values())[:5])
    return labels, [f"column {label_column!r}: labels that differ only in case or whitespace are "
                    f"separate classes: {shown} (data.merge_label_variants=True merges them)"], {}
  into = {name: v[0] for v in variants.values() for name in v[1:]}
  merged = np.asarray([into.get(x, x) for x in labels.tolist()], dtype=object)
  return merged, [], into


def _finite(transform, x: np.ndarray, path: str, lines: np.ndarray) -> np.ndarray:
  """The features, or a DataError naming the first column with a non-finite value."""
  # A float64 column sum of float32 values is non-finite exactly when a value is (float32's
  # largest times a billion rows is still finite in float64): no [N, F] mask for a large table.
  if not np.isfinite(x.sum(axis=0, dtype=np.float64)).all():
    row, col = np.argwhere(~np.isfinite(x))[0]
    raise DataError(f"{path}:{lines[row]}: feature {transform.feature_names[col]!r} is not finite "
                    "in float32 after standardisation (a value far outside the training rows' "
                    "range); fix or remove the value, or list it in data.missing_values")
  return x


def load_table_file(cfg, path: str, label_column: str, source: str) -> ClassificationData:
  return make_tabular_data(  # not kept here: make_tabular_data frees the strings when done
      tabular_table.read_table(path, cfg.get("delimiter", ","), cfg.get("encoding", "utf-8-sig"),
                               bool(cfg.get("multiline_fields", False))),
      label_column, cfg, {"source": source})


def load_tabular_csv(cfg) -> ClassificationData:
  """`config.data` loader for data.name='tabular': the user's file in data.path."""
  return load_table_file(cfg, cfg.path, cfg.label_column, "tabular_csv")


def _bundled_loader(name: str):
  def load(cfg) -> ClassificationData:
    return load_table_file(cfg, bundled_path(name), BUNDLED[name][1], f"bundled:{name}")
  load.__doc__ = f"`config.data` loader for data.name={name!r} (bundled with the package)."
  return load


LOADERS = {"tabular": load_tabular_csv,
           **{name: _bundled_loader(name) for name in BUNDLED}}
