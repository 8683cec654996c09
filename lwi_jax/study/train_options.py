"""The training-recipe fields of `config.train` that the trainer passes to the pure functions.

Only the image discipline's config sets them (a text or table config has no crop or mirror);
a config without a field gets the default of the function that reads it (`AugmentSpec`'s
fields, `DEFAULTS` for the rest), so each default stands in one place.
They are validated before any data is loaded (`check`) and against the data once it is
(`augment_spec`, `eval_flip`: image-only options on a text dataset are a config error, not a
silent no-op):
  train.augment / crop_pad / pad_mode / flip   augment.AugmentSpec
  train.label_smoothing                        losses.per_example_focal, 0 = off
  train.eval_flip                              train.predict_logits, test-time mirror images
  train.eval_translate                         train.predict_logits, test-time shifted images
  train.cpu_preset                             the console only (`cpu_preset_hint`)
"""

from __future__ import annotations

import dataclasses

from lwi_jax import augment as augment_lib

# Fields that change what the console says, never what is computed: not in phase fingerprints.
CONSOLE_ONLY_FIELDS = ("cpu_preset",)
DEFAULTS = {"label_smoothing": 0.0, "eval_flip": False, "eval_translate": 0, "cpu_preset": "",
            **{f.name: f.default for f in dataclasses.fields(augment_lib.AugmentSpec)
               if f.name != "name"}}


def _field(train_cfg, name: str):
  return train_cfg[name] if name in train_cfg else DEFAULTS[name]


def label_smoothing(train_cfg) -> float:
  value = float(_field(train_cfg, "label_smoothing"))
  if not 0.0 <= value < 1.0:
    raise ValueError(f"train.label_smoothing={value} must be in [0, 1)")
  return value


def _needs_images(option: str, data) -> None:
  if data is not None and data.train.inputs.ndim != 4:
    raise ValueError(f"train.{option} works on images [N, H, W, C]; this dataset's inputs have "
                     f"shape {data.train.inputs.shape[1:]} per example (set it to its default)")


def augment_spec(train_cfg, data=None) -> augment_lib.AugmentSpec:
  spec = augment_lib.AugmentSpec(train_cfg.augment, int(_field(train_cfg, "crop_pad")),
                                 _field(train_cfg, "pad_mode"), _field(train_cfg, "flip"))
  if spec.name != "none":
    _needs_images(f"augment={spec.name!r}", data)
  return spec


def eval_flip(train_cfg, data=None) -> bool:
  value = _field(train_cfg, "eval_flip")
  if not isinstance(value, bool):
    raise ValueError(f"train.eval_flip={value!r} must be True or False")
  if value:
    _needs_images("eval_flip=True", data)
    if _field(train_cfg, "flip") == "none":
      raise ValueError("train.eval_flip=True averages each test image with its mirror image, "
                       "which train.flip='none' says is not the same class; set "
                       "train.eval_flip=False")
  return value


def eval_translate(train_cfg, data=None) -> int:
  """Pixels of the test-time shifted views (0 = none); each view is one more forward pass of
  every evaluated image (two with the mirror), so any p > 0 triples the evaluation's passes."""
  value = _field(train_cfg, "eval_translate")
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ValueError(f"train.eval_translate={value!r} must be an integer number of pixels >= 0 "
                     "(0 = no shifted views; the fast CIFAR recipes use 1)")
  if value:
    _needs_images(f"eval_translate={value}", data)
    if data is not None and 2 * value >= min(data.train.inputs.shape[1:3]):
      raise ValueError(f"train.eval_translate={value} must be less than half the images' "
                       f"height and width {data.train.inputs.shape[1:3]} (reflect padding)")
  return value


def cpu_preset_hint(config, backend: str) -> str:
  """Names the preset sized for a CPU-only host when a config made for accelerators runs on one
  (configs/cifar.py's full preset names its `:cpu`); '' otherwise. It changes nothing that runs.
  """
  preset = _field(config.train, "cpu_preset")
  if backend != "cpu" or not preset:
    return ""
  return (f"this preset is sized for a GPU/TPU; on this CPU-only host `python launch.py "
          f"--config={preset}` is the preset sized for it (same recipe, smaller network)")


def check(config) -> None:
  """Every recipe field of `config`, without data."""
  augment_spec(config.train)
  label_smoothing(config.train)
  eval_flip(config.train)
  eval_translate(config.train)
  preset = _field(config.train, "cpu_preset")
  if not isinstance(preset, str):
    raise ValueError(f"train.cpu_preset={preset!r} must be a config string such as "
                     "'configs/cifar.py:cpu' (or '' for none)")
