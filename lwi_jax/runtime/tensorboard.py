"""Per-member training curves for TensorBoard: one tensorboardX writer per member."""

from __future__ import annotations

import math
import os
import re

import numpy as np


class TensorBoard:
  """One tensorboardX writer per member, under <dir>/<member label>."""

  def __init__(self, directory: str, labels: list[str]):
    from tensorboardX import SummaryWriter  # lazy: only training needs it
    self._writers = [SummaryWriter(os.path.join(directory, re.sub(r"[^\w.=@-]+", "_", label)))
                     for label in labels]

  def write(self, step: int, scalars: dict[str, np.ndarray]) -> None:
    for i, w in enumerate(self._writers):
      for name, values in scalars.items():
        value = float(values[i])
        if math.isfinite(value):
          w.add_scalar(f"train/{name}", value, step)
      w.flush()

  def close(self) -> None:
    for w in self._writers:
      w.close()
