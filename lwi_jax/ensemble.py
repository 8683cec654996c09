"""How the ensemble (leading member axis E) is executed. The member function never changes.

- "vmap": one batched program; best where batched convolutions are fast (GPU/TPU) and for
  matmul-only models (the ConvLSTM, the matmul CNN on CPU).
- "sequential": `lax.map` over members inside the same compiled program; keeps every
  convolution ungrouped, which XLA:CPU needs for `lax.conv` (vmap makes them grouped convs).
- "auto": "vmap" (every model here is matmul-based on CPU; see models.resolve_conv_impl).
"""

from __future__ import annotations

from typing import Callable

import jax

STRATEGIES = ("auto", "vmap", "sequential")


def resolve_strategy(name: str) -> str:
  if name not in STRATEGIES:
    raise ValueError(f"train.ensemble_strategy={name!r} is not one of {list(STRATEGIES)}")
  return "vmap" if name == "auto" else name


def map_members(fn: Callable, strategy: str, num_member_args: int) -> Callable:
  """Lifts fn(*member_args, *shared_args) to stacked member args (leading axis E).

  The first `num_member_args` arguments carry the member axis; the rest (the dataset) are
  shared by every member and are not copied per member.
  """
  strategy = resolve_strategy(strategy)
  if strategy == "vmap":
    def lifted(*args):
      in_axes = (0,) * num_member_args + (None,) * (len(args) - num_member_args)
      return jax.vmap(fn, in_axes=in_axes)(*args)
    return lifted

  def lifted_sequential(*args):
    member_args, shared = args[:num_member_args], args[num_member_args:]
    return jax.lax.map(lambda xs: fn(*xs, *shared), member_args)
  return lifted_sequential


def stack(trees):
  """Stacks a list of identical pytrees along a new leading member axis."""
  return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *trees)


def unstack(tree, index: int):
  """Member `index` of a stacked pytree."""
  return jax.tree.map(lambda x: x[index], tree)
