"""Seeded, stratified index splits: every class keeps its share in train and validation."""

from __future__ import annotations

import numpy as np


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
    n_held = int(round(fraction * idx.size))
    if fraction > 0:
      n_held = max(n_held, 1)
      if n_held >= idx.size:
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
