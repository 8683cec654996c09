"""uint8 pixels to the CNN's first-layer input: the fixed CIFAR-10 scaling or the training
split's statistics (model.input_norm, lwi_jax/models/__init__.py)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lwi_jax.data.image_convert import MIN_SIZE  # three 2x2 poolings leave one pixel of 8x8


def scaled_pixels(images: jax.Array, dtype, mean: Sequence[float] | None,
                  std: Sequence[float] | None) -> jax.Array:
  """x / 127.5 - 1 when `mean` is None (the CIFAR-10 configs, bit for bit as before the
  option existed), else (x - mean) / std per channel, in `dtype`."""
  if min(images.shape[1:3]) < MIN_SIZE:
    raise ValueError(f"resnet_cnn needs images of at least {MIN_SIZE}x{MIN_SIZE}, got "
                     f"{images.shape[1:3]} (set data.image_size)")
  if mean is None:
    return images.astype(dtype) * (1.0 / 127.5) - 1.0
  if len(mean) != images.shape[-1] or len(std) != images.shape[-1]:
    raise ValueError(f"{len(mean)} channel means and {len(std)} stds for images with "
                     f"{images.shape[-1]} channels")
  return (images.astype(dtype) - jnp.asarray(mean, dtype)) * (1.0 / jnp.asarray(std, dtype))
