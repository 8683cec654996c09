"""The training-recipe fields of `config.train` that the trainer passes to the pure functions.

Read here, with defaults for configs written before they existed, and validated before any data
is loaded (`check`) and against the data once it is (`augment_spec`, `eval_flip`: image-only
options on a text dataset are a config error, not a silent no-op):
  train.augment / crop_pad / pad_mode / flip   augment.AugmentSpec
  train.label_smoothing                        losses.per_example_focal, 0 = off
  train.eval_flip                              train.predict_logits, test-time mirror images
"""

from __future__ import annotations

from lwi_jax import augment as augment_lib


def label_smoothing(train_cfg) -> float:
  value = float(train_cfg.get("label_smoothing", 0.0))
  if not 0.0 <= value < 1.0:
    raise ValueError(f"train.label_smoothing={value} must be in [0, 1)")
  return value


def _needs_images(option: str, data) -> None:
  if data is not None and data.train.inputs.ndim != 4:
    raise ValueError(f"train.{option} works on images [N, H, W, C]; this dataset's inputs have "
                     f"shape {data.train.inputs.shape[1:]} per example (set it to its default)")


def augment_spec(train_cfg, data=None) -> augment_lib.AugmentSpec:
  spec = augment_lib.spec_from_config(train_cfg)
  if spec.name != "none":
    _needs_images(f"augment={spec.name!r}", data)
  return spec


def eval_flip(train_cfg, data=None) -> bool:
  value = train_cfg.get("eval_flip", False)
  if not isinstance(value, bool):
    raise ValueError(f"train.eval_flip={value!r} must be True or False")
  if value:
    _needs_images("eval_flip=True", data)
  return value


def check(config) -> None:
  """Every recipe field of `config`, without data."""
  augment_spec(config.train)
  label_smoothing(config.train)
  eval_flip(config.train)
