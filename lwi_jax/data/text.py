"""Text -> token ids, and the train/validation/test split rule shared by every text source.

Encoding (one fixed character vocabulary, so ids mean the same thing in every run and source):
  1. `str.casefold()` (lowercase, and e.g. "ß" -> "ss"), then Unicode NFKD decomposition with
     the combining marks removed: "José Müller" -> "jose muller". This is `unicodedata`'s
     canonical way to strip accents; letters without a decomposition ("ø", "ł", any non-Latin
     script) stay as they are and become the out-of-vocabulary symbol.
  2. whitespace runs collapse to one space; leading and trailing whitespace goes.
  3. every character maps to its id in `VOCAB`, anything else to `OOV_ID`; rows are right-padded
     with `PAD_ID` = 0 (the repository-wide convention for text) to exactly `max_len` ids.
  4. texts longer than `max_len` keep their first `max_len` characters. Truncation is counted
     (`info['truncated']`) so a too-small max_len is visible in results.json.

Split rule: rows whose ENCODED ids are identical (the model cannot tell them apart, whatever
the raw strings were) form one group, and a group goes to exactly one of train / validation /
test. So the same input never sits in two splits, and a held-out score never rewards
memorising a training row. Groups are stratified by label: every class gives the same
fraction of its groups to validation and to test.
"""

from __future__ import annotations

import dataclasses
import string
import unicodedata
from typing import Sequence

import numpy as np

from lwi_jax.data.errors import DataError
from lwi_jax.data.types import ClassificationData, Split

PAD_ID = 0
OOV_ID = 1
CHARS = " " + string.ascii_lowercase + string.digits + "'-.,"
VOCAB = ("<pad>", "<oov>") + tuple(CHARS)  # id -> symbol
VOCAB_SIZE = len(VOCAB)
_CHAR_TO_ID = {ch: i for i, ch in enumerate(VOCAB) if i >= 2}
CONFLICT_POLICIES = ("keep", "drop", "majority")


def normalize(text: str) -> str:
  """Casefold, strip accents (NFKD minus combining marks), collapse whitespace."""
  decomposed = unicodedata.normalize("NFKD", text.casefold())
  stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
  return " ".join(stripped.split())


@dataclasses.dataclass(frozen=True)
class Encoded:
  """Token ids [N, max_len] (int32, right-padded with 0) plus what was lost on the way."""

  ids: np.ndarray
  lengths: np.ndarray  # [N] int32, number of non-pad ids
  truncated: int  # rows longer than max_len
  oov_chars: int  # characters mapped to OOV_ID


def encode(texts: Sequence[str], max_len: int) -> Encoded:
  """Encodes raw strings with the rules in the module docstring."""
  if int(max_len) < 1:
    raise DataError(f"data.max_len={max_len} must be >= 1")
  ids = np.zeros((len(texts), max_len), np.int32)
  lengths = np.zeros(len(texts), np.int32)
  truncated = oov = 0
  for row, text in enumerate(texts):
    norm = normalize(text)
    truncated += len(norm) > max_len
    codes = [_CHAR_TO_ID.get(ch, OOV_ID) for ch in norm[:max_len]]
    oov += codes.count(OOV_ID)
    ids[row, :len(codes)] = codes
    lengths[row] = len(codes)
  return Encoded(ids, lengths, int(truncated), int(oov))


def decode(ids: np.ndarray) -> str:
  """The normalised text behind one row of ids ('?' for OOV); for logs and tests."""
  return "".join("?" if i == OOV_ID else VOCAB[i] for i in np.asarray(ids).tolist() if i != PAD_ID)


def encoding_info(max_len: int) -> dict:
  """What a text model needs from `ClassificationData.info` (and what results.json records)."""
  return {"vocab_size": VOCAB_SIZE, "max_len": int(max_len), "pad_id": PAD_ID, "oov_id": OOV_ID,
          "vocab": CHARS}


def group_ids(ids: np.ndarray) -> np.ndarray:
  """Group index per row; rows with identical ids share a group (numbered by first occurrence)."""
  ids = np.ascontiguousarray(ids)
  if ids.shape[0] == 0:
    return np.zeros(0, np.int64)
  _, first, inverse = np.unique(ids, axis=0, return_index=True, return_inverse=True)
  # Renumber by first occurrence so group ids follow the file/sample order, not the sort order.
  rank = np.empty(first.size, np.int64)
  rank[np.argsort(first, kind="stable")] = np.arange(first.size)
  return rank[inverse.reshape(-1)]


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
    n_val = _held_out(validation_fraction, members.size)
    n_test = _held_out(test_fraction, members.size)
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


def _held_out(fraction: float, n: int) -> int:
  return max(int(round(fraction * n)), 1) if fraction > 0 else 0


def make_text_data(texts: Sequence[str], labels: np.ndarray, class_names: Sequence[str], cfg,
                   info: dict | None = None) -> ClassificationData:
  """Encodes, resolves label conflicts and splits: the common tail of every text source.

  Reads `cfg.max_len`, `cfg.validation_fraction`, `cfg.test_fraction`, `cfg.split_seed` and
  (optionally) `cfg.conflicts`. Rows that normalise to the empty string are dropped (counted in
  info['dropped_empty']): an all-padding row carries no signal.
  """
  labels = np.asarray(labels, np.int32)
  if len(texts) != labels.size:
    raise DataError(f"{len(texts)} texts but {labels.size} labels")
  enc = encode(texts, int(cfg.max_len))
  nonempty = np.flatnonzero(enc.lengths > 0)
  ids, labels = enc.ids[nonempty], labels[nonempty]
  groups = group_ids(ids)
  rows, labels, n_conflicts = resolve_conflicts(groups, labels, cfg.get("conflicts", "keep"))
  ids, groups = ids[rows], group_ids(ids[rows])
  tr, va, te = grouped_split(groups, labels, float(cfg.validation_fraction),
                             float(cfg.get("test_fraction", 0.0)), int(cfg.split_seed),
                             class_names)
  info = dict(info or {})
  info.update(encoding_info(int(cfg.max_len)))
  info.update({"truncated": enc.truncated, "oov_chars": enc.oov_chars,
               "dropped_empty": int(len(texts) - nonempty.size),
               "conflicting_texts": n_conflicts, "conflicts": cfg.get("conflicts", "keep"),
               "distinct_inputs": int(groups.max()) + 1 if groups.size else 0})
  take = lambda idx: Split(ids[idx], labels[idx])
  return ClassificationData(train=take(tr), validation=take(va), test=take(te),
                            class_names=tuple(class_names), info=info)
