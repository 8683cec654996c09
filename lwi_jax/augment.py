"""Jittable data augmentation, one key per batch, so members that share a seed see the same views.

What an augmentation does is an `AugmentSpec` built from `config.train`
(lwi_jax/study/train_options.py):
  augment   'none' or 'flip_crop' (horizontal flip + random translation by cropping after padding)
  crop_pad  translation range in pixels (4: the classic CIFAR recipe; 2: the fast recipes, which
            train ~10 epochs and gain from views closer to the test images)
  pad_mode  'zeros' or 'reflect' (what the translation shifts in at the border)
  flip      'random' (each view flipped with p = 1/2) or 'alternating' (airbench: each image
            flipped in every other epoch, starting from a fixed random half, so two consecutive
            epochs always show both orientations; more diverse than independent coin flips
            when there are few epochs), or 'none' (translation only: for data where a mirror
            image is another class or no image at all, e.g. digits and letters)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("none", "flip_crop")
FLIPS = ("random", "alternating", "none")
PAD_MODES = {"zeros": "constant", "reflect": "reflect"}


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
  """Hashable (a static argument of the compiled epoch)."""

  name: str = "none"
  crop_pad: int = 4
  pad_mode: str = "zeros"
  flip: str = "random"

  def __post_init__(self):
    if self.name not in AUGMENTATIONS:
      raise ValueError(f"train.augment={self.name!r} is not one of {list(AUGMENTATIONS)}")
    if not isinstance(self.crop_pad, int) or self.crop_pad < 0:
      raise ValueError(f"train.crop_pad={self.crop_pad!r} must be an integer >= 0")
    if self.pad_mode not in PAD_MODES:
      raise ValueError(f"train.pad_mode={self.pad_mode!r} is not one of {list(PAD_MODES)}")
    if self.flip not in FLIPS:
      raise ValueError(f"train.flip={self.flip!r} is not one of {list(FLIPS)}")


def as_spec(augment: str | AugmentSpec) -> AugmentSpec:
  return augment if isinstance(augment, AugmentSpec) else AugmentSpec(augment)


def alternating_flip_mask(example_ids: jax.Array, epoch) -> jax.Array:
  """True where example `i` is flipped in `epoch`: a fixed pseudo-random half of the examples
  in even epochs, the other half in odd ones. The half is a hash of the example index (the same
  for every seed; data order and translations still differ by seed)."""
  h = example_ids.astype(jnp.uint32) * jnp.uint32(0x9E3779B1)  # Knuth's multiplicative hash
  base = ((h >> 16) & 1).astype(jnp.bool_)
  return base ^ (jnp.asarray(epoch) % 2 == 1)


def _crop(images: jax.Array, k_y: jax.Array, k_x: jax.Array, pad: int, pad_mode: str
          ) -> jax.Array:
  """Random translation by up to `pad` pixels: crop an HxW window out of the padded image."""
  if pad == 0:
    return images
  n, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=PAD_MODES[pad_mode])
  ys = jax.random.randint(k_y, (n,), 0, 2 * pad + 1)
  xs = jax.random.randint(k_x, (n,), 0, 2 * pad + 1)
  crop = lambda img, y, x: jax.lax.dynamic_slice(img, (y, x, 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, ys, xs)


def flip_crop(images: jax.Array, key: jax.Array, pad: int = 4, pad_mode: str = "zeros",
              flip: jax.Array | None = None) -> jax.Array:
  """Horizontal flip (random, or where `flip` [N] is True) and random crop after padding."""
  k_flip, k_y, k_x = jax.random.split(key, 3)
  if flip is None:
    flip = jax.random.bernoulli(k_flip, 0.5, (images.shape[0],))
  images = jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
  return _crop(images, k_y, k_x, pad, pad_mode)


def apply(spec: AugmentSpec, inputs: jax.Array, key: jax.Array, example_ids: jax.Array,
          epoch) -> jax.Array:
  """Augmented views of one batch; `example_ids` (indices into the training set) and `epoch`
  are what the alternating flip is a function of."""
  if spec.name == "none":
    return inputs
  if spec.flip == "none":
    _, k_y, k_x = jax.random.split(key, 3)  # flip_crop's translation keys: same views, unflipped
    return _crop(inputs, k_y, k_x, spec.crop_pad, spec.pad_mode)
  flip = alternating_flip_mask(example_ids, epoch) if spec.flip == "alternating" else None
  return flip_crop(inputs, key, spec.crop_pad, spec.pad_mode, flip)


def augment(name: str, inputs: jax.Array, key: jax.Array) -> jax.Array:
  """By name, with the classic settings (random flips, which need no example ids)."""
  return apply(AugmentSpec(name), inputs, key, jnp.zeros((inputs.shape[0],), jnp.int32), 0)
