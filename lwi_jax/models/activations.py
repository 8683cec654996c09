"""The activations a config names (model.activation), for the MLP and the image CNNs.

One table, so `model.activation='gelu'` means the same function in every network (flax's
`nn.gelu`: the tanh approximation, as PyTorch's `gelu(approximate='tanh')`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu, "tanh": jnp.tanh, "silu": nn.silu,
               "elu": nn.elu}


def get(name: str):
  """The activation called `name`; a clear error naming the field and the choices otherwise."""
  if name not in ACTIVATIONS:
    raise ValueError(f"model.activation={name!r} is not one of {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def gradient_times(name: str, u: jax.Array, dy: jax.Array) -> jax.Array:
  """dy * f'(u), elementwise: the activation's part of a hand-written backward pass.

  ReLU keeps its own form (`dy` where u > 0, 0 at 0, as jax.nn.relu's derivative), so the fused
  ReLU path computes what it always has; any other activation is its forward-mode derivative.
  """
  if name == "relu":
    return jnp.where(u > 0, dy, 0.0)
  return jax.jvp(get(name), (u,), (dy,))[1]
