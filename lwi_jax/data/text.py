"""Text sources' common tail: raw strings and labels -> a split, encoded ClassificationData.

Every text source (names.py, csv_source.py) hands its strings to `make_text_data`, which runs:
  1. normalisation (`data.normalization`, text_encoding.py);
  2. the split (grouped_split.py), which groups rows by their NORMALISED string;
  3. the vocabulary (`data.vocabulary`, text_encoding.py), learned on the training split;
  4. max_len (`data.max_len`, 0 = from the training split's lengths) and the encoding;
  5. the per-class facts and warnings (text_report.py), kept in `info`.

Why this order. The vocabulary and max_len must come from the training split alone (a
character seen only in test must not get an id the model never trained), but the split needs
groups first. So the split groups by the normalised string, which is known before any
vocabulary, and the vocabulary is learned afterwards. The price: two different normalised
strings can still encode identically (they differ only in characters that are OOV, or only
after max_len) and land in different splits. The model cannot tell such rows apart and their
raw texts differ, so this is not a memorised training row; the count is reported
(info['held_out_identical_to_train']) rather than forced to zero by a circular re-split.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lwi_jax.data import text_report
from lwi_jax.data.errors import DataError
from lwi_jax.data.grouped_split import group_ids, grouped_split, resolve_conflicts
from lwi_jax.data.text_encoding import (
    BYTES, DEFAULT_MAX_LEN_PERCENTILE, DEFAULT_MIN_CHAR_COUNT, DEFAULT_NORMALIZATION,
    DEFAULT_VOCABULARY, LATIN, NORMALIZATIONS, VOCABULARIES, encode_normalized, encoding_info,
    learn_vocabulary, max_len_from_lengths, normalize)
from lwi_jax.data.types import ClassificationData, Split


def _encoding_options(cfg) -> tuple[str, str, int, int, float]:
  """(normalization, vocabulary, min_char_count, max_len, percentile), checked before any work."""
  form = cfg.get("normalization", DEFAULT_NORMALIZATION)
  if form not in NORMALIZATIONS:
    raise DataError(f"data.normalization={form!r} is not one of {list(NORMALIZATIONS)}")
  kind = cfg.get("vocabulary", DEFAULT_VOCABULARY)
  if kind not in VOCABULARIES:
    raise DataError(f"data.vocabulary={kind!r} is not one of {list(VOCABULARIES)}")
  min_count = int(cfg.get("min_char_count", DEFAULT_MIN_CHAR_COUNT))
  if min_count < 1:
    raise DataError(f"data.min_char_count={min_count} must be >= 1")
  max_len = int(cfg.get("max_len", 0))
  if max_len < 0:
    raise DataError(f"data.max_len={max_len} must be >= 1, or 0 to take it from the data")
  pct = float(cfg.get("max_len_percentile", DEFAULT_MAX_LEN_PERCENTILE))
  if not 0.0 < pct <= 100.0:
    raise DataError(f"data.max_len_percentile={pct} must lie in (0, 100]")
  return form, kind, min_count, max_len, pct


def make_text_data(texts: Sequence[str], labels: np.ndarray, class_names: Sequence[str], cfg,
                   info: dict | None = None) -> ClassificationData:
  """Normalise -> group -> resolve conflicts -> split -> learn the vocabulary on train -> encode.

  The common tail of every text source (the order is explained in the module docstring).
  Reads `cfg.validation_fraction`, `cfg.split_seed` and, optionally, `cfg.test_fraction`,
  `cfg.conflicts`, `cfg.normalization`, `cfg.vocabulary`, `cfg.min_char_count`, `cfg.max_len`
  and `cfg.max_len_percentile`. Rows that normalise to the empty string are dropped (counted in
  info['dropped_empty']): an all-padding row carries no signal.
  """
  form, kind, min_count, max_len, pct = _encoding_options(cfg)
  labels = np.asarray(labels, np.int32)
  if len(texts) != labels.size:
    raise DataError(f"{len(texts)} texts but {labels.size} labels")
  norm = [normalize(t, form) for t in texts]
  nonempty = np.flatnonzero([len(t) > 0 for t in norm])
  dropped = np.bincount(np.delete(labels, nonempty), minlength=len(class_names))
  norm, labels = [norm[i] for i in nonempty], labels[nonempty]
  shared = text_report.shared_texts(group_ids(norm), labels)
  rows, labels, n_conflicts = resolve_conflicts(group_ids(norm), labels,
                                                cfg.get("conflicts", "keep"))
  norm = [norm[i] for i in rows]
  groups = group_ids(norm)
  tr, va, te = grouped_split(groups, labels, float(cfg.validation_fraction),
                             float(cfg.get("test_fraction", 0.0)), int(cfg.split_seed),
                             class_names)
  train_texts = [norm[i] for i in tr]
  vocab = {"learned": lambda: learn_vocabulary(train_texts, min_count),
           "latin": lambda: LATIN, "bytes": lambda: BYTES}[kind]()
  resolved_len = max_len or max_len_from_lengths(
      np.asarray([len(vocab.units(t)) for t in train_texts]), pct)
  enc = encode_normalized(norm, resolved_len, vocab)
  held_out = np.zeros(labels.size, bool)
  held_out[np.concatenate([va, te])] = True
  same = text_report.held_out_identical(enc.ids, tr, va, te)
  facts = text_report.class_facts(labels, groups, enc, dropped, held_out, class_names)
  warnings = text_report.warnings_for(facts, same, va.size + te.size)
  if shared[0]:
    warnings.insert(0, text_report.shared_texts_warning(shared, cfg.get("conflicts", "keep")))
  info = dict(info or {})
  info.update(encoding_info(resolved_len, vocab))
  info.update({
      "normalization": form, "min_char_count": min_count, "max_len_from_data": not max_len,
      "max_len_percentile": pct, "truncated": enc.truncated, "oov_chars": enc.oov_chars,
      "dropped_empty": int(dropped.sum()), "conflicting_texts": n_conflicts,
      "conflicts": cfg.get("conflicts", "keep"), "conflicting_rows": shared[1],
      "distinct_inputs": int(groups.max()) + 1 if groups.size else 0,
      "held_out_identical_to_train": same, "per_class": facts, "warnings": warnings})
  take = lambda idx: Split(enc.ids[idx], labels[idx])
  return ClassificationData(train=take(tr), validation=take(va), test=take(te),
                            class_names=tuple(class_names), info=info)
