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

CONV_IMPLS = ("xla", "matmul", "hybrid")

_DIMS = ("NHWC", "HWIO", "NHWC")
_SAME = ((1, 1), (1, 1))


def conv3x3_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """SAME 3x3 convolution, stride 1, NHWC x HWIO, as shifted slices + one matmul (reference)."""
  n, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  # Concatenation order (dy, dx, c) matches kernel.reshape(9 * c, out) for HWIO kernels.
  patches = jnp.concatenate([xp[:, dy:dy + h, dx:dx + w, :] for dy in range(3) for dx in range(3)],
                            axis=-1)
  return jnp.dot(patches, kernel.reshape(9 * c, kernel.shape[-1]))


def conv3x3_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding=_SAME,
                                      dimension_numbers=_DIMS)


# ----------------------------------------------------------------------------- hybrid (CPU)
#
# Where the time of a CPU training step went (see bench/README.md): XLA:CPU hands forward
# convolutions (and the input-gradient convolution, which is a forward convolution of dy with the
# flipped, transposed kernel) to YNNPACK's direct convolution, which is as fast as PyTorch's
# oneDNN; but autodiff writes the WEIGHT gradient as a convolution whose "kernel" is the whole
# HxW image, which runs ~10x slower than the forward; `jax.vmap` over members turns every
# convolution into a grouped one, slower still; and the im2col form (conv3x3_matmul) spends most
# of its step materialising 9x copies of every activation (and their gradients). So the hybrid
# convolution is:
#   forward  y  = conv(x, k)                             direct convolution, no copies
#   backward dx = conv(dy, flip(k)^T)                    direct convolution, no copies
#            dk = X3^T . D3  (conv3x3_weight_grad)       ONE matmul over 3x (not 9x) copies
# and under vmap (the ensemble axis) every member keeps its own ungrouped convolution.


@jax.custom_batching.custom_vmap
def _direct_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return conv3x3_xla(x, kernel)


@_direct_conv.def_vmap
def _direct_conv_vmap(axis_size, in_batched, x, kernel):
  """Members' convolutions stay ungrouped: XLA:CPU runs a grouped convolution ~10x slower."""
  x_batched, k_batched = in_batched
  if not k_batched:  # one kernel: the member axis joins the image batch
    y = _direct_conv(x.reshape((-1,) + x.shape[2:]), kernel)
    return y.reshape((axis_size, -1) + y.shape[1:]), True
  if not x_batched:  # one input (e.g. shared eval batches): members' kernels side by side
    out = kernel.shape[-1]
    wide = jnp.moveaxis(kernel, 0, -2).reshape(kernel.shape[1:-1] + (axis_size * out,))
    y = _direct_conv(x, wide)
    return jnp.moveaxis(y.reshape(y.shape[:-1] + (axis_size, out)), -2, 0), True
  # The thunk executor may run independent members' convolutions concurrently.
  return jnp.stack([_direct_conv(x[i], kernel[i]) for i in range(axis_size)]), True


def conv3x3_weight_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
  """dk[a, b, c, o] = sum_{n,i,j} xpad[n, i+a, j+b, c] dy[n, i, j, o] as ONE matmul.

  X3 = the 3 column shifts of the padded input side by side  [N(H+2)W, 3C], columns (b, c);
  D3 = the 3 row shifts of dy, zero-padded to H+2 rows      [N(H+2)W, 3O], columns (a, o);
  X3^T D3 = [3C, 3O] holds exactly the 9CO weights, with 3x (not 9x) copies of each operand.
  """
  n, h, w, c = x.shape
  o = dy.shape[-1]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  x3 = jnp.concatenate([xp[:, :, b:b + w] for b in range(3)], axis=-1)  # [N, H+2, W, 3C]
  dyp = jnp.pad(dy, ((0, 0), (2, 2), (0, 0), (0, 0)))
  d3 = jnp.concatenate([dyp[:, 2 - a:2 - a + h + 2] for a in range(3)], axis=-1)  # [N,H+2,W,3O]
  dk = jax.lax.dot_general(x3.reshape(-1, 3 * c), d3.reshape(-1, 3 * o), (((0,), (0,)), ((), ())),
                           preferred_element_type=jnp.float32)
  return dk.reshape(3, c, 3, o).transpose(2, 0, 1, 3).astype(x.dtype)


@jax.custom_vjp
def conv3x3_hybrid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """SAME 3x3 convolution, stride 1, NHWC x HWIO; equal to conv3x3_xla, faster on CPU."""
  return _direct_conv(x, kernel)


def _hybrid_fwd(x, kernel):
  return _direct_conv(x, kernel), (x, kernel)


def _hybrid_bwd(res, dy):
  x, kernel = res
  dx = _direct_conv(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
  return dx, conv3x3_weight_grad(x, dy)


conv3x3_hybrid.defvjp(_hybrid_fwd, _hybrid_bwd)

_CONVS = {"xla": conv3x3_xla, "matmul": conv3x3_matmul, "hybrid": conv3x3_hybrid}


def _pool_windows(x: jax.Array) -> jax.Array:
  n, h, w, c = x.shape
  return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


def _materialized(x: jax.Array) -> jax.Array:
  """x as one stored buffer. The max-pool gradient compares x with max(x); if XLA fuses x's
  producer (BatchNorm, ReLU, residual add) into both sides it may round them differently (FMA
  contraction differs per fusion), no element equals the max and the gradient is lost (seen:
  jit-only gradient errors of 0.1 in the im2col model). A barrier makes both read the same bits.
  """
  return jax.lax.optimization_barrier(x)


@jax.custom_vjp
def max_pool_2x2_fused(x: jax.Array) -> jax.Array:
  """reshape+max pooling whose gradient is one elementwise pass (same values as autodiff's).

  Autodiff of `max` splits the gradient evenly among tied maxima; it builds that from a 0/1
  mask, a reduce_sum over each window and a divide, which XLA:CPU runs as three passes. Here
  the count is the sum of the four window positions (elementwise adds), so the whole backward
  fuses into one loop with the same result, ties included.
  """
  return _pool_windows(x).max(axis=(2, 4))


def _pool_fwd(x):
  x = _materialized(x)
  y = _pool_windows(x).max(axis=(2, 4))
  return y, (x, y)


def _pool_bwd(res, g):
  x, y = res
  n, h, w, c = x.shape
  win = _pool_windows(x)
  hits = [win[:, :, a, :, b] == y for a in range(2) for b in range(2)]
  count = sum(hit.astype(g.dtype) for hit in hits)
  share = g / count
  parts = [jnp.where(hit, share, 0.0) for hit in hits]  # (a, b) = (0,0), (0,1), (1,0), (1,1)
  dx = jnp.stack(parts, axis=3).reshape(n, h // 2, w // 2, 2, 2, c)
  dx = dx.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2 * 2, w // 2 * 2, c)
  if dx.shape != x.shape:  # odd sizes: the last row / column is not pooled
    dx = jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0)))
  return (dx,)


max_pool_2x2_fused.defvjp(_pool_fwd, _pool_bwd)


def max_pool_2x2(x: jax.Array, impl: str) -> jax.Array:
  """2x2 max pooling, stride 2. The reshape+max forms have a cheaper gradient on CPU."""
  if impl == "xla":
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  if impl == "hybrid":
    return max_pool_2x2_fused(x)
  return _pool_windows(_materialized(x)).max(axis=(2, 4))


class Conv3x3(nn.Module):
  features: int
  impl: str = "xla"

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return _CONVS[self.impl](x, kernel) + bias


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
