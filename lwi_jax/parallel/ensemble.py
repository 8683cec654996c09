"""How the ensemble (leading member axis E) is executed. The member function never changes.

- "vmap": one batched program. Matrix products become batched matrix products and every
  elementwise op works on E members at once. Convolutions do NOT become grouped convolutions
  (slow on CPU): the CNN's convolution has its own batching rule that keeps one ungrouped
  convolution per member (models/resnet_cnn.py, `_direct_conv`).
- "sequential": `lax.map` over members inside the same compiled program: one member's program
  (and one member's activation memory) at a time.
- "unrolled": the member program written out once per member inside one compiled program, with
  no batching at all (batched matmuls are slower than separate ones for some shapes on
  XLA:CPU) and no per-member slicing of a loop; a runtime that overlaps independent ops can run
  members concurrently. Compile time grows with the members unrolled, so use it with `chunk`.
- "auto": "vmap" on every backend. On 2 CPU cores the three are within ~10% per member of each
  other (BUILD_NOTES.md, "Speed"). On one H200 (bench.run, 2026-12-04) vmap at 8 members cost
  0.17x a lone member's step per member for the ConvLSTM but 1.39x for the CNN, whose `xla`
  convolutions vmap turns into grouped ones; whether "sequential" is faster for a whole CNN
  study there is not measured (BUILD_NOTES.md, "The GPU check run").

`chunk` (config.train.ensemble_chunk, 0 = all E at once) is how many members are in flight
together: "vmap" and "unrolled" run `lax.map` over groups of `chunk` members (vmapped or
unrolled within a group), which bounds activation memory (and, for "unrolled", compile time).
E need not be a multiple of `chunk`: the last group is padded with copies of the last member and
the copies are dropped.

Across devices, `lwi_jax.sharding` splits the member axis over a device mesh and runs this
same per-device program on each device's members.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

STRATEGIES = ("auto", "vmap", "sequential", "unrolled")


def resolve_strategy(name: str) -> str:
  if name not in STRATEGIES:
    raise ValueError(f"train.ensemble_strategy={name!r} is not one of {list(STRATEGIES)}")
  return "vmap" if name == "auto" else name


def num_members(member_args) -> int:
  """E, the leading axis shared by every leaf of the member arguments."""
  sizes = {x.shape[0] for x in jax.tree.leaves(member_args)}
  if len(sizes) != 1:
    raise ValueError(f"member arguments disagree on the ensemble size E: {sorted(sizes)}")
  return sizes.pop()


def pad_members(tree, multiple: int):
  """Pads the member axis to a multiple of `multiple` with copies of the last member."""
  e = num_members(tree)
  pad = -e % multiple
  if pad == 0:
    return tree

  def pad_leaf(x):
    return jnp.concatenate([x] + [x[-1:]] * pad, axis=0)  # works for typed PRNG keys too

  return jax.tree.map(pad_leaf, tree)


def map_members(fn: Callable, strategy: str, num_member_args: int, chunk: int = 0) -> Callable:
  """Lifts fn(*member_args, *shared_args) to stacked member args (leading axis E).

  The first `num_member_args` arguments carry the member axis; the rest (the dataset, the epoch
  number) are shared by every member and are not copied per member.
  """
  strategy = resolve_strategy(strategy)
  if chunk < 0:
    raise ValueError(f"train.ensemble_chunk={chunk} must be >= 0 (0 = all members at once)")

  def vmapped(member_args, shared):
    in_axes = (0,) * len(member_args) + (None,) * len(shared)
    return jax.vmap(fn, in_axes=in_axes)(*member_args, *shared)

  def unrolled(member_args, shared):
    outs = [fn(*unstack(member_args, i), *shared) for i in range(num_members(member_args))]
    return stack(outs)

  group_fn = unrolled if strategy == "unrolled" else vmapped

  def lifted(*args):
    member_args, shared = tuple(args[:num_member_args]), tuple(args[num_member_args:])
    if strategy == "sequential":
      return jax.lax.map(lambda xs: fn(*xs, *shared), member_args)
    e = num_members(member_args)
    if not chunk or chunk >= e:
      return group_fn(member_args, shared)
    padded = pad_members(member_args, chunk)
    groups = jax.tree.map(lambda x: x.reshape((-1, chunk) + x.shape[1:]), padded)
    out = jax.lax.map(lambda xs: group_fn(xs, shared), groups)
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[:e], out)

  return lifted


def member_passes(strategy: str, chunk: int, e: int) -> int:
  """How often the member program's body runs per call for E members (host callbacks count).

  A vmapped group runs it once for all its members; "sequential" once per member; "unrolled"
  once per member, padded copies included.
  """
  strategy = resolve_strategy(strategy)
  if strategy == "sequential":
    return e
  groups = -(-e // chunk) if chunk and chunk < e else 1
  if strategy == "unrolled":
    return groups * (chunk if chunk and chunk < e else e)
  return groups


def stack(trees):
  """Stacks a list of identical pytrees along a new leading member axis."""
  return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *trees)


def unstack(tree, index: int):
  """Member `index` of a stacked pytree."""
  return jax.tree.map(lambda x: x[index], tree)
