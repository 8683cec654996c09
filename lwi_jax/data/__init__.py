"""Datasets by name. Every loader returns a `ClassificationData` with a stratified validation split.

A loader takes the `config.data` ConfigDict; new sources register themselves in `LOADERS`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from lwi_jax.data import cifar10, csv_source, tabular, text
from lwi_jax.data import names as names_source
from lwi_jax.data.errors import DataError
from lwi_jax.data.identity import content_hash
from lwi_jax.data.splits import per_class_subset, stratified_split
from lwi_jax.data.types import ClassificationData, Split

__all__ = ["ClassificationData", "DataError", "Split", "LOADERS", "content_hash",
           "load_dataset", "summary_lines", "with_validation_split"]


def with_validation_split(pool: Split, test: Split, class_names, cfg, info=None
                          ) -> ClassificationData:
  """Carves the validation split out of `pool` (never out of `test`), after optional subsetting.

  `cfg.train_per_class` / `cfg.test_per_class` (0 = all) shrink the data for CPU presets; the
  validation split is then `cfg.validation_fraction` of each class of what is left.
  """
  if cfg.get("train_per_class", 0):
    pool = pool.take(per_class_subset(pool.labels, cfg.train_per_class, cfg.split_seed))
  if cfg.get("test_per_class", 0):
    test = test.take(per_class_subset(test.labels, cfg.test_per_class, cfg.split_seed + 1))
  train_idx, val_idx = stratified_split(pool.labels, cfg.validation_fraction, cfg.split_seed)
  return ClassificationData(train=pool.take(train_idx), validation=pool.take(val_idx), test=test,
                            class_names=tuple(class_names), info=dict(info or {}))


def load_cifar10(cfg) -> ClassificationData:
  if cfg.source == "python":
    if not cfg.get("dir"):
      raise DataError("data.dir must point at a cifar-10-batches-py directory when "
                      "data.source='python'")
    train, test, names = cifar10.load_python_version(cfg.dir)
    info = {"source": "python", "dir": cfg.dir}
  elif cfg.source == "tfds":
    train, test, names = cifar10.load_tfds(cfg.get("tfds_data_dir") or None, cfg.download)
    info = {"source": "tfds"}
  else:
    raise DataError(f"data.source={cfg.source!r} is not one of ['python', 'tfds']")
  return with_validation_split(train, test, names, cfg, info)


LOADERS: dict[str, Callable[..., ClassificationData]] = {
    "cifar10": load_cifar10, "names": names_source.load_names, "csv": csv_source.load_csv}
LOADERS.update(tabular.LOADERS)  # 'tabular' (your CSV), 'satimage', 'letter' (bundled)


def load_dataset(cfg) -> ClassificationData:
  """Loads `cfg.name` from `LOADERS`."""
  if cfg.name not in LOADERS:
    raise DataError(f"data.name={cfg.name!r} is not one of {sorted(LOADERS)}")
  data = LOADERS[cfg.name](cfg)
  counts = np.bincount(data.train.labels, minlength=data.num_classes)
  if (counts == 0).any():
    missing = [data.class_names[i] for i in np.flatnonzero(counts == 0)]
    raise DataError(f"{cfg.name}: classes without training examples: {missing}")
  return data


def summary_lines(data: ClassificationData) -> list[str]:
  """Console lines about what a source did to the data (text: per-class facts and warnings)."""
  return text.summary_lines(data.info)
