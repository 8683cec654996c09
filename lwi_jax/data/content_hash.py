"""What was loaded, as one hash: the data's part of every phase fingerprint.

The config names where data comes from (a path), not what it contains. Hashing the loaded
arrays (every split's inputs and labels, their dtypes and shapes) and the class names means an
edited file, a rebuilt cache or a changed split never reuses a finished phase: renaming one
class in a CSV flips the sorted class order, and a reused phase would report its TPR vectors
under the new names. Hashing after load costs one pass over the arrays (CIFAR-10: ~180 MB).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from lwi_jax.data.types import ClassificationData


def content_hash(data: ClassificationData) -> str:
  """sha256 (hex) of the class names and of every split's arrays, layout included."""
  h = hashlib.sha256()
  h.update(json.dumps(list(data.class_names)).encode())
  for name in ("train", "validation", "test"):
    split = getattr(data, name)
    for array in (split.inputs, split.labels):
      a = np.ascontiguousarray(array)
      h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
      h.update(memoryview(a).cast("B"))
  return h.hexdigest()
