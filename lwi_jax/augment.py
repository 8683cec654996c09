"""Jittable data augmentation, one key per batch, so members that share a seed see the same views."""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("none", "flip_crop")


def flip_crop(images: jax.Array, key: jax.Array, pad: int = 4) -> jax.Array:
  """Random horizontal flip and random crop after zero padding (standard CIFAR augmentation)."""
  n, h, w, _ = images.shape
  k_flip, k_y, k_x = jax.random.split(key, 3)
  flip = jax.random.bernoulli(k_flip, 0.5, (n,))
  images = jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ys = jax.random.randint(k_y, (n,), 0, 2 * pad + 1)
  xs = jax.random.randint(k_x, (n,), 0, 2 * pad + 1)
  crop = lambda img, y, x: jax.lax.dynamic_slice(img, (y, x, 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, ys, xs)


def augment(name: str, inputs: jax.Array, key: jax.Array) -> jax.Array:
  if name == "none":
    return inputs
  if name == "flip_crop":
    return flip_crop(inputs, key)
  raise ValueError(f"train.augment={name!r} is not one of {list(AUGMENTATIONS)}")
