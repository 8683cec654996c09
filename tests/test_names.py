"""The names dataset: deterministic build, one class per string, string-disjoint splits, cache.

All but one test use a small hand-written rank list instead of the names-dataset package
(loading it costs ~15 s and ~1.8 GB); `test_real_package_path` loads it once.
"""

import dataclasses
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax import models
from lwi_jax.data import names, text_encoding
from lwi_jax.data.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_FIRST = {
    "GB": ["David", "Paul", "John", "James", "Mark", "Andrew", "Michael", "Peter", "Sarah", "Emma",
           "Anne Marie", "Chloé"],
    "US": ["Michael", "John", "David", "James", "Jose", "Maria", "Robert", "Jennifer", "Chris",
           "Ashley", "Mary Ann", "Zoë"],
    "DE": ["Michael", "Thomas", "Andreas", "Stefan", "Jörg", "Joerg", "Uwe", "Jürgen", "Anna",
           "Katrin", "Hans-Peter", "Jorg"],
}
_LAST = {
    "GB": ["Smith", "Jones", "Williams", "Brown", "Taylor", "Davies", "Wilson", "Evans", "Thomas",
           "Johnson", "O'Brien", "李"],
    "US": ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
           "Rodriguez", "Wilson", "De La Cruz", "Martínez"],
    "DE": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
           "Schulz", "Hoffmann", "Muller", "Schäfer"],
}


def fixture_ranks(countries):
  return {c: {"first": list(enumerate(_FIRST[c], start=1)),
              "last": list(enumerate(_LAST[c], start=1))} for c in countries}


class CountingSource:
  def __init__(self):
    self.calls = 0

  def __call__(self, countries):
    self.calls += 1
    return fixture_ranks(countries)


PARAMS = names.BuildParams(countries=("GB", "US", "DE"), per_class=60, top_k=10,
                           zipf_exponent=1.0, seed=0)


def _cfg(tmp_path, **kw):
  base = dict(countries=("GB", "US", "DE"), per_class=60, top_k=10, zipf_exponent=1.0,
              build_seed=0, cache_dir=str(tmp_path), max_len=20, conflicts="keep",
              validation_fraction=0.1, test_fraction=0.2, split_seed=0)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_pool_keeps_spellings_filters_and_merges_unicode_forms():
  # Rank 3 is "Müller" decomposed (NFD): the same name after NFC. "Muller" is another name.
  ranked = [(1, "Müller"), (2, "Schmidt"), (3, "Mu\u0308ller"), (4, "Anne Marie"), (5, "李"),
            (6, "O'Neil"), (7, "Hans-Peter"), (8, "Weber"), (9, "Muller")]
  pool, p = names.name_pool(ranked, top_k=10, exponent=1.0)
  # Written as they are (accents and case kept, any script); multi-word names out.
  assert pool == ["Müller", "Schmidt", "李", "O'Neil", "Hans-Peter", "Weber", "Muller"]
  w = np.asarray([1 + 1 / 3, 1 / 2, 1 / 5, 1 / 6, 1 / 7, 1 / 8, 1 / 9])
  np.testing.assert_allclose(p, w / w.sum())
  assert names.name_pool(ranked, top_k=2, exponent=1.0)[0] == ["Müller", "Schmidt"]
  _, uniform = names.name_pool(ranked, top_k=2, exponent=0.0)
  np.testing.assert_allclose(uniform, [2 / 3, 1 / 3])  # merged spellings still add up


def test_build_is_deterministic_for_a_seed():
  a = names.sample_names(fixture_ranks(PARAMS.countries), PARAMS)
  b = names.sample_names(fixture_ranks(PARAMS.countries), PARAMS)
  c = names.sample_names(fixture_ranks(PARAMS.countries),
                         dataclasses.replace(PARAMS, seed=1))
  assert a == b
  assert a["names"] != c["names"]
  assert sorted(a["labels"]) == sorted(c["labels"])


def test_classes_are_balanced_distinct_and_disjoint():
  built = names.sample_names(fixture_ranks(PARAMS.countries), PARAMS)
  labels = np.asarray(built["labels"])
  np.testing.assert_array_equal(np.bincount(labels), [PARAMS.per_class] * 3)
  assert len(set(built["names"])) == len(built["names"])  # no string twice, in any class
  # GB and US share many names in the fixture: collisions happened and were resolved.
  assert sum(built["stats"]["moved_cross_class"].values()) > 0
  for s in built["names"]:
    first, last = s.split(" ")
    assert names.canonical(s) == s and first and last


def test_a_collided_string_stays_with_the_more_probable_class():
  # "John Smith" has p = 1 under GB and 2/3 * 1 under US, so GB keeps it.
  ranks = {"GB": {"first": [(1, "John")], "last": [(1, "Smith")]},
           "US": {"first": [(1, "John"), (2, "Mike")], "last": [(1, "Smith")]}}
  params = names.BuildParams(countries=("GB", "US"), per_class=1, top_k=5, seed=0)
  for seed in range(5):  # whichever string US draws first, the outcome is the same
    built = names.sample_names(ranks, dataclasses.replace(params, seed=seed))
    assert built["names"] == ["John Smith", "Mike Smith"]
  with pytest.raises(DataError, match="distinct names"):
    names.sample_names(ranks, names.BuildParams(countries=("GB", "US"), per_class=2, top_k=5))


def test_build_params_are_validated():
  for bad, match in (((), "ISO alpha-2"), (("gb", "US"), "ISO alpha-2"),
                     (("GB", "GB"), "duplicates"), (("GB",), "at least 2")):
    with pytest.raises(DataError, match=match):
      names.BuildParams(countries=bad)
  with pytest.raises(DataError, match="per_class"):
    names.BuildParams(per_class=0)
  with pytest.raises(DataError, match="zipf_exponent"):
    names.BuildParams(zipf_exponent=-1.0)


def test_cache_is_written_once_reused_and_rebuilt_when_broken(tmp_path):
  source = CountingSource()
  first, path, cached = names.build_or_load(PARAMS, str(tmp_path), source)
  assert not cached and source.calls == 1 and os.path.isfile(path)
  again, path2, cached = names.build_or_load(PARAMS, str(tmp_path), source)
  assert cached and source.calls == 1 and path2 == path and again == json.loads(json.dumps(first))
  other, path3, cached = names.build_or_load(
      dataclasses.replace(PARAMS, per_class=30), str(tmp_path), source)
  assert not cached and path3 != path and source.calls == 2
  with open(path, "w") as f:
    f.write('{"params": ')  # a truncated file (e.g. a full disk): rebuilt, not trusted
  rebuilt, _, cached = names.build_or_load(PARAMS, str(tmp_path), source)
  assert not cached and source.calls == 3 and rebuilt == first
  assert [p for p in os.listdir(tmp_path) if not p.startswith("names-")] == []  # no temp files


def test_cache_dir_resolution(monkeypatch, tmp_path):
  monkeypatch.setenv("LWI_JAX_CACHE_DIR", str(tmp_path / "env"))
  assert names.resolve_cache_dir("") == str(tmp_path / "env")
  assert names.resolve_cache_dir(str(tmp_path / "cfg")) == str(tmp_path / "cfg")
  monkeypatch.delenv("LWI_JAX_CACHE_DIR")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert names.resolve_cache_dir("") == str(tmp_path / "xdg" / "lwi_jax")


def test_loader_splits_never_share_a_string(tmp_path):
  data = names.load_names(_cfg(tmp_path), rank_source=fixture_ranks)
  assert data.class_names == ("GB", "US", "DE")
  vocab = text_encoding.vocabulary_from_info(data.info)
  splits = {s: {text_encoding.decode(r, vocab) for r in getattr(data, s).inputs}
            for s in ("train", "validation", "test")}
  assert not splits["train"] & splits["validation"]
  assert not splits["train"] & splits["test"]
  assert not splits["validation"] & splits["test"]
  np.testing.assert_array_equal(np.bincount(data.test.labels), [12] * 3)
  np.testing.assert_array_equal(np.bincount(data.validation.labels), [6] * 3)
  assert data.train.inputs.dtype == np.int32 and data.train.inputs.shape[1] == 20
  assert data.info["vocab_size"] == vocab.size and not data.info["from_cache"]
  assert {"ö", "ü"} <= set(vocab.symbols)  # accents are kept (learned from training rows)
  assert names.load_names(_cfg(tmp_path), rank_source=fixture_ranks).info["from_cache"]


def test_default_config_feeds_the_conv_lstm(tmp_path, monkeypatch):
  """configs/names.py through the LOADERS / MODELS registries, with the fixture's ranks."""
  spec = importlib.util.spec_from_file_location("names_config",
                                                os.path.join(REPO, "configs", "names.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  monkeypatch.setattr(names, "rank_lists_from_package", fixture_ranks)
  config.data.countries = ("GB", "US", "DE")
  config.data.per_class = 60
  config.data.top_k = 10
  config.data.cache_dir = str(tmp_path)
  data = data_lib.load_dataset(config.data)
  model = models.create_model(config.model, data.num_classes, data.info)
  x = jnp.asarray(data.validation.inputs)
  # Shapes only: compiling the random initialisers would cost seconds and check nothing more.
  logits, _ = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))
  assert logits.shape == (len(data.validation), 3)
  assert module.get_config("csv").data.name == "csv"


@pytest.mark.slow
def test_real_package_path(tmp_path):
  """The one test that loads names-dataset (~15 s): GB and US really do share names."""
  cfg = _cfg(tmp_path, countries=("GB", "US"), per_class=300, top_k=300)
  cfg.name = "names"
  data = data_lib.load_dataset(cfg)
  info = data.info
  assert not info["from_cache"] and info["package_version"] != "not-installed"
  assert info["pool_sizes"] == {"GB": [300, 300], "US": [300, 300]}
  assert info["last_name_jaccard"]["GB-US"] > 0.15  # the overlap the experiment is about
  assert len(data.train) + len(data.validation) + len(data.test) == 600
  decoded = {text_encoding.decode(r, text_encoding.vocabulary_from_info(info))
             for r in data.train.inputs[data.train.labels == 0]}
  assert any(s.endswith(" Smith") for s in decoded)  # nfkc: written as in the package
  assert data_lib.load_dataset(cfg).info["from_cache"]  # second load: no package load
