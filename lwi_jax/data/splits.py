"""Seeded, stratified index splits: every class keeps its share in train and validation."""

from __future__ import annotations

import numpy as np

from lwi_jax.data.types import ClassificationData, Split


def held_out_count(fraction: float, n: int) -> int:
  """How many of a class's n examples (or groups) a held-out `fraction` takes.

  round(fraction * n), and at least one when fraction > 0, so every class appears in the
  held-out split. The one sizing rule of every split (stratified_split, the tabular class-size
  check, the grouped text split), so they agree on which classes are too small.
  """
  return max(int(round(fraction * n)), 1) if fraction > 0 else 0


def stratified_split(labels: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Returns (keep_indices, held_out_indices), `fraction` of each class held out.

  Each class contributes round(fraction * n_c) examples (at least one when fraction > 0), so a
  balanced dataset yields a balanced validation split. Indices come back sorted, which keeps
  the original order inside each part and makes the split independent of numpy's shuffle of
  the other classes.
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  held_out = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    n_held = held_out_count(fraction, idx.size)
    if fraction > 0 and n_held >= idx.size:
      raise ValueError(
          f"class {c} has {idx.size} examples: too few to hold out {fraction:.0%} for "
          "validation and keep some for training")
    held_out.append(rng.permutation(idx)[:n_held])
  held = np.sort(np.concatenate(held_out)) if held_out else np.zeros(0, np.int64)
  mask = np.ones(labels.shape[0], bool)
  mask[held] = False
  return np.flatnonzero(mask), held


def per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Sorted indices of at most `per_class` examples of every class (for small CPU presets)."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
  return np.sort(np.concatenate(picked))


def with_validation_split(pool: Split, test: Split, class_names, cfg, info=None
                          ) -> ClassificationData:
  """Carves the validation split out of `pool` (never out of `test`), after optional subsetting.

  `cfg.train_per_class` / `cfg.test_per_class` (0 = all) shrink the data for CPU presets; the
  validation split is then `cfg.validation_fraction` of each class of what is left.
  """
  if cfg.train_per_class:
    pool = pool.take(per_class_subset(pool.labels, cfg.train_per_class, cfg.split_seed))
  if cfg.test_per_class:
    test = test.take(per_class_subset(test.labels, cfg.test_per_class, cfg.split_seed + 1))
  train_idx, val_idx = stratified_split(pool.labels, cfg.validation_fraction, cfg.split_seed)
  return ClassificationData(train=pool.take(train_idx), validation=pool.take(val_idx), test=test,
                            class_names=tuple(class_names), info=dict(info or {}))
