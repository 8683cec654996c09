"""The source paper's small residual CNN, with the convolution implementation chosen per backend.

conv(w0) -> conv(w0) + residual -> pool -> conv(w1) -> conv(w1) + residual -> pool -> conv(w2)
-> pool -> dense(d) -> dropout -> dense(C); every convolution is followed by BatchNorm and ReLU.

Why two convolution implementations: XLA:CPU runs the weight-gradient of `lax.conv` slowly and
`jax.vmap` turns a convolution over stacked weights into a grouped convolution that is slower
still. Writing a 3x3 convolution as nine shifted views of the padded input times one matrix
(im2col by data movement) turns both into (batched) matrix products, which CPUs run well. On GPU
and TPU cuDNN / XLA convolutions are the right choice. Both implementations share the same
parameters, so they are numerically interchangeable (tests check it).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_IMPLS = ("xla", "matmul")


def conv3x3_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """SAME 3x3 convolution, stride 1, NHWC x HWIO, as shifted slices + one matmul."""
  n, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  # Concatenation order (dy, dx, c) matches kernel.reshape(9 * c, out) for HWIO kernels.
  patches = jnp.concatenate([xp[:, dy:dy + h, dx:dx + w, :] for dy in range(3) for dx in range(3)],
                            axis=-1)
  return jnp.dot(patches, kernel.reshape(9 * c, kernel.shape[-1]))


def conv3x3_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding="SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def max_pool_2x2(x: jax.Array, impl: str) -> jax.Array:
  """2x2 max pooling, stride 2. The reshape+max form has a cheaper gradient on CPU."""
  if impl == "xla":
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  n, h, w, c = x.shape
  return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Conv3x3(nn.Module):
  features: int
  impl: str = "xla"

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    conv = conv3x3_xla if self.impl == "xla" else conv3x3_matmul
    return conv(x, kernel) + bias


class ResidualCNN(nn.Module):
  """Widths (w0, w1, w2) and the dense width come from the config: one code for CPU and GPU."""

  num_classes: int
  widths: Sequence[int] = (32, 64, 128)
  dense_width: int = 256
  dropout_rate: float = 0.5
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f"model.conv_impl={self.conv_impl!r} is not one of {list(CONV_IMPLS)}")
    # uint8 pixels stay uint8 on the device (4x less memory); scale here.
    x = images.astype(jnp.float32) * (1.0 / 127.5) - 1.0

    def conv_bn_relu(x, features):
      x = Conv3x3(features, self.conv_impl)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      return nn.relu(x)

    w0, w1, w2 = self.widths
    x = conv_bn_relu(x, w0)
    x = x + conv_bn_relu(x, w0)
    x = max_pool_2x2(x, self.conv_impl)
    x = conv_bn_relu(x, w1)
    x = x + conv_bn_relu(x, w1)
    x = max_pool_2x2(x, self.conv_impl)
    x = conv_bn_relu(x, w2)
    x = max_pool_2x2(x, self.conv_impl)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.dense_width)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)
