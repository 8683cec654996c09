"""Datasets by name. Every loader returns a `ClassificationData` with a stratified validation split.

A loader takes the `config.data` ConfigDict; new sources register themselves in `LOADERS`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from lwi_jax.data import cifar10, csv_source, image_folder, image_report, npz_images, tabular
from lwi_jax.data import tabular_report, text_report, tfds_images
from lwi_jax.data import names as names_source
from lwi_jax.data.content_hash import content_hash
from lwi_jax.data.errors import DataError
from lwi_jax.data.types import ClassificationData, Split

__all__ = ["ClassificationData", "DataError", "Split", "LOADERS", "content_hash",
           "load_dataset", "summary_lines"]


LOADERS: dict[str, Callable[..., ClassificationData]] = {
    "cifar10": cifar10.load, "names": names_source.load_names, "csv": csv_source.load_csv,
    "image_folder": image_folder.load_image_folder, "npz": npz_images.load_npz,
    "tfds_images": tfds_images.load_tfds_images}
LOADERS.update(tabular.LOADERS)  # 'tabular' (your CSV), 'satimage', 'letter' (bundled)


def load_dataset(cfg) -> ClassificationData:
  """Loads `cfg.name` from `LOADERS`.

  Args:
    cfg: config.data (its fields depend on the source).

  Returns:
    train, validation and test splits and the class names; DataError when the data cannot be
    read or a class has no training example.
  """
  if cfg.name not in LOADERS:
    raise DataError(f"data.name={cfg.name!r} is not one of {sorted(LOADERS)}")
  data = LOADERS[cfg.name](cfg)
  counts = np.bincount(data.train.labels, minlength=data.num_classes)
  if (counts == 0).any():
    missing = [data.class_names[i] for i in np.flatnonzero(counts == 0)]
    raise DataError(f"{cfg.name}: classes without training examples: {missing}")
  return data


def summary_lines(data: ClassificationData) -> list[str]:
  """Console lines about what a source did to the data (text: per-class facts and warnings;
  tabular: rows read, dropped, merged and balanced away, and warnings; images: per-class
  counts, skipped files, imbalance)."""
  return (text_report.summary_lines(data.info) + tabular_report.summary_lines(data.info)
          + image_report.summary_lines(data.info, data.class_names))
