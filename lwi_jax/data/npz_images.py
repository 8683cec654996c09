"""Images as arrays (`data.name='npz'`): one .npz with x_train, y_train, x_test, y_test.

x_* are uint8 [N, H, W] (greyscale) or [N, H, W, C] with C in 1, 3, 4; y_* integer class
indices 0..C-1; an optional `class_names` array of strings (else '0', '1', ...). Arrays are used
as stored (no resizing: that is the image folder's job); the validation split is carved from
the training arrays, stratified and seeded (data.validation_fraction, data.split_seed).
Loaded with allow_pickle=False: an .npz from elsewhere cannot run code.
"""

from __future__ import annotations

import os

import numpy as np

from lwi_jax.data import image_convert, image_report, splits
from lwi_jax.data.errors import DataError
from lwi_jax.data.types import Split

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _images(path: str, key: str, x: np.ndarray) -> np.ndarray:
  x = x[..., None] if x.ndim == 3 else x
  if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
    raise DataError(f"{path}: {key} must be uint8 [N, H, W] or [N, H, W, C] with C in "
                    f"(1, 3, 4), got {x.dtype} {x.shape}")
  if min(x.shape[1:3]) < image_convert.MIN_SIZE:
    raise DataError(f"{path}: {key} images are {x.shape[1]}x{x.shape[2]}; the CNN needs at "
                    f"least {image_convert.MIN_SIZE}x{image_convert.MIN_SIZE} (resize them, or "
                    "write them as an image folder and set data.image_size)")
  return x


def _labels(path: str, key: str, y: np.ndarray, n: int) -> np.ndarray:
  if y.dtype.kind not in "iu" or y.shape != (n,):
    raise DataError(f"{path}: {key} must be {n} integer labels, got {y.dtype} {y.shape}")
  if n and y.min() < 0:
    raise DataError(f"{path}: {key} has negative labels (min {y.min()})")
  return y.astype(np.int32)


def load_npz(cfg):
  """`data.path` (.npz) as train / validation / test splits.

  Args:
    cfg: config.data with path, validation_fraction, split_seed, train_per_class,
      test_per_class.

  Returns:
    ClassificationData with the image facts of image_report.with_image_info.
  """
  path = os.path.abspath(os.path.expanduser(cfg.path))
  try:
    with np.load(path, allow_pickle=False) as z:
      missing = [k for k in KEYS if k not in z.files]
      if missing:
        raise DataError(f"{path}: missing arrays {missing} (it has {sorted(z.files)})")
      arrays = {k: z[k] for k in z.files if k in KEYS + ("class_names",)}
  except (OSError, ValueError) as e:
    raise DataError(f"data.path={cfg.path!r}: not a readable .npz ({e})") from e
  parts = {}
  for split in ("train", "test"):
    x = _images(path, f"x_{split}", arrays[f"x_{split}"])
    parts[split] = Split(x, _labels(path, f"y_{split}", arrays[f"y_{split}"], x.shape[0]))
  if parts["train"].inputs.shape[1:] != parts["test"].inputs.shape[1:]:
    raise DataError(f"{path}: x_train images are {parts['train'].inputs.shape[1:]}, x_test "
                    f"{parts['test'].inputs.shape[1:]}")
  top = int(max(parts["train"].labels.max(initial=-1), parts["test"].labels.max(initial=-1)))
  if "class_names" in arrays:
    names = tuple(str(n) for n in arrays["class_names"])
    if len(names) <= top:
      raise DataError(f"{path}: {len(names)} class_names for labels up to {top}")
  else:
    names = tuple(str(i) for i in range(top + 1))
  data = splits.with_validation_split(parts["train"], parts["test"], names, cfg)
  return image_report.with_image_info(data, {"source": "npz", "path": path,
                                             "image_shape": list(data.train.inputs.shape[1:])})
