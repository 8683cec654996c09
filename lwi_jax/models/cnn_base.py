"""What the image CNNs share: their fields (config.model's image fields) and their input stem.

ResidualCNN (resnet_cnn.py) and ConvGroupsCNN (conv_groups.py) differ only in how they stack
conv_pool_bn_act blocks; the input scaling, the optional whitening layer and the options of
every block are the same, so they are defined once here.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwi_jax.models import activations
from lwi_jax.models import image_input
from lwi_jax.models import whitening

CONV_IMPLS = ("xla", "matmul", "cpu")


class ImageCNN(nn.Module):
  """Fields of both image CNNs; subclasses add theirs and define __call__(images, train)."""

  num_classes: int
  widths: Sequence[int] = (32, 64, 128)
  conv_impl: str = "xla"
  # Parameter dtype: float32 for training; float64 (with jax_enable_x64) lets
  # bench/check_gradients_f64.py tell a wrong fast path from float32 round-off at the real sizes.
  dtype: jnp.dtype = jnp.float32
  # Compute dtype (None = dtype). bfloat16 = mixed precision for GPU/TPU (model.compute_dtype):
  # convolutions and dense layers in bfloat16, parameters, BatchNorm statistics and the logits
  # (hence the loss) in float32.
  compute_dtype: jnp.dtype | None = None
  # BatchNorm's running-average momentum (flax convention: new = m * old + (1 - m) * batch)
  # and epsilon (model.bn_momentum, model.bn_epsilon).
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  # Input normalisation (image_input.py): None = x / 127.5 - 1, else the training split's.
  pixel_mean: tuple[float, ...] | None = None
  pixel_std: tuple[float, ...] | None = None
  # Patch-whitening first layer (whitening.py; model.whiten_patch): 0 = none, else the patch
  # size, with the constants fitted to the training images (whitening.fit).
  whiten_patch: int = 0
  whiten_kernel: tuple[float, ...] | None = None
  whiten_bias: tuple[float, ...] | None = None
  # model.identity_init (resnet_cnn.identity_kernel_init) and model.bn_scale (False: BatchNorm
  # without a trained scale, airbench's frozen ones).
  identity_init: bool = False
  bn_scale: bool = True
  # model.activation (activations.py), after every BatchNorm and after the whitening layer
  # (airbench: GELU); 'relu' where a config has no such field.
  activation: str = "relu"

  def stem(self, images: jax.Array) -> jax.Array:
    """uint8 images (they stay uint8 on the device: 4x less memory) -> the first block's input."""
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f"model.conv_impl={self.conv_impl!r} is not one of {list(CONV_IMPLS)}")
    x = image_input.scaled_pixels(images, self.dtype, self.pixel_mean, self.pixel_std)
    if self.whiten_patch:  # in the parameter dtype: it amplifies low-variance directions
      x = activations.get(self.activation)(
          whitening.apply(x, self.whiten_patch, self.whiten_kernel, self.whiten_bias))
    return x.astype(self.compute_dtype or self.dtype)

  def stem_channels_first(self, images: jax.Array, train: bool) -> jax.Array | None:
    """The stem's output laid out [C, H, W, N] for the first convolution's weight gradient, or
    None: computed from the images when training on the CPU path with a whitening layer, whose
    wide output XLA:CPU would otherwise transpose slowly (whitening.apply_channels_first)."""
    if not (train and self.whiten_patch and self.conv_impl == "cpu"):
      return None
    x = image_input.scaled_pixels(images, self.dtype, self.pixel_mean, self.pixel_std)
    x = whitening.apply_channels_first(x, self.whiten_patch, self.whiten_kernel, self.whiten_bias)
    return activations.get(self.activation)(x).astype(self.compute_dtype or self.dtype)

  def block_options(self, train: bool) -> dict:
    """The keyword options of every conv_pool_bn_act block."""
    return dict(train=train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                dtype=self.dtype, compute_dtype=self.compute_dtype or self.dtype,
                identity_init=self.identity_init, bn_scale=self.bn_scale,
                activation=self.activation)
