"""BatchNorm + activation fused into two passes, for the image CNNs' CPU path (conv_impl='cpu').

flax's BatchNorm, then the activation (ReLU unless model.activation says otherwise), then
autodiff: XLA:CPU runs the bias add, the statistics, the normalisation, the activation and their
gradients as separate memory-bound passes over every activation (~20% of a CPU step once the
convolutions are fast). The fused version makes one statistics pass and one
normalise+activation pass forward, one reduction pass and one elementwise
pass backward, and folds the preceding convolution's bias into the batch mean (in training
BatchNorm subtracts it again exactly, so only the running mean sees it). Same variables
(scale, bias; batch_stats mean, var), same numbers as nn.BatchNorm + the activation (tests
check).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwi_jax.models import activations


def _moments(z: jax.Array):
  axes = tuple(range(z.ndim - 1))
  mean = jnp.mean(z, axes)
  var = jnp.maximum(0.0, jnp.mean(jnp.square(z), axes) - jnp.square(mean))  # flax's fast variance
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def bn_act_train(z: jax.Array, scale: jax.Array, beta: jax.Array, eps: jax.Array,
                 activation: str):
  """act(BatchNorm_train(z)) -> (y, batch mean, batch variance), over all but the last axis."""
  mean, var = _moments(z)
  y = activations.get(activation)((z - mean) * (jax.lax.rsqrt(var + eps) * scale) + beta)
  return y, mean, var


def _bn_act_fwd(z, scale, beta, eps, activation):
  out = bn_act_train(z, scale, beta, eps, activation)
  return out, (z, out[1], out[2], scale, beta, eps)


def _bn_act_bwd(activation, res, cts):
  z, mean, var, scale, beta, eps = res
  dy, dmean, dvar = cts
  axes = tuple(range(z.ndim - 1))
  count = z.size // z.shape[-1]
  rstd = jax.lax.rsqrt(var + eps)
  xhat = (z - mean) * rstd
  g = activations.gradient_times(activation, xhat * scale + beta, dy)
  dbeta = jnp.sum(g, axes)
  dscale = jnp.sum(g * xhat, axes)
  dz = (scale * rstd / count) * (count * g - dbeta - xhat * dscale)
  dz = dz + dmean / count + dvar * (2.0 / count) * (z - mean)  # the statistics' own cotangents
  return dz, dscale, dbeta, jnp.zeros_like(eps)


bn_act_train.defvjp(_bn_act_fwd, _bn_act_bwd)


class BatchNormAct(nn.Module):
  """act(nn.BatchNorm(momentum, epsilon)(z + conv_bias)) with the variables of nn.BatchNorm."""

  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  use_scale: bool = True  # False: no trained scale (airbench's frozen ones), like nn.BatchNorm
  activation: str = "relu"  # a name in activations.ACTIVATIONS (model.activation)

  @nn.compact
  def __call__(self, z: jax.Array, conv_bias: jax.Array) -> jax.Array:
    out_dtype = z.dtype  # bfloat16 under mixed precision: statistics in float32, output back
    z = z.astype(jnp.promote_types(z.dtype, jnp.float32))
    c = z.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), self.dtype))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), self.dtype))
    scale = (self.param("scale", nn.initializers.ones_init(), (c,), self.dtype)
             if self.use_scale else None)
    beta = self.param("bias", nn.initializers.zeros_init(), (c,), self.dtype)
    if scale is None:
      # Ones computed from beta, not a literal constant: with jnp.ones here the jitted gradient
      # of a whole CNN came out wrong (off by up to 0.8 in float64, eager and the XLA path
      # right; tests/test_conv_groups.py), a small two-layer net did not show it.
      scale = jax.lax.stop_gradient(beta) * 0 + 1
    if self.use_running_average:
      mul = jax.lax.rsqrt(ra_var.value + self.epsilon) * scale
      act = activations.get(self.activation)
      return act((z + conv_bias - ra_mean.value) * mul + beta).astype(out_dtype)
    y, mean, var = bn_act_train(z, scale, beta, jnp.asarray(self.epsilon, self.dtype),
                                self.activation)
    if not self.is_initializing():
      m = self.momentum
      ra_mean.value = m * ra_mean.value + (1.0 - m) * (mean + conv_bias)
      ra_var.value = m * ra_var.value + (1.0 - m) * var
    return y.astype(out_dtype)
