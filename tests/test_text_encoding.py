"""Text encoding (accents, unknown characters, padding, truncation) and the grouped split rule."""

import ml_collections
import numpy as np
import pytest

from lwi_jax.data import grouped_split, text, text_encoding
from lwi_jax.data.errors import DataError


def test_strip_accents_folds_case_and_drops_accents():
  assert text_encoding.normalize("José  MÜLLER ") == "jose muller"
  assert text_encoding.normalize("Ñúñez-O'Brien") == "nunez-o'brien"
  assert text_encoding.normalize("Strauß") == "strauss"  # casefold, not just lower()
  assert text_encoding.normalize("Ｊｏｈｎ") == "john"  # full-width letters decompose (NFKD)
  assert text_encoding.normalize("\tAnna\n  Lena ") == "anna lena"


def test_unknown_characters_become_oov_and_padding_is_zero():
  enc = text_encoding.encode(["Zoë", "Søren 李", ""], max_len=10)
  assert enc.ids.dtype == np.int32 and enc.ids.shape == (3, 10)
  assert text_encoding.decode(enc.ids[0]) == "zoe"
  assert text_encoding.decode(enc.ids[1]) == "s?ren ?"  # ø has no decomposition; CJK is OOV
  assert (enc.ids[1] == text_encoding.OOV_ID).sum() == 2 and enc.oov_chars == 2
  np.testing.assert_array_equal(enc.lengths, [3, 7, 0])
  assert ((enc.ids[0, 3:] == text_encoding.PAD_ID).all()
          and (enc.ids[2] == text_encoding.PAD_ID).all())
  assert text_encoding.PAD_ID == 0 and text_encoding.VOCAB[text_encoding.PAD_ID] == "<pad>"
  # Every known character has its own id, and ids never reach past the vocabulary.
  all_known = text_encoding.encode([text_encoding.CHARS.strip()], max_len=64).ids
  assert len(set(all_known[0][all_known[0] > 0].tolist())) == len(text_encoding.CHARS.strip())
  assert all_known.max() < text_encoding.VOCAB_SIZE


def test_truncation_keeps_the_first_max_len_characters():
  enc = text_encoding.encode(["alexandra papadopoulou", "bo li"], max_len=8)
  assert text_encoding.decode(enc.ids[0]) == "alexandr"
  assert enc.truncated == 1
  np.testing.assert_array_equal(enc.lengths, [8, 5])
  with pytest.raises(DataError, match="max_len"):
    text_encoding.encode(["x"], max_len=0)


def test_identical_encodings_form_one_group():
  # "José" and "jose" encode identically; so do two strings equal up to max_len.
  ids = text_encoding.encode(["José", "jose", "anna", "annabelle", "annabella"], max_len=6).ids
  groups = grouped_split.group_ids(ids)
  assert groups[0] == groups[1] and groups[3] == groups[4]
  assert len(set(groups.tolist())) == 3
  np.testing.assert_array_equal(groups, [0, 0, 1, 2, 2])  # numbered by first occurrence


def _cfg(**kw):
  base = dict(max_len=12, validation_fraction=0.2, test_fraction=0.2, split_seed=0,
              conflicts="keep")
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _rows(data):
  vocab = text_encoding.vocabulary_from_info(data.info)
  return {split: {text_encoding.decode(r, vocab) for r in getattr(data, split).inputs}
          for split in ("train", "validation", "test")}


def test_no_input_is_in_two_splits_and_classes_are_stratified():
  rng = np.random.default_rng(0)
  words = [f"name{i}" for i in range(60)]
  # Every word three times (duplicates must stay together), two classes by parity.
  texts = [w for w in words for _ in range(3)]
  labels = np.asarray([int(w[4:]) % 2 for w in texts], np.int32)
  order = rng.permutation(len(texts))
  data = text.make_text_data([texts[i] for i in order], labels[order], ("even", "odd"), _cfg())
  rows = _rows(data)
  assert not rows["train"] & rows["validation"]
  assert not rows["train"] & rows["test"]
  assert not rows["validation"] & rows["test"]
  for split, n_groups in (("validation", 6), ("test", 6)):
    np.testing.assert_array_equal(np.bincount(getattr(data, split).labels), [3 * n_groups] * 2)
  assert len(data.train) + len(data.validation) + len(data.test) == len(texts)
  assert data.info["max_len"] == 12
  # The learned vocabulary: the training split's characters, in code-point order.
  assert data.info["vocabulary"]["symbols"] == "0123456789aemn"
  assert data.info["vocab_size"] == 2 + 14


def test_split_is_deterministic_for_a_seed():
  texts = [f"t{i}" for i in range(40)]
  labels = np.arange(40, dtype=np.int32) % 2
  a = text.make_text_data(texts, labels, ("a", "b"), _cfg(split_seed=3))
  b = text.make_text_data(texts, labels, ("a", "b"), _cfg(split_seed=3))
  c = text.make_text_data(texts, labels, ("a", "b"), _cfg(split_seed=4))
  np.testing.assert_array_equal(a.test.inputs, b.test.inputs)
  assert _rows(a)["test"] != _rows(c)["test"]


@pytest.mark.parametrize("policy, n_rows, label_of_x", [("keep", 5, None), ("drop", 2, None),
                                                        ("majority", 5, 1)])
def test_conflicting_labels(policy, n_rows, label_of_x):
  # "x" appears with labels 0, 1, 1: a conflict. "y" and "z" are clean.
  texts = ["x", "X", "x", "y", "z"]
  labels = np.asarray([0, 1, 1, 0, 1], np.int32)
  groups = grouped_split.group_ids(text_encoding.encode(texts, 4).ids)
  rows, new_labels, n_conflicts = grouped_split.resolve_conflicts(groups, labels, policy)
  assert n_conflicts == 1 and rows.size == n_rows
  if label_of_x is not None:
    assert (new_labels[:3] == label_of_x).all()
  with pytest.raises(DataError, match="conflicts"):
    grouped_split.resolve_conflicts(groups, labels, "vote")


def test_too_few_examples_for_the_split_names_the_class():
  texts = [f"a{i}" for i in range(10)] + ["b0", "b0", "b1"]  # class b: 2 distinct texts
  labels = np.asarray([0] * 10 + [1] * 3, np.int32)
  with pytest.raises(DataError, match=r"class 'b' has 2 distinct text\(s\)"):
    text.make_text_data(texts, labels, ("a", "b"), _cfg())
  with pytest.raises(DataError, match="leaves nothing to train on"):
    text.make_text_data(texts, labels, ("a", "b"), _cfg(validation_fraction=0.5,
                                                        test_fraction=0.5))


def test_empty_texts_are_dropped_and_counted():
  texts = [f"w{i}" for i in range(20)] + ["   ", "\u0301"]  # whitespace; a lone combining mark
  labels = np.asarray([i % 2 for i in range(22)], np.int32)
  data = text.make_text_data(texts, labels, ("a", "b"), _cfg(normalization="strip_accents"))
  assert data.info["dropped_empty"] == 2
  assert data.info["per_class"]["a"]["dropped_empty"] == 1
  assert len(data.train) + len(data.validation) + len(data.test) == 20
  # Only 'strip_accents' removes a combining mark; the other forms keep it as a character.
  kept = text.make_text_data(texts, labels, ("a", "b"), _cfg(normalization="nfkc_casefold"))
  assert kept.info["dropped_empty"] == 1
