"""The one data structure every source returns, so the trainer never knows where data came from."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  """Inputs and integer labels of one split.

  `inputs` is uint8 NHWC for images, int32 [N, T] token ids for text (0 = padding), float32
  [N, F] standardised features for tables.
  """

  inputs: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    if self.labels.ndim != 1:
      raise ValueError(f"labels must be 1-D, got shape {self.labels.shape}")
    if self.inputs.shape[0] != self.labels.shape[0]:
      raise ValueError(
          f"inputs ({self.inputs.shape[0]}) and labels ({self.labels.shape[0]}) differ in length")
    if self.labels.dtype != np.int32:
      raise ValueError(f"labels must be int32, got {self.labels.dtype}")

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def take(self, indices: np.ndarray) -> "Split":
    return Split(self.inputs[indices], self.labels[indices])


@dataclasses.dataclass(frozen=True)
class ClassificationData:
  """Train / validation / test splits plus what an experiment needs to know about the classes.

  The validation split is carved from the training data: it is what class weights are derived
  from. The test split is only ever used for the final report.
  """

  train: Split
  validation: Split
  test: Split
  class_names: tuple[str, ...]
  # Free-form facts about the source (path, vocabulary, ...) that end up in results.json.
  info: dict = dataclasses.field(default_factory=dict)
  # Which named example went to which split (data/split_manifest.py), from sources that name
  # their examples; the study writes it to the workdir. Not in `info`: it lists every example.
  split_manifest: dict | None = None

  def __post_init__(self):
    c = len(self.class_names)
    for name in ("train", "validation", "test"):
      split = getattr(self, name)
      if len(split) and (split.labels.min() < 0 or split.labels.max() >= c):
        raise ValueError(f"{name} labels must lie in [0, {c}), got range "
                         f"[{split.labels.min()}, {split.labels.max()}]")

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def class_counts(self) -> np.ndarray:
    """Examples per class in the training split (what frequency-based rules need)."""
    return np.bincount(self.train.labels, minlength=self.num_classes).astype(np.int64)
