"""What an image source loaded: per-class counts, balance, what was skipped; console lines.

Every image source (image_folder, tfds_images, npz_images) passes its data through
`with_image_info`, so results.json keeps the same facts whatever the source, and the training
split's pixel statistics (the CNN's input normalisation) are computed in one place.
A training set whose largest class has more than IMBALANCE_WARN_RATIO times the examples of its
smallest is called imbalanced: frequency alone then differs between classes, and the
count-driven rules (effective_number, oversample, drw) act on it beside learnability.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lwi_jax.data import image_convert
from lwi_jax.data.types import ClassificationData

IMBALANCE_WARN_RATIO = 1.5


def with_image_info(data: ClassificationData, info: dict) -> ClassificationData:
  """`data` with `info` plus per-class counts, the imbalance ratio and the pixel statistics."""
  counts = {s: np.bincount(getattr(data, s).labels, minlength=data.num_classes).tolist()
            for s in ("train", "validation", "test")}
  train = np.asarray(counts["train"])
  ratio = float(train.max() / max(train.min(), 1))
  info = dict(info, class_counts=counts, imbalance_ratio=ratio,
              balanced=ratio <= IMBALANCE_WARN_RATIO,
              **image_convert.pixel_stats(data.train.inputs))
  return dataclasses.replace(data, info=info)


def summary_lines(info: dict, class_names) -> list[str]:
  """Console lines for an image source: shape, per-class counts, skipped files, imbalance."""
  if "imbalance_ratio" not in info:
    return []
  counts = info["class_counts"]
  lines = [f"images: {'x'.join(map(str, info['image_shape']))} per image"
           + (f", layout {info['layout']!r}" if "layout" in info else "")
           + (f", cache {'reused' if info['cache_reused'] else 'written'}: {info['cache']}"
              if "cache" in info else ""),
           f"  {'class':<20s} {'train':>7s} {'validation':>10s} {'test':>7s}"]
  for c, name in enumerate(class_names):
    lines.append(f"  {str(name)[:20]:<20s} {counts['train'][c]:>7d} "
                 f"{counts['validation'][c]:>10d} {counts['test'][c]:>7d}")
  if info.get("split_manifest_reused"):
    lines.append(f"  split reused from {info['split_manifest_reused']} (data.split_manifest; "
                 "data.split_seed and the fractions are not used)"
                 + (f"; {info['unlisted']} file(s) in data.root not listed there, ignored "
                    f"(e.g. {info['unlisted_examples'][:3]})" if info["unlisted"] else ""))
  if info.get("skipped"):
    lines.append("  skipped: " + ", ".join(f"{n} {k.replace('_', ' ')}"
                                           for k, n in info["skipped"].items())
                 + (f" (e.g. {info['unreadable'][:3]})" if info.get("unreadable") else ""))
  if not info["balanced"]:
    lines.append(f"WARNING: the training classes are not balanced: the largest has "
                 f"{info['imbalance_ratio']:.1f}x the examples of the smallest; class frequency "
                 "then differs beside learnability, and the count-driven rules "
                 "(effective_number, oversample, drw) act on it")
  return lines
