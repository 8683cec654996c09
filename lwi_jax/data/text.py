"""Text -> token ids, and the train/validation/test split rule shared by every text source.

Researchers bring text in any script (names in Cyrillic, Greek, Arabic, kanji; accented Latin).
The encoder must not destroy it, so by default the vocabulary is LEARNED from the data:

  1. Normalisation (`data.normalization`, applied to every row first):
       'none'          - the text as written;
       'nfkc'          - Unicode NFKC (full-width letters, ligatures, composed accents unified;
                         case and accents kept). The default: the best names baseline of the
                         four (BUILD_NOTES.md, "Text encoding");
       'nfkc_casefold' - NFKC and case folded ("MÜLLER" -> "müller", "ß" -> "ss"), accents kept;
       'strip_accents' - casefold, NFKD with the combining marks removed ("José" -> "jose"):
                         the only encoding before issue #13.
     Every choice also collapses whitespace runs to one space and trims both ends.
  2. The split (rule below) groups rows by their NORMALISED string.
  3. The vocabulary (`data.vocabulary`):
       'learned' - the Unicode characters (code points) of the TRAINING split's normalised
                   texts seen at least `data.min_char_count` times, in code-point order (so ids
                   do not depend on row order); everything else, including any character that
                   appears only in validation or test, maps to OOV_ID;
       'latin'   - the old fixed vocabulary (space, a-z, 0-9, `'-.,`): anything else is OOV;
       'bytes'   - the UTF-8 bytes of the text, 256 symbols, never OOV; lengths count bytes.
  4. max_len (`data.max_len`; 0 = from the data: the `data.max_len_percentile` percentile of the
     training split's lengths). Rows are right-padded with PAD_ID = 0 (the repository-wide
     convention for text); longer rows keep their first max_len symbols (counted per class).

Why this order. The vocabulary and max_len must come from the training split alone (a
character seen only in test must not get an id the model never trained), but the split needs
groups first. So the split groups by the normalised string, which is known before any
vocabulary, and the vocabulary is learned afterwards. The price: two different normalised
strings can still encode identically (they differ only in characters that are OOV, or only
after max_len) and land in different splits. The model cannot tell such rows apart and their
raw texts differ, so this is not a memorised training row; the count is reported
(info['held_out_identical_to_train']) rather than forced to zero by a circular re-split.

min_char_count defaults to 2: a character seen once in training has an embedding trained on
one row, and with min_char_count = 1 the OOV id never occurs in training at all, so at test
time every unseen character would hit an untrained embedding.

Split rule: rows with the same normalised string form one group, and a group goes to exactly
one of train / validation / test. Groups are stratified by label: every class gives the same
fraction of its groups to validation and to test. Per class the loader reports the rows the
rule merged (rows minus distinct inputs), the truncated rows and the OOV share, and warns
loudly when a class is > 5% OOV or > 10% merged (and when > 1% of the held-out rows encode
exactly like a training row).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import string
import unicodedata
from typing import Sequence

import numpy as np

from lwi_jax.data.errors import DataError
from lwi_jax.data.types import ClassificationData, Split

PAD_ID = 0
OOV_ID = 1
CHARS = " " + string.ascii_lowercase + string.digits + "'-.,"  # the 'latin' vocabulary
VOCAB = ("<pad>", "<oov>") + tuple(CHARS)  # id -> symbol of the 'latin' vocabulary
VOCAB_SIZE = len(VOCAB)
CONFLICT_POLICIES = ("keep", "drop", "majority")
NORMALIZATIONS = ("none", "nfkc", "nfkc_casefold", "strip_accents")
VOCABULARIES = ("learned", "latin", "bytes")
DEFAULT_NORMALIZATION = "nfkc"
DEFAULT_VOCABULARY = "learned"
DEFAULT_MIN_CHAR_COUNT = 2
DEFAULT_MAX_LEN_PERCENTILE = 99.5
OOV_WARN_SHARE = 0.05
MERGED_WARN_SHARE = 0.10
IDENTICAL_WARN_SHARE = 0.01  # of the held-out rows


def normalize(text: str, form: str = "strip_accents") -> str:
  """`text` under normalisation `form` (module docstring), whitespace runs collapsed."""
  if form == "strip_accents":
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
  elif form == "nfkc":
    text = unicodedata.normalize("NFKC", text)
  elif form == "nfkc_casefold":  # NFKC again after folding: folding can un-normalise ("ǰ")
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
  elif form != "none":
    raise DataError(f"data.normalization={form!r} is not one of {list(NORMALIZATIONS)}")
  return " ".join(text.split())


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """id -> symbol. ids 0 and 1 are padding and OOV; characters (or bytes) start at 2."""

  kind: str  # one of VOCABULARIES
  symbols: tuple[str, ...] = ()  # characters with ids 2, 3, ...; empty for 'bytes'

  def __post_init__(self):
    if self.kind not in VOCABULARIES:
      raise DataError(f"data.vocabulary={self.kind!r} is not one of {list(VOCABULARIES)}")
    object.__setattr__(self, "_ids", {ch: i + 2 for i, ch in enumerate(self.symbols)})

  @property
  def size(self) -> int:
    return 2 + (256 if self.kind == "bytes" else len(self.symbols))

  def units(self, text: str) -> list[int]:
    """The ids of a normalised text, untruncated."""
    if self.kind == "bytes":
      return [b + 2 for b in text.encode("utf-8")]
    return [self._ids.get(ch, OOV_ID) for ch in text]

  def symbol(self, i: int) -> str:
    if i == PAD_ID:
      return "<pad>"
    if i == OOV_ID:
      return "<oov>"
    return f"\\x{i - 2:02x}" if self.kind == "bytes" else self.symbols[i - 2]

  @property
  def sha256(self) -> str:
    blob = json.dumps([self.kind, list(self.symbols)], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()

  def record(self) -> dict:
    """What results.json keeps: enough to rebuild the vocabulary (`from_record`)."""
    return {"kind": self.kind, "size": self.size, "symbols": "".join(self.symbols),
            "sha256": self.sha256}

  @classmethod
  def from_record(cls, record: dict) -> "Vocabulary":
    vocab = cls(record["kind"], tuple(record["symbols"]))
    if vocab.sha256 != record.get("sha256", vocab.sha256):
      raise DataError("the vocabulary record does not match its sha256")
    return vocab


LATIN = Vocabulary("latin", tuple(CHARS))
BYTES = Vocabulary("bytes")


def learn_vocabulary(normalized_texts: Sequence[str], min_count: int) -> Vocabulary:
  """Characters seen >= min_count times in `normalized_texts` (training rows), by code point."""
  if int(min_count) < 1:
    raise DataError(f"data.min_char_count={min_count} must be >= 1")
  counts = collections.Counter(ch for t in normalized_texts for ch in t)
  return Vocabulary("learned", tuple(sorted(ch for ch, n in counts.items() if n >= min_count)))


def vocabulary_from_info(info: dict) -> Vocabulary:
  """The vocabulary a text source used, from its `ClassificationData.info` (or results.json)."""
  return Vocabulary.from_record(info["vocabulary"])


@dataclasses.dataclass(frozen=True)
class Encoded:
  """Token ids [N, max_len] (int32, right-padded with 0) plus what was lost on the way."""

  ids: np.ndarray
  lengths: np.ndarray  # [N] int32, number of non-pad ids
  full_lengths: np.ndarray  # [N] int64, symbols before truncation
  oov: np.ndarray  # [N] int64, symbols mapped to OOV_ID (before truncation)

  @property
  def truncated(self) -> int:
    """Rows longer than max_len."""
    return int((self.full_lengths > self.ids.shape[1]).sum())

  @property
  def oov_chars(self) -> int:
    return int(self.oov.sum())


def encode_normalized(texts: Sequence[str], max_len: int, vocab: Vocabulary) -> Encoded:
  """Encodes already normalised strings with `vocab`."""
  if int(max_len) < 1:
    raise DataError(f"data.max_len={max_len} must be >= 1 (or 0: from the data)")
  ids = np.zeros((len(texts), max_len), np.int32)
  full = np.zeros(len(texts), np.int64)
  oov = np.zeros(len(texts), np.int64)
  for row, t in enumerate(texts):
    codes = vocab.units(t)
    full[row] = len(codes)
    oov[row] = codes.count(OOV_ID)
    ids[row, :min(len(codes), max_len)] = codes[:max_len]
  return Encoded(ids, np.minimum(full, max_len).astype(np.int32), full, oov)


def encode(texts: Sequence[str], max_len: int, vocab: Vocabulary = LATIN,
           normalization: str = "strip_accents") -> Encoded:
  """Normalises raw strings, then encodes them (the defaults: the old fixed encoding)."""
  return encode_normalized([normalize(t, normalization) for t in texts], max_len, vocab)


def decode(ids: np.ndarray, vocab: Vocabulary = LATIN) -> str:
  """The normalised text behind one row of ids ('?' for OOV); for logs and tests."""
  ids = [i for i in np.asarray(ids).tolist() if i != PAD_ID]
  if vocab.kind == "bytes":
    return bytes(i - 2 for i in ids).decode("utf-8", errors="replace")
  return "".join("?" if i == OOV_ID else vocab.symbols[i - 2] for i in ids)


def encoding_info(max_len: int, vocab: Vocabulary = LATIN) -> dict:
  """What a text model needs from `ClassificationData.info` (and what results.json records)."""
  return {"vocab_size": vocab.size, "max_len": int(max_len), "pad_id": PAD_ID, "oov_id": OOV_ID,
          "vocabulary": vocab.record()}


def max_len_from_lengths(lengths: np.ndarray, percentile: float) -> int:
  """The `percentile` of the (training) lengths, rounded up: what data.max_len=0 resolves to."""
  if not 0.0 < float(percentile) <= 100.0:
    raise DataError(f"data.max_len_percentile={percentile} must lie in (0, 100]")
  if lengths.size == 0:
    return 1
  return max(int(np.ceil(np.percentile(lengths, float(percentile)))), 1)


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


def warnings_for(facts: dict) -> list[str]:
  """The loud warnings of the module docstring, one line per problem."""
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
  train_rows = {enc.ids[i].tobytes() for i in tr}
  same = {name: int(sum(enc.ids[i].tobytes() in train_rows for i in idx))
          for name, idx in (("validation", va), ("test", te))}
  facts = class_facts(labels, groups, enc, dropped, held_out, class_names)
  warnings = warnings_for(facts)
  if sum(same.values()) > IDENTICAL_WARN_SHARE * max(va.size + te.size, 1):
    warnings.append(f"{sum(same.values())} of {va.size + te.size} validation/test rows encode "
                    "exactly like a training row (they differ only in OOV symbols or after "
                    "max_len): the held-out scores partly measure memorisation")
  info = dict(info or {})
  info.update(encoding_info(resolved_len, vocab))
  info.update({
      "normalization": form, "min_char_count": min_count, "max_len_from_data": not max_len,
      "max_len_percentile": pct, "truncated": enc.truncated, "oov_chars": enc.oov_chars,
      "dropped_empty": int(dropped.sum()), "conflicting_texts": n_conflicts,
      "conflicts": cfg.get("conflicts", "keep"),
      "distinct_inputs": int(groups.max()) + 1 if groups.size else 0,
      "held_out_identical_to_train": same, "per_class": facts, "warnings": warnings})
  take = lambda idx: Split(enc.ids[idx], labels[idx])
  return ClassificationData(train=take(tr), validation=take(va), test=take(te),
                            class_names=tuple(class_names), info=info)
