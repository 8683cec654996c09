"""Patch whitening: the residual CNN's fixed first layer, fitted to the training images.

Why (airbench's first layer, Keller Jordan 2024): neighbouring pixels and the three colour
channels are strongly correlated, so SGD on the first convolution's weights is badly
conditioned. Projecting every k x k patch onto the eigenvectors of the training patches'
covariance, scaled by 1/sqrt(eigenvalue + eps), gives the next layer decorrelated inputs of unit
variance. Both signs of each projection are kept (2 k^2 C channels), so the ReLU that follows loses
nothing. The layer is a constant of the model (fitted once from the training split, never
trained): it lives in the module's attributes, not in the parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lwi_jax.models import image_input

EPS = 5e-4  # model.whiten_eps when absent: airbench's, relative to the mean eigenvalue
FIT_IMAGES = 5000  # airbench fits on 5,000 images: ~4.8 million 2x2 patches
_FIT_CHUNK = 500  # images per covariance chunk (bounds the patch matrix's memory)


def patches(x: jax.Array, size: int, pad: bool, axes: tuple[int, int] = (1, 2)) -> jax.Array:
  """x's size x size patches over its two spatial `axes`, on a new last axis in (dy, dx, c)
  order: [N, H, W, C] -> [N, H', W', size*size*C] (axes (1, 2)), [H, W, N, C] -> [H', W', N,
  size*size*C] (axes (0, 1)). pad=True repeats the last row/column (size - 1 of them) so the
  output keeps H x W; pad=False keeps valid patches."""
  a, b = axes
  if pad:
    widths = [(0, 0)] * x.ndim
    widths[a] = widths[b] = (0, size - 1)
    x = jnp.pad(x, widths, mode="edge")
  ho, wo = x.shape[a] - size + 1, x.shape[b] - size + 1

  def window(dy, dx):
    return jax.lax.slice_in_dim(jax.lax.slice_in_dim(x, dy, dy + ho, axis=a), dx, dx + wo, axis=b)

  return jnp.concatenate([window(dy, dx) for dy in range(size) for dx in range(size)], axis=-1)


def check(size: int, eps: float) -> None:
  """model.whiten_patch / whiten_eps, before any data is loaded."""
  if size < 0:
    raise ValueError(f"model.whiten_patch={size} must be >= 0 (0 = no whitening layer, else "
                     "the patch size; airbench uses 2)")
  if eps <= 0:
    raise ValueError(f"model.whiten_eps={eps} must be > 0")


def fit(images: np.ndarray, size: int, eps: float, mean=None, std=None
        ) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(kernel, bias) of the whitening layer from the first FIT_IMAGES training images.

  Args:
    images: [N, H, W, C] uint8, the training split (its order is fixed by data.split_seed).
    size: patch size k (model.whiten_patch).
    eps: added to each eigenvalue, relative to their mean (model.whiten_eps): directions with
      less variance than that are not amplified.
    mean, std: the model's input normalisation (image_input.scaled_pixels), so the layer whitens
      exactly what it will see.

  Returns:
    Flattened float tuples (hashable module attributes): the kernel [k*k*C, 2*k*k*C] and bias
    [2*k*k*C] such that patches @ kernel + bias has zero mean and, in its first k*k*C
    channels, covariance diag(lambda / (lambda + eps * mean(lambda))): the identity up to eps
    (the rest are their negatives), on the fitting patches.
  """
  check(size, eps)
  if size < 1:
    raise ValueError(f"model.whiten_patch={size}: fit needs a patch size >= 1")
  x_all = np.asarray(images[:FIT_IMAGES])
  dim = size * size * x_all.shape[-1]
  total, outer, count = np.zeros(dim), np.zeros((dim, dim)), 0
  for start in range(0, len(x_all), _FIT_CHUNK):
    x = image_input.scaled_pixels(jnp.asarray(x_all[start:start + _FIT_CHUNK]), jnp.float32,
                                  mean, std)
    p = np.asarray(patches(x, size, pad=False), np.float64).reshape(-1, dim)
    total += p.sum(0)
    outer += p.T @ p
    count += len(p)
  mu = total / count
  cov = outer / count - np.outer(mu, mu)
  eigenvalues, eigenvectors = np.linalg.eigh(cov)
  scaled = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + eps * eigenvalues.mean())
  kernel = np.concatenate([scaled, -scaled], axis=1)
  bias = -mu @ kernel
  return tuple(kernel.astype(np.float32).ravel().tolist()), tuple(
      bias.astype(np.float32).ravel().tolist())


def apply(x: jax.Array, size: int, kernel: tuple[float, ...], bias: tuple[float, ...]
          ) -> jax.Array:
  """The whitened patches of x [N, H, W, C] (same H x W): [N, H, W, 2*size*size*C]."""
  p = patches(x, size, pad=True)
  k = jnp.asarray(kernel, x.dtype).reshape(p.shape[-1], -1)
  return p @ k + jnp.asarray(bias, x.dtype)


def apply_channels_first(x: jax.Array, size: int, kernel: tuple[float, ...],
                         bias: tuple[float, ...]) -> jax.Array:
  """apply(x, ...) laid out [2*size*size*C, H, W, N]: what the first convolution's weight
  gradient reads on the CPU path (resnet_cnn.conv3x3_cpu_given_transposed).

  Why not transpose apply()'s output: XLA:CPU's transpose of the whitened [256, 32, 32, 24]
  batch took ~28 ms of a ~285 ms `:cpu` step (`python -m bench.profile_step --preset cpu`).
  Here only the C-channel input is transposed, and the projection writes channels first.
  """
  p = patches(jnp.transpose(x, (1, 2, 0, 3)), size, pad=True, axes=(0, 1))  # [H, W, N, k*k*C]
  k = jnp.asarray(kernel, x.dtype).reshape(p.shape[-1], -1)
  return jnp.einsum("pq,hwnp->qhwn", k, p) + jnp.asarray(bias, x.dtype)[:, None, None, None]
