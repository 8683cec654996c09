"""The ensemble axis split across devices: D devices train D times the members in the same time.

Members never communicate, so the member axis is embarrassingly parallel. A 1-D `Mesh` with axis
'ensemble' holds the devices; member-stacked arrays (train states, hyper-parameters, keys) are
`NamedSharding(mesh, P('ensemble'))`, the dataset is replicated on every device. Each device runs
the single-device ensemble program (`ensemble.map_members`, any strategy) on its own E / D
members through `jax.shard_map`, so the per-device program is exactly the one-device program
(no collectives, no all-gathers) and results equal the unsharded run.

E not divisible by D: the member axis is padded inside the compiled function with copies of the
last member (at most D - 1 extra members of compute) and the copies are dropped from the
outputs, so any E works.

Multi-host (several processes, one per host): set config.train.distributed=True; the launcher
calls `initialize_distributed(config)` (`jax.distributed.initialize()`, before anything else
touches JAX) and every process runs the same program on the same data; the mesh spans all
processes' devices. Small per-member outputs (metrics, hyper-parameters, confusion matrices)
come back replicated so every host can read them; train states stay sharded.

Config (config.train): shard_ensemble (bool, default False), num_devices (0 = all devices),
distributed (bool, default False).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lwi_jax import ensemble

AXIS = "ensemble"


def initialize_distributed(config) -> None:
  """`jax.distributed.initialize()` when config.train.distributed; call before any JAX work."""
  if config.train.get("distributed", False):
    jax.distributed.initialize()


def make_mesh(num_devices: int = 0, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'ensemble' over the first `num_devices` devices (0 = all)."""
  devices = list(jax.devices() if devices is None else devices)
  if num_devices < 0 or num_devices > len(devices):
    raise ValueError(f"train.num_devices={num_devices} but {len(devices)} "
                     f"{jax.default_backend()} device(s) are visible (0 = all)")
  if num_devices:
    devices = devices[:num_devices]
  return Mesh(np.array(devices), (AXIS,))


def mesh_from_config(train_cfg) -> Mesh | None:
  """The ensemble mesh if config.train.shard_ensemble, else None (single-device path)."""
  if not train_cfg.get("shard_ensemble", False):
    return None
  return make_mesh(int(train_cfg.get("num_devices", 0)))


def member_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh | None):
  """Places host data (numpy or jax arrays) on every device of the mesh (multi-host safe)."""
  if mesh is None:
    return jax.tree.map(jax.device_put, tree)
  sharding = replicated(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def shard_members(tree, mesh: Mesh | None):
  """Places a member-stacked tree with its leading axis split over the mesh (E % D == 0)."""
  if mesh is None:
    return tree
  e = ensemble.num_members(tree)
  d = mesh.devices.size
  if e % d:
    return tree  # the sharded functions pad internally; see the module docstring
  return jax.device_put(tree, member_sharding(mesh))


def shard_ensemble_fn(fn: Callable, num_member_args: int, mesh: Mesh,
                      replicated_outputs: Sequence[int] = ()) -> Callable:
  """Runs the member-stacked function `fn` with its member axis split over `mesh`.

  fn(*member_args, *shared_args) -> tuple of member-stacked outputs (or one output), as built by
  `ensemble.map_members`. Returns a function with the same signature and results, to be jitted
  by the caller. Outputs whose index is in `replicated_outputs` come back replicated.
  """
  d = mesh.devices.size

  def sharded(*args):
    member_args, shared = args[:num_member_args], args[num_member_args:]
    e = ensemble.num_members(member_args)
    padded = ensemble.pad_members(member_args, d)
    padded = jax.lax.with_sharding_constraint(padded, member_sharding(mesh))
    in_specs = (P(AXIS),) * num_member_args + (P(),) * len(shared)
    out = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P(AXIS),
                        check_vma=False)(*padded, *shared)
    single = not isinstance(out, tuple)
    outs = (out,) if single else out
    outs = tuple(jax.tree.map(lambda x: x[:e], o) if e % d else o for o in outs)
    outs = tuple(jax.lax.with_sharding_constraint(o, replicated(mesh)) if i in replicated_outputs
                 else o for i, o in enumerate(outs))
    return outs[0] if single else outs

  return sharded
