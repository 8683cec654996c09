"""The grouped split rule of every text source: identical inputs never sit in two splits.

Rows with the same normalised string form one group, and a group goes to exactly one of
train / validation / test. Groups are stratified by label: every class gives the same
fraction of its groups to validation and to test (`splits.held_out_count` of its groups).
Identical inputs with different labels are resolved first, by `data.conflicts`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lwi_jax.data.errors import DataError
from lwi_jax.data.splits import held_out_count

CONFLICT_POLICIES = ("keep", "drop", "majority")


def group_ids(ids) -> np.ndarray:
  """Group index per row; identical rows (id arrays, or strings) share a group.

  Groups are numbered by first occurrence, so they follow the file/sample order.
  """
  if isinstance(ids, np.ndarray) and ids.ndim == 2:
    ids = [r.tobytes() for r in np.ascontiguousarray(ids)]
  index: dict = {}
  return np.asarray([index.setdefault(k, len(index)) for k in ids], np.int64)


def resolve_conflicts(groups: np.ndarray, labels: np.ndarray, policy: str
                      ) -> tuple[np.ndarray, np.ndarray, int]:
  """Rows to keep (and their labels) when identical inputs carry different labels.

  'keep': every row stays with its own label (the split still keeps the group together, so the
    ambiguity is the same in every split); 'drop': groups with more than one label are removed;
  'majority': such groups take their most frequent label (ties: the smallest label id).
  Returns (kept row indices, labels of those rows, number of conflicting groups).
  """
  if policy not in CONFLICT_POLICIES:
    raise DataError(f"data.conflicts={policy!r} is not one of {list(CONFLICT_POLICIES)}")
  n_groups = int(groups.max()) + 1 if groups.size else 0
  num_labels = int(labels.max()) + 1 if labels.size else 0
  table = np.zeros((n_groups, max(num_labels, 1)), np.int64)
  np.add.at(table, (groups, labels), 1)
  conflicting = (table > 0).sum(1) > 1
  rows = np.arange(labels.size)
  if policy == "keep" or not conflicting.any():
    return rows, labels, int(conflicting.sum())
  if policy == "drop":
    keep = ~conflicting[groups]
    return rows[keep], labels[keep], int(conflicting.sum())
  majority = table.argmax(1).astype(labels.dtype)  # argmax picks the smallest id on ties
  return rows, np.where(conflicting[groups], majority[groups], labels), int(conflicting.sum())


def grouped_split(groups: np.ndarray, labels: np.ndarray, validation_fraction: float,
                  test_fraction: float, seed: int, class_names: Sequence[str]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train, validation, test) row indices; every group lands in exactly one of them.

  A group is stratified by the label of its first row. Each class with g groups gives
  round(f * g) of them (at least one when f > 0) to validation and to test, and must keep at
  least one for training; otherwise a DataError names the class.
  """
  for name, f in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
    if not 0.0 <= f < 1.0:
      raise DataError(f"data.{name}={f} must lie in [0, 1)")
  if validation_fraction + test_fraction >= 1.0:
    raise DataError(f"data.validation_fraction + data.test_fraction = "
                    f"{validation_fraction + test_fraction} leaves nothing to train on")
  n_groups = int(groups.max()) + 1 if groups.size else 0
  group_label = np.full(n_groups, -1, np.int64)
  first_rows = np.unique(groups, return_index=True)[1]
  group_label[groups[first_rows]] = labels[first_rows]
  rng = np.random.default_rng(seed)
  assign = np.zeros(n_groups, np.int8)  # 0 train, 1 validation, 2 test
  for c, name in enumerate(class_names):
    members = np.flatnonzero(group_label == c)
    n_val = held_out_count(validation_fraction, members.size)
    n_test = held_out_count(test_fraction, members.size)
    if members.size - n_val - n_test < 1:
      raise DataError(
          f"class {name!r} has {members.size} distinct text(s): too few for "
          f"validation_fraction={validation_fraction} and test_fraction={test_fraction} "
          f"(needs at least {n_val + n_test + 1}); add examples or lower the fractions")
    perm = rng.permutation(members)
    assign[perm[:n_val]] = 1
    assign[perm[n_val:n_val + n_test]] = 2
  row_assign = assign[groups]
  return tuple(np.flatnonzero(row_assign == k) for k in range(3))
