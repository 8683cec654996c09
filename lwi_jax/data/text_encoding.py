"""Text -> token ids: Unicode normalisation, the vocabulary, and encoding to padded id rows.

Researchers bring text in any script (names in Cyrillic, Greek, Arabic, kanji; accented Latin).
The encoder must not destroy it, so by default the vocabulary is LEARNED from the data
(text.py runs the steps in order, with the split between normalisation and vocabulary):

  Normalisation (`data.normalization`, applied to every row first):
    'none'          - the text as written;
    'nfkc'          - Unicode NFKC (full-width letters, ligatures, composed accents unified;
                      case and accents kept). The default: the best names baseline of the
                      four (BUILD_NOTES.md, "Text encoding");
    'nfkc_casefold' - NFKC and case folded ("MÜLLER" -> "müller", "ß" -> "ss"), accents kept;
    'strip_accents' - casefold, NFKD with the combining marks removed ("José" -> "jose"): the
                      form the 'latin' vocabulary is written in, so accented Latin letters map
                      to its a-z instead of OOV.
  Every choice also collapses whitespace runs to one space and trims both ends.

  Vocabulary (`data.vocabulary`):
    'learned' - the Unicode characters (code points) of the TRAINING split's normalised
                texts seen at least `data.min_char_count` times, in code-point order (so ids
                do not depend on row order); everything else, including any character that
                appears only in validation or test, maps to OOV_ID;
    'latin'   - a fixed vocabulary (space, a-z, 0-9, `'-.,`) that needs no training texts:
                anything else is OOV;
    'bytes'   - the UTF-8 bytes of the text, 256 symbols, never OOV; lengths count bytes.

  max_len (`data.max_len`; 0 = from the data: the `data.max_len_percentile` percentile of the
  training split's lengths). Rows are right-padded with PAD_ID = 0 (the repository-wide
  convention for text); longer rows keep their first max_len symbols (counted per class).

min_char_count defaults to 2: a character seen once in training has an embedding trained on
one row, and with min_char_count = 1 the OOV id never occurs in training at all, so at test
time every unseen character would hit an untrained embedding.
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

PAD_ID = 0
OOV_ID = 1
CHARS = " " + string.ascii_lowercase + string.digits + "'-.,"  # the 'latin' vocabulary
VOCAB = ("<pad>", "<oov>") + tuple(CHARS)  # id -> symbol of the 'latin' vocabulary
VOCAB_SIZE = len(VOCAB)
NORMALIZATIONS = ("none", "nfkc", "nfkc_casefold", "strip_accents")
VOCABULARIES = ("learned", "latin", "bytes")
DEFAULT_NORMALIZATION = "nfkc"
DEFAULT_VOCABULARY = "learned"
DEFAULT_MIN_CHAR_COUNT = 2
DEFAULT_MAX_LEN_PERCENTILE = 99.5


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
  """Normalises raw strings, then encodes them (the defaults: the fixed 'latin' encoding,
  which needs no training texts)."""
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
