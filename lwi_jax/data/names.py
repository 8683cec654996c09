"""Name -> country of origin: a balanced "first last" dataset built from `names-dataset`.

The source paper's second experiment: names of countries that share a language (GB vs US) are
confused with each other, so those classes get a low TPR even on perfectly balanced data.

Where the names come from. The `names-dataset` package (PyPI, no network needed) ships first and
last names of 105 countries with a per-country popularity rank. Its lists were derived by the
package authors from a large public leak of social-network profiles; this module uses only the
per-country name frequency ranks, never any personal record.

How a class is built (all of it deterministic for `build_seed`):
  1. Pools: a country's ranked first and last names AS WRITTEN (Unicode NFC, case and accents
     kept: "Müller" and "Muller" are two names, "ñ" or "ø" are signal), keeping single words of
     letters in any script (inner "-" or "'" allowed). Encodings reduce them later, as chosen
     by data.normalization and data.vocabulary (text_encoding.py), so the build never depends
     on the encoding. Spellings equal after NFC merge and add up their weights. The `top_k`
     best-ranked names form the pool, the name of rank r weighing r^-zipf_exponent (Zipf-like:
     popular names are drawn more often).
  2. Draws: a first and a last name, independently from the two pools, with the class's own
     random stream (seeded by build_seed and the country code). A "first last" string that was
     already drawn is skipped, so a class holds `per_class` DISTINCT strings.
  3. One class per string. Classes draw independently, so a string like "david smith" can be
     drawn by GB and by US: with the defaults (names-dataset 3.3.1), 578 strings of the 25,000
     first draws were drawn by more than one class (383 US/ES, 185 GB/US, 10 other). Such a
     string stays only in the class, among those that drew it, under which it is most probable
     (p(first) * p(last) from that class's pools; ties go to the class listed first); every
     other class that drew it removes it and draws a replacement, repeating until no string is
     in two classes. So there is no exact-duplicate label noise, every class still has exactly
     `per_class` names, each drawn from its own class's distribution, and only the strings that
     actually collided are moved (info['moved_cross_class'] counts them per class).
     Near-duplicates ("john smith" in GB, "james smith" in US) remain: they are the point.

Loading the package costs ~15 s and ~1.8 GB of memory, so the built dataset (strings + labels,
a few hundred KB of JSON) is cached in a file named by a hash of the build parameters, written
atomically. The cache directory is `data.cache_dir`, else $LWI_JAX_CACHE_DIR, else
$XDG_CACHE_HOME/lwi_jax, else ~/.cache/lwi_jax. Encoding and the split are NOT cached: they are
cheap and applied on every load (see text.py), so changing the normalisation, the vocabulary,
max_len or the split never rebuilds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import unicodedata
from typing import Callable, Mapping, Sequence

import numpy as np

from lwi_jax.runtime import io_utils
from lwi_jax.data import text
from lwi_jax.data.errors import DataError
from lwi_jax.data.types import ClassificationData

DEFAULT_COUNTRIES = ("GB", "US", "ES", "DE", "IT")
# Part of the cache key: bump it when the build procedure changes, so that no cache file built
# by another procedure is reused.
BUILD_VERSION = 2
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")  # letters of any script

# country code -> {"first": [(rank, raw name), ...], "last": [...]}, any order.
RankLists = Mapping[str, Mapping[str, Sequence[tuple[int, str]]]]
RankSource = Callable[[Sequence[str]], RankLists]


@dataclasses.dataclass(frozen=True)
class BuildParams:
  """Everything the built strings depend on (and so the cache key)."""

  countries: tuple[str, ...] = DEFAULT_COUNTRIES
  per_class: int = 5000
  top_k: int = 1000
  zipf_exponent: float = 1.0
  seed: int = 0

  def __post_init__(self):
    cs = self.countries
    if not cs or any(not isinstance(c, str) or not re.fullmatch(r"[A-Z]{2}", c) for c in cs):
      raise DataError(f"data.countries={cs!r} must be upper-case ISO alpha-2 codes like 'GB'")
    if len(set(cs)) != len(cs):
      raise DataError(f"data.countries={cs!r} has duplicates")
    if len(cs) < 2:
      raise DataError(f"data.countries={cs!r}: a classification needs at least 2 countries")
    for name, value in (("per_class", self.per_class), ("top_k", self.top_k)):
      if int(value) < 1:
        raise DataError(f"data.{name}={value} must be >= 1")
    if not self.zipf_exponent >= 0:
      raise DataError(f"data.zipf_exponent={self.zipf_exponent} must be >= 0 (0 = uniform)")

  def key(self) -> str:
    blob = json.dumps({"params": dataclasses.asdict(self), "build_version": BUILD_VERSION,
                       "package": _package_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _package_version() -> str:
  from importlib import metadata
  try:
    return metadata.version("names-dataset")
  except metadata.PackageNotFoundError:
    return "not-installed"


def rank_lists_from_package(countries: Sequence[str]) -> RankLists:
  """Ranked first and last names of `countries` from the installed names-dataset package."""
  try:
    from names_dataset import NameDataset
  except ImportError as e:
    raise DataError("data.name='names' needs the names-dataset package: "
                    "pip install names-dataset") from e
  nd = NameDataset()  # ~15 s, ~1.8 GB; freed when this function returns
  unknown = sorted(set(countries) - set(nd.country_codes))
  if unknown:
    raise DataError(f"data.countries: {unknown} not in names-dataset; available: "
                    f"{list(nd.country_codes)}")
  wanted = set(countries)
  out = {c: {"first": [], "last": []} for c in countries}
  for kind, table in (("first", nd.first_names), ("last", nd.last_names)):
    for name, entry in table.items():
      for c in wanted.intersection(entry["rank"]):
        rank = entry["rank"][c]
        if rank is not None:
          out[c][kind].append((int(rank), name))
  return out


def name_pool(ranked: Sequence[tuple[int, str]], top_k: int, exponent: float
              ) -> tuple[list[str], np.ndarray]:
  """(names, probabilities): the top_k single-word names (NFC), p ∝ sum of rank^-exponent."""
  weights: dict[str, float] = {}
  for rank, raw in sorted(ranked):
    name = canonical(raw)
    if not _WORD.fullmatch(name):
      continue
    if name not in weights:
      if len(weights) == top_k:
        break
      weights[name] = 0.0
    weights[name] += float(rank) ** -exponent
  names = list(weights)
  p = np.asarray([weights[n] for n in names], np.float64)
  return names, (p / p.sum() if p.size else p)


def canonical(name: str) -> str:
  """A name as written, in one Unicode form: NFC, whitespace runs collapsed."""
  return " ".join(unicodedata.normalize("NFC", name).split())


class _DistinctDraws:
  """One class's random stream of "first last" strings it has not drawn before."""

  def __init__(self, pools, rng: np.random.Generator, where: str, per_class: int):
    (self.first, self.first_p), (self.last, self.last_p) = pools
    self.rng, self.where, self.per_class = rng, where, per_class
    self.seen: set[str] = set()
    self.draws = 0

  def take(self, n: int) -> list[str]:
    out = []
    while len(out) < n:
      if self.draws >= 1000 * self.per_class:
        raise DataError(f"{self.where}: too few distinct names after {self.draws} draws; "
                        f"raise data.top_k or lower data.per_class={self.per_class}")
      chunk = max(256, 2 * (n - len(out)))
      self.draws += chunk
      firsts = self.rng.choice(len(self.first), chunk, p=self.first_p)
      lasts = self.rng.choice(len(self.last), chunk, p=self.last_p)
      for i, j in zip(firsts, lasts):
        s = f"{self.first[i]} {self.last[j]}"
        if s not in self.seen:
          self.seen.add(s)
          out.append(s)
          if len(out) == n:
            break
    return out


def sample_names(rank_lists: RankLists, params: BuildParams) -> dict:
  """The build of the module docstring: {'names', 'labels', 'stats'} (pure, deterministic)."""
  pools = {}
  for c in params.countries:
    if c not in rank_lists:
      raise DataError(f"no ranked names for country {c!r}")
    pools[c] = [name_pool(rank_lists[c][kind], params.top_k, params.zipf_exponent)
                for kind in ("first", "last")]
    (fn, _), (ln, _) = pools[c]
    if len(fn) * len(ln) < params.per_class:
      raise DataError(f"country {c}: {len(fn)} first x {len(ln)} last names cannot give "
                      f"data.per_class={params.per_class} distinct names; raise data.top_k")
  logp = {c: [dict(zip(names, np.log(p))) for names, p in pools[c]] for c in params.countries}
  streams = {c: _DistinctDraws(pools[c], np.random.default_rng([params.seed, *c.encode()]),
                               f"country {c}", params.per_class)
             for c in params.countries}
  chosen = {c: streams[c].take(params.per_class) for c in params.countries}
  moved = {c: 0 for c in params.countries}
  while True:
    holders: dict[str, list[str]] = {}
    for c in params.countries:
      for s in chosen[c]:
        holders.setdefault(s, []).append(c)
    collided = {s: cs for s, cs in holders.items() if len(cs) > 1}
    if not collided:
      break
    drop = {c: set() for c in params.countries}
    for s, cs in collided.items():
      first, last = s.split(" ")
      # max() keeps the first maximum, i.e. the class listed first on ties.
      keeper = max(cs, key=lambda c: logp[c][0][first] + logp[c][1][last])
      for c in cs:
        if c != keeper:
          drop[c].add(s)
    for c in params.countries:
      if drop[c]:
        moved[c] += len(drop[c])
        chosen[c] = [s for s in chosen[c] if s not in drop[c]] + streams[c].take(len(drop[c]))

  names = [s for c in params.countries for s in chosen[c]]
  labels = [i for i, c in enumerate(params.countries) for _ in chosen[c]]
  if len(set(names)) != len(names):  # guaranteed by the loop above; cheap to check
    raise AssertionError("a name string ended up in two classes")
  last_sets = {c: set(pools[c][1][0]) for c in params.countries}
  jaccard = {f"{a}-{b}": len(last_sets[a] & last_sets[b]) / len(last_sets[a] | last_sets[b])
             for i, a in enumerate(params.countries) for b in params.countries[i + 1:]}
  stats = {"moved_cross_class": moved, "last_name_jaccard": jaccard,
           "pool_sizes": {c: [len(pools[c][0][0]), len(pools[c][1][0])]
                          for c in params.countries}}
  return {"names": names, "labels": labels, "stats": stats}


def resolve_cache_dir(configured: str = "") -> str:
  if configured:
    return os.path.expanduser(configured)
  if os.environ.get("LWI_JAX_CACHE_DIR"):
    return os.path.expanduser(os.environ["LWI_JAX_CACHE_DIR"])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lwi_jax")


def build_or_load(params: BuildParams, cache_dir: str,
                  rank_source: RankSource | None = None) -> tuple[dict, str, bool]:
  """(built dataset, cache path, whether it came from the cache). Builds and caches on a miss.

  A cache file that cannot be read, or that was built with other parameters, is rebuilt.
  """
  path = os.path.join(cache_dir, f"names-{params.key()}.json")
  expected = {"params": dataclasses.asdict(params), "build_version": BUILD_VERSION}
  try:
    with open(path, "rb") as f:
      payload = json.loads(f.read().decode("utf-8"))
    if {k: payload[k] for k in expected} == json.loads(json.dumps(expected)):
      return payload["data"], path, True
  except (OSError, ValueError, KeyError, TypeError):
    pass
  source = rank_source or rank_lists_from_package
  data = sample_names(source(params.countries), params)
  io_utils.atomic_write_bytes(path, json.dumps({**expected, "data": data}).encode("utf-8"))
  return data, path, False


def params_from_config(cfg) -> BuildParams:
  return BuildParams(countries=tuple(cfg.countries), per_class=int(cfg.per_class),
                     top_k=int(cfg.top_k), zipf_exponent=float(cfg.zipf_exponent),
                     seed=int(cfg.build_seed))


def load_names(cfg, rank_source: RankSource | None = None) -> ClassificationData:
  """`config.data` loader for data.name='names' (see configs/names.py for the fields)."""
  params = params_from_config(cfg)
  built, path, cached = build_or_load(params, resolve_cache_dir(cfg.get("cache_dir", "")),
                                      rank_source)
  info = {"source": "names-dataset", "package_version": _package_version(),
          "countries": list(params.countries), "cache_file": path, "from_cache": cached,
          **built["stats"]}
  return text.make_text_data(built["names"], np.asarray(built["labels"], np.int32),
                             params.countries, cfg, info)
