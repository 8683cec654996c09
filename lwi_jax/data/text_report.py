"""What a text source did to each class: per-class facts, loud warnings, console summary lines.

Per class the loader reports the rows the split rule merged (rows minus distinct inputs), the
truncated rows and the OOV share, and warns loudly when a class is > 5% OOV or > 10% merged
(and when > 1% of the held-out rows encode exactly like a training row; text.py says why such
rows can exist). The facts and warnings land in `ClassificationData.info`, so results.json
keeps them; `summary_lines` prints them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lwi_jax.data.text_encoding import Encoded

OOV_WARN_SHARE = 0.05
MERGED_WARN_SHARE = 0.10
IDENTICAL_WARN_SHARE = 0.01  # of the held-out rows


def class_facts(labels: np.ndarray, groups: np.ndarray, enc: Encoded, dropped: np.ndarray,
                held_out: np.ndarray, class_names: Sequence[str]) -> dict:
  """Per class: rows, distinct inputs, rows merged by the split rule, truncation, OOV shares."""
  facts = {}
  for c, name in enumerate(class_names):
    mine = labels == c
    rows = int(mine.sum())
    distinct = int(np.unique(groups[mine]).size)
    symbols = int(enc.full_lengths[mine].sum())
    ho = mine & held_out
    ho_symbols = int(enc.full_lengths[ho].sum())
    facts[name] = {
        "rows": rows, "distinct_inputs": distinct, "merged_rows": rows - distinct,
        "merged_share": (rows - distinct) / rows if rows else 0.0,
        "truncated_rows": int((enc.full_lengths[mine] > enc.ids.shape[1]).sum()),
        "oov_share": int(enc.oov[mine].sum()) / symbols if symbols else 0.0,
        "oov_share_held_out": int(enc.oov[ho].sum()) / ho_symbols if ho_symbols else 0.0,
        "dropped_empty": int(dropped[c]) if c < dropped.size else 0}
  return facts


def held_out_identical(ids: np.ndarray, train: np.ndarray, validation: np.ndarray,
                       test: np.ndarray) -> dict[str, int]:
  """Validation and test rows whose token ids equal some training row's, per split."""
  train_rows = {ids[i].tobytes() for i in train}
  return {name: int(sum(ids[i].tobytes() in train_rows for i in idx))
          for name, idx in (("validation", validation), ("test", test))}


def shared_texts(groups: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
  """(distinct texts carrying more than one label, rows carrying those texts)."""
  if not groups.size:
    return 0, 0
  pairs = np.unique(np.stack([groups, labels]), axis=1)
  labels_per_group = np.bincount(pairs[0], minlength=int(groups.max()) + 1)
  shared = labels_per_group > 1
  return int(shared.sum()), int(shared[groups].sum())


def shared_texts_warning(shared: tuple[int, int], policy: str) -> str:
  """The warning for texts that appear under more than one class."""
  what = {"keep": "kept with every label (one split each)", "drop": "dropped",
          "majority": "relabelled to their most frequent label"}[policy]
  return (f"{shared[0]} distinct text(s) appear under more than one class ({shared[1]} rows): "
          f"{what} by data.conflicts={policy!r} ('keep', 'drop' or 'majority')")


def warnings_for(facts: dict, same: dict, held_out_rows: int) -> list[str]:
  """The loud warnings of the module docstring, one line per problem.

  `same` is `held_out_identical`'s count; `held_out_rows` the validation + test rows.
  """
  out = []
  for name, f in facts.items():
    oov = max(f["oov_share"], f["oov_share_held_out"])
    if oov > OOV_WARN_SHARE:
      out.append(f"class {name!r}: {100 * f['oov_share']:.1f}% of its characters are "
                 f"out-of-vocabulary ({100 * f['oov_share_held_out']:.1f}% in validation+test); "
                 "the model sees '?' for them (try data.vocabulary='learned' or 'bytes', or a "
                 "lower data.min_char_count)")
    if f["merged_share"] > MERGED_WARN_SHARE:
      out.append(f"class {name!r}: the split rule merged {f['merged_rows']} of its {f['rows']} "
                 f"rows ({100 * f['merged_share']:.1f}%) into identical inputs; check "
                 "data.normalization and the data itself")
  if sum(same.values()) > IDENTICAL_WARN_SHARE * max(held_out_rows, 1):
    out.append(f"{sum(same.values())} of {held_out_rows} validation/test rows encode "
               "exactly like a training row (they differ only in OOV symbols or after "
               "max_len): the held-out scores partly measure memorisation")
  return out


def summary_lines(info: dict) -> list[str]:
  """Console lines for a text source: encoding, per-class facts, then the warnings."""
  if "per_class" not in info:
    return []
  v = info["vocabulary"]
  lines = [f"text: normalization {info['normalization']}, vocabulary {v['kind']} ({v['size']} "
           f"ids), max_len {info['max_len']}"
           + (f" (the {info['max_len_percentile']}th percentile of the training lengths)"
              if info.get("max_len_from_data") else "")
           + f", {info['truncated']} row(s) truncated, {info['oov_chars']} OOV symbol(s)",
           f"  {'class':<16s} {'rows':>7s} {'distinct':>9s} {'merged':>7s} {'truncated':>9s} "
           f"{'OOV%':>6s} {'OOV% held-out':>13s}"]
  for name, f in info["per_class"].items():
    lines.append(f"  {name[:16]:<16s} {f['rows']:>7d} {f['distinct_inputs']:>9d} "
                 f"{f['merged_rows']:>7d} {f['truncated_rows']:>9d} "
                 f"{100 * f['oov_share']:>6.1f} {100 * f['oov_share_held_out']:>13.1f}")
  same = info.get("held_out_identical_to_train", {})
  if any(same.values()):
    lines.append(f"  held-out rows encoding identically to a training row (they differ only in "
                 f"OOV symbols or after max_len): {same}")
  lines += [f"WARNING: {w}" for w in info.get("warnings", [])]
  return lines
