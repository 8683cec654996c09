"""The stated rules that turn any decoded picture into the uint8 [H, W, C] arrays the CNN reads.

Channels (`data.channels`):
  0  auto: 1 when every image of the dataset is greyscale (Pillow modes 1, L, LA, I, I;16, F),
     else 3 (greyscale images then repeat their one channel, which is what Pillow's L -> RGB
     conversion does)
  1  greyscale: Pillow's convert('L'), ITU-R 601-2 luma (L = R*299/1000 + G*587/1000 + B*114/1000)
  3  RGB: Pillow's convert('RGB'); palette images through their palette; alpha is dropped (the
     stored colour of a transparent pixel is kept, Pillow's rule)
  4  RGBA: Pillow's convert('RGBA'); opaque alpha added where an image has none
Size (`data.image_size`): 0 keeps every image's size and refuses a dataset whose sizes differ;
N > 0 resizes every image that is not N x N with bilinear filtering (Pillow's BILINEAR, which
antialiases when shrinking), so an image already N x N is never touched.
"""

from __future__ import annotations

import numpy as np

CHANNELS = (0, 1, 3, 4)
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
MIN_SIZE = 8  # the CNN pools three times by 2 (lwi_jax/models/resnet_cnn.py)


def check_options(channels: int, image_size: int) -> None:
  """data.channels and data.image_size, before any file is read."""
  if channels not in CHANNELS:
    raise ValueError(f"data.channels={channels!r} is not one of {list(CHANNELS)} "
                     "(0 = auto: 1 if every image is greyscale, else 3)")
  if not isinstance(image_size, int) or (image_size and image_size < MIN_SIZE) \
      or image_size < 0:
    raise ValueError(f"data.image_size={image_size!r} must be 0 (keep the files' size) or an "
                     f"integer >= {MIN_SIZE}")


def to_array(image, channels: int, image_size: int) -> np.ndarray:
  """One opened Pillow image as uint8 [H, W, C] by the module's rules.

  With channels=0 the result has 1 channel for a greyscale image and 3 otherwise;
  `unify_channels` makes a dataset's arrays agree afterwards.
  """
  from PIL import Image  # lazy: only the image sources need Pillow
  if channels == 0:
    mode = "L" if image.mode in GREY_MODES else "RGB"
  else:
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
  if image.mode != mode:
    image = image.convert(mode)
  if image_size and image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
  array = np.asarray(image, np.uint8)
  return array[:, :, None] if array.ndim == 2 else array


def unify_channels(arrays: list[np.ndarray]) -> list[np.ndarray]:
  """channels=0: every array 3 channels as soon as one is colour (greyscale repeated)."""
  if all(a.shape[-1] == 1 for a in arrays):
    return arrays
  return [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in arrays]


def from_array(array: np.ndarray):
  """uint8 [H, W, C] (C in 1, 3, 4) as a Pillow image (for writing an image folder)."""
  from PIL import Image
  array = np.asarray(array)
  if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
    raise ValueError(f"an image must be uint8 [H, W, C] with C in (1, 3, 4), got "
                     f"{array.dtype} {array.shape}")
  return Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array)


def pixel_stats(train_images: np.ndarray) -> dict:
  """Per-channel mean and standard deviation (in 0..255 units) of the training split, for the
  CNN's input normalisation (model.input_norm='train_stats'); float64 sums, so they do not
  depend on the order of the images."""
  x = np.asarray(train_images)
  if x.ndim != 4 or x.shape[0] == 0:
    raise ValueError(f"pixel statistics need images [N, H, W, C], got {x.shape}")
  flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
  std = flat.std(axis=0)
  return {"pixel_mean": [float(v) for v in flat.mean(axis=0)],
          "pixel_std": [float(max(v, 1.0)) for v in std]}  # a constant channel: no blow-up
