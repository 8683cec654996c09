"""Any TFDS image classification dataset by name (`data.name='tfds_images'`).

  data.tfds_name     e.g. 'mnist', 'cifar100', 'oxford_flowers102'
  data.train_split   TFDS split string, slicing allowed: 'train', 'train[:90%]', 'train+test[:50%]'
  data.test_split    likewise: 'test', 'train[90%:]'
  data.tfds_data_dir where prepared datasets live ('' = TFDS's default); runs offline when the
                     dataset is prepared there
  data.download      prepare it (needs network and TensorFlow) when it is not prepared
  data.image_key / data.label_key   the feature names (most datasets: 'image', 'label')
Read through `tfds.data_source` (random access, no TensorFlow needed to read); class names
come from the label feature's metadata. Images of differing sizes are refused with the remedy
(write the dataset as an image folder with image_export.py and set data.image_size).
"""

from __future__ import annotations

import numpy as np

from lwi_jax.data import image_convert, image_report, splits
from lwi_jax.data.errors import DataError
from lwi_jax.data.types import Split


def _arrays(source, name: str, split: str, image_key: str, label_key: str) -> Split:
  images, labels = [], []
  for i in range(len(source)):
    record = source[i]
    x = np.asarray(record[image_key])
    images.append(x[..., None] if x.ndim == 2 else x)
    labels.append(int(record[label_key]))
  if not images:
    raise DataError(f"TFDS {name} split {split!r} is empty")
  shapes = {x.shape for x in images}
  if len(shapes) > 1:
    raise DataError(f"TFDS {name} split {split!r}: images differ in shape ({sorted(shapes)[:3]}"
                    " ...); write it as an image folder (python -m lwi_jax.data.image_export) "
                    "and load that with data.image_size set")
  x = np.stack(images)
  if x.dtype != np.uint8 or min(x.shape[1:3]) < image_convert.MIN_SIZE:
    raise DataError(f"TFDS {name}: images must be uint8 of at least {image_convert.MIN_SIZE}x"
                    f"{image_convert.MIN_SIZE}, got {x.dtype} {x.shape[1:]}")
  return Split(x, np.asarray(labels, np.int32))


def load_tfds_images(cfg):
  """`data.tfds_name` as train / validation / test splits (module docstring).

  Args:
    cfg: config.data with tfds_name, train_split, test_split, tfds_data_dir, download,
      image_key, label_key, validation_fraction, split_seed, train_per_class, test_per_class.

  Returns:
    ClassificationData; validation carved from the train split, stratified and seeded.
  """
  import tensorflow_datasets as tfds  # lazy: heavy, and only this source needs it
  name, data_dir = cfg.tfds_name, cfg.tfds_data_dir or None
  if not name:
    raise DataError("data.tfds_name is empty; name a TFDS image dataset, e.g. 'mnist'")
  wanted = [cfg.train_split, cfg.test_split]
  try:
    train_src, test_src = tfds.data_source(name, split=wanted, data_dir=data_dir, download=False)
  except Exception as not_prepared:  # noqa: BLE001 - TFDS raises several types for this
    if not cfg.download:
      raise DataError(f"TFDS {name!r} splits {wanted} cannot be read from data_dir={data_dir!r} "
                      f"and data.download=False ({type(not_prepared).__name__}: "
                      f"{str(not_prepared)[:200]})") from not_prepared
    try:
      builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
      builder.download_and_prepare()
      train_src, test_src = tfds.data_source(name, split=wanted, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - offline, no TensorFlow, unknown name: one line
      raise DataError(f"TFDS {name!r} could not be prepared: {type(e).__name__}: "
                      f"{str(e)[:300]}") from e
  features = train_src.dataset_info.features
  for key in (cfg.image_key, cfg.label_key):
    if key not in features:
      raise DataError(f"TFDS {name!r} has no feature {key!r} (data.image_key / data.label_key);"
                      f" it has {sorted(features.keys())}")
  names = tuple(features[cfg.label_key].names)
  train = _arrays(train_src, name, cfg.train_split, cfg.image_key, cfg.label_key)
  test = _arrays(test_src, name, cfg.test_split, cfg.image_key, cfg.label_key)
  data = splits.with_validation_split(train, test, names, cfg)
  return image_report.with_image_info(data, {
      "source": "tfds_images", "tfds_name": name, "train_split": cfg.train_split,
      "test_split": cfg.test_split, "image_shape": list(data.train.inputs.shape[1:])})
