"""Text in any script: normalisation forms, the vocabulary learned from the training split,
UTF-8 bytes, max_len from the data, per-class facts and their warnings."""


import ml_collections
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax.data import text, text_encoding, text_report
from lwi_jax.data.errors import DataError
from lwi_jax.study import phases
from lwi_jax.study import study as study_lib
from tests.test_study import load_config

SCRIPTS = {
    "cyrillic": "Наталья Иванова",
    "greek": "Γιώργος Παπαδόπουλος",
    "arabic": "محمد عبد الله",  # right-to-left: ids follow the logical (reading) order
    "cjk": "山田 太郎",
    "emoji": "ana 👩‍💻🎉",  # a ZWJ sequence is several code points
    "combining": "Zoe\u0308 Jose\u0301",  # e + combining diaeresis / acute
    "mixed": "Łukasz 李 Ölçer-Δ",
}


def _cfg(**kw):
  base = dict(validation_fraction=0.2, test_fraction=0.2, split_seed=0, conflicts="keep",
              normalization="nfkc_casefold", vocabulary="learned", min_char_count=1, max_len=0,
              max_len_percentile=100.0)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_normalization_forms():
  assert text_encoding.normalize("  Ｊｏｈｎ\tMÜLLER ", "none") == "Ｊｏｈｎ MÜLLER"
  assert text_encoding.normalize("Ｊｏｈｎ MÜLLER", "nfkc") == "John MÜLLER"
  assert text_encoding.normalize("Ｊｏｈｎ MÜLLER", "nfkc_casefold") == "john müller"
  assert text_encoding.normalize("Ｊｏｈｎ MÜLLER", "strip_accents") == "john muller"
  # A combining mark composes under NFKC (one character), stays separate under 'none'.
  assert text_encoding.normalize("Jose\u0301", "nfkc") == "Jos\u00e9"
  assert len(text_encoding.normalize("Jose\u0301", "none")) == 5
  assert text_encoding.normalize("Ωμέγα", "nfkc_casefold") == "ωμέγα"  # accents kept, case folded
  with pytest.raises(DataError, match=r"data.normalization='nfd' is not one of"):
    text_encoding.normalize("x", "nfd")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_script_round_trips_through_a_learned_vocabulary(script):
  raw = SCRIPTS[script]
  norm = text_encoding.normalize(raw, "nfkc_casefold")
  vocab = text_encoding.learn_vocabulary([norm], min_count=1)
  enc = text_encoding.encode_normalized([norm], 64, vocab)
  assert enc.oov_chars == 0 and text_encoding.decode(enc.ids[0], vocab) == norm
  assert enc.lengths[0] == len(norm)  # one id per code point
  assert list(vocab.symbols) == sorted(set(norm))  # code-point order, no row-order dependence
  # The same text through the old fixed vocabulary: every non-Latin letter is lost.
  latin = text_encoding.encode([raw], 64)
  if script in ("cyrillic", "greek", "arabic", "cjk"):
    assert set(text_encoding.decode(latin.ids[0])) <= {"?", " "}
  # UTF-8 bytes: never OOV, exact round trip, one id per byte.
  b = text_encoding.encode_normalized([norm], 128, text_encoding.BYTES)
  assert b.oov_chars == 0 and text_encoding.decode(b.ids[0], text_encoding.BYTES) == norm
  assert b.lengths[0] == len(norm.encode("utf-8")) and b.ids.max() < text_encoding.BYTES.size


def test_arabic_ids_follow_the_reading_order():
  norm = text_encoding.normalize(SCRIPTS["arabic"], "nfkc")
  vocab = text_encoding.learn_vocabulary([norm], 1)
  ids = text_encoding.encode_normalized([norm], 32, vocab).ids[0]
  assert vocab.symbols[ids[0] - 2] == "م"  # the first letter read (the rightmost one shown)


def _marked_rows(n_per_class=30):
  """Three classes; every row carries one CJK character no other row has."""
  texts, labels = [], []
  for c, stem in enumerate(("ab", "cd", "ef")):
    for i in range(n_per_class):
      texts.append(f"{stem}{chr(0x4E00 + 100 * c + i)}")
      labels.append(c)
  return texts, np.asarray(labels, np.int32)


def test_a_character_seen_only_outside_training_is_oov():
  texts, labels = _marked_rows()
  data = text.make_text_data(texts, labels, ("a", "b", "c"), _cfg())
  vocab = text_encoding.vocabulary_from_info(data.info)
  train_chars = {ch for r in data.train.inputs for ch in text_encoding.decode(r, vocab)}
  assert set(vocab.symbols) == train_chars and set("abcdef") < train_chars
  for split in (data.validation, data.test):  # each row's marker is unseen: exactly one OOV id
    np.testing.assert_array_equal((split.inputs == text_encoding.OOV_ID).sum(1), 1)
  assert (data.train.inputs != text_encoding.OOV_ID).all()
  # With min_char_count=2 a marker seen once in training is OOV there too: the OOV id is trained.
  strict = text.make_text_data(texts, labels, ("a", "b", "c"), _cfg(min_char_count=2))
  assert strict.info["vocabulary"]["symbols"] == "abcdef"
  np.testing.assert_array_equal((strict.train.inputs == text_encoding.OOV_ID).sum(1), 1)


def test_vocabulary_is_identical_across_reruns_and_restores_from_its_record():
  texts, labels = _marked_rows()
  a = text.make_text_data(texts, labels, ("a", "b", "c"), _cfg())
  b = text.make_text_data(list(texts), labels.copy(), ("a", "b", "c"), _cfg())
  assert a.info["vocabulary"] == b.info["vocabulary"]
  np.testing.assert_array_equal(a.test.inputs, b.test.inputs)
  restored = text_encoding.Vocabulary.from_record(a.info["vocabulary"])
  assert (restored == text_encoding.vocabulary_from_info(a.info)
          and restored.size == a.info["vocab_size"])
  forged = dict(a.info["vocabulary"], symbols="abc")
  with pytest.raises(DataError, match="sha256"):
    text_encoding.Vocabulary.from_record(forged)
  # Another split seed trains on other rows: another vocabulary, another sha256 (and so
  # another phase fingerprint in experiment.py).
  c = text.make_text_data(texts, labels, ("a", "b", "c"), _cfg(split_seed=1))
  assert c.info["vocabulary"]["sha256"] != a.info["vocabulary"]["sha256"]


def test_max_len_comes_from_the_training_lengths_when_not_set():
  texts = [("x" * (3 + i % 8)) + str(i) for i in range(100)]
  labels = np.asarray([i % 2 for i in range(100)], np.int32)
  full = text.make_text_data(texts, labels, ("a", "b"), _cfg(max_len_percentile=100.0))
  assert full.info["truncated"] == 0 and full.info["max_len"] == 12  # 10 x's + 2 digits
  # The split does not depend on max_len, so `full` shows the untruncated training lengths.
  train_lengths = (full.train.inputs != text_encoding.PAD_ID).sum(1)
  data = text.make_text_data(texts, labels, ("a", "b"), _cfg(max_len_percentile=50.0))
  assert data.info["max_len_from_data"] and data.info["max_len_percentile"] == 50.0
  assert data.info["max_len"] == int(np.ceil(np.percentile(train_lengths, 50)))
  assert data.train.inputs.shape[1] == data.info["max_len"] < 12
  lengths = np.concatenate([(getattr(full, s).inputs != text_encoding.PAD_ID).sum(1)
                            for s in ("train", "validation", "test")])
  truncated = int((lengths > data.info["max_len"]).sum())
  assert data.info["truncated"] == truncated > 0
  assert sum(f["truncated_rows"] for f in data.info["per_class"].values()) == truncated
  fixed = text.make_text_data(texts, labels, ("a", "b"), _cfg(max_len=4))
  assert fixed.info["max_len"] == 4 and not fixed.info["max_len_from_data"]
  with pytest.raises(DataError, match="max_len_percentile"):
    text.make_text_data(texts, labels, ("a", "b"), _cfg(max_len_percentile=0.0))
  with pytest.raises(DataError, match=r"data.vocabulary='words' is not one of"):
    text.make_text_data(texts, labels, ("a", "b"), _cfg(vocabulary="words"))


def test_per_class_facts_and_loud_warnings():
  # Class "ru" is Cyrillic; class "dup" repeats a few texts; class "en" is clean Latin.
  ru = [f"иван {'абвгдежз'[i % 8]}{i}" for i in range(40)]
  dup = [f"same {i % 5}" for i in range(40)]
  en = [f"john {i}" for i in range(40)]
  labels = np.repeat(np.arange(3, dtype=np.int32), 40)
  latin = text.make_text_data(ru + dup + en, labels, ("ru", "dup", "en"),
                              _cfg(vocabulary="latin", normalization="strip_accents"))
  facts = latin.info["per_class"]
  assert facts["ru"]["oov_share"] > 0.5 and facts["en"]["oov_share"] == 0.0
  assert facts["dup"]["merged_rows"] == 35 and facts["dup"]["distinct_inputs"] == 5
  assert facts["en"]["merged_rows"] == 0 and facts["en"]["rows"] == 40
  warnings = latin.info["warnings"]
  assert len(warnings) == 2
  assert "'ru'" in warnings[0] and "out-of-vocabulary" in warnings[0]
  assert "'dup'" in warnings[1] and "merged 35 of its 40 rows" in warnings[1]
  lines = text_report.summary_lines(latin.info)
  assert sum(line.startswith("WARNING: ") for line in lines) == 2
  assert any(line.split()[:4] == ["dup", "40", "5", "35"] for line in lines)
  # Learned from the data, the Cyrillic class loses nothing: only the merge warning is left.
  learned = text.make_text_data(ru + dup + en, labels, ("ru", "dup", "en"), _cfg())
  assert learned.info["per_class"]["ru"]["oov_share"] == 0.0
  assert [w for w in learned.info["warnings"] if "out-of-vocabulary" in w] == []
  assert learned.info["held_out_identical_to_train"] == {"validation": 0, "test": 0}
  # Distinct Cyrillic names that the Latin vocabulary turns into the same '??' land in every
  # split (the split groups normalised strings): counted, and warned about.
  pairs = [a + b for a in "абвгдежз" for b in "клмнопрс"][:40]
  collapsed = text.make_text_data(pairs + en, np.repeat(np.arange(2, dtype=np.int32), 40),
                                  ("ru", "en"), _cfg(vocabulary="latin"))
  same = collapsed.info["held_out_identical_to_train"]
  assert same["validation"] + same["test"] == 16  # every held-out 'ru' row: 8 + 8
  assert "16 of 32 validation/test rows encode exactly like a training row" in (
      collapsed.info["warnings"][-1])


GREEK = "αβγδεζηθικλμνξοπρστυφχψω"
ARABIC = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"


def script_csv(path, n_per_class=150, seed=0):
  """Greek vs Arabic "first last" names with the SAME length pattern row by row: only the
  script tells the classes apart (under the old Latin vocabulary both become '???? ?????')."""
  rng = np.random.default_rng(seed)
  rows = ["name,label"]
  for i in range(n_per_class):
    lengths = rng.integers(3, 9, size=2)
    for label, letters in (("greek", GREEK), ("arabic", ARABIC)):
      words = ["".join(rng.choice(list(letters), size=n)) for n in lengths]
      rows.append(f"{' '.join(words)},{label}")
  path.write_text("\n".join(rows) + "\n", encoding="utf-8")
  return path


def test_a_csv_whose_classes_differ_only_by_script_is_learned_and_resumes(tmp_path):
  config = load_config("names", "csv")
  config.data.path = str(script_csv(tmp_path / "scripts.csv"))
  config.data.text_column, config.data.label_column = "name", "label"
  # The old encoding cannot see the difference: both classes encode to the same '?' patterns.
  old = data_lib.load_dataset(ml_collections.ConfigDict(
      dict(config.data.to_dict(), vocabulary="latin", normalization="strip_accents")))
  patterns = [{text_encoding.decode(r) for r in old.train.inputs[old.train.labels == c]}
              for c in (0, 1)]
  assert all(set("".join(p)) <= {"?", " "} for p in patterns) and patterns[0] & patterns[1]
  # The default (learned) encoding: a tiny ConvLSTM learns it in a few epochs.
  config.workdir = str(tmp_path / "run")
  config.model.embed_dim, config.model.conv_features, config.model.lstm_hidden = 8, (8,), 8
  config.model.dropout_rate = 0.0
  config.train.epochs, config.train.batch_size = 4, 16
  config.optimizer.learning_rate = 2e-2
  config.rules, config.seeds = ("uniform",), (0,)
  logs = []
  results = study_lib.run(config, log=logs.append)
  baseline = results["baseline"][0]["test"]
  assert baseline["accuracy"] > 0.9 and min(baseline["tpr"]) > 0.8, baseline
  info = results["dataset"]["info"]
  assert set(info["vocabulary"]["symbols"]) == set(GREEK + ARABIC + " ")
  assert any("vocabulary learned" in line for line in logs)
  # The vocabulary is part of what the phases depend on (their fingerprint).
  key = phases.fingerprint(config, "baseline", info["vocabulary"]["sha256"],
                               results["dataset"]["content_hash"])
  assert (tmp_path / "run" / "phases" / f"baseline-{key}.json").is_file()
  # Run again (a resume of a finished run): same vocabulary, every phase reused.
  again_logs = []
  again = study_lib.run(config, log=again_logs.append)
  assert again["dataset"]["info"]["vocabulary"] == info["vocabulary"]
  assert sum("reusing finished phase" in line for line in again_logs) == 2
