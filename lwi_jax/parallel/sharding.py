"""The ensemble axis split across devices: D devices train D times the members in the same time.

Members never communicate, so the member axis is embarrassingly parallel. A 1-D `Mesh` with axis
'ensemble' holds the devices; member-stacked arrays (train states, hyper-parameters, keys) are
`NamedSharding(mesh, P('ensemble'))`, the dataset is replicated on every device. Each device runs
the single-device ensemble program (`ensemble.map_members`, any strategy) on its own E / D
members through `jax.shard_map`: no collectives, no all-gathers, but not always the same
arithmetic as the unsharded run. With train.ensemble_strategy='sequential' every member runs
through the same one-member program wherever it sits, and the results are bitwise those of one
device. With 'vmap' (the default) a member is batched with its device-mates, and XLA accumulates
a batch of E/D members' products in another order than a batch of E: round-off (parameters
within ~1e-7 after 2 epochs in tests/test_sharding.py), which can flip a few validation examples
and so move the class weights: issue #25 measured on names (3 seeds, 3 epochs, 2 processes) 6-7
of 9 members identical and the others differing in up to 0.9% of test predictions; repeated
runs on the same layout are bitwise identical to each other.

E not divisible by D: the member axis is padded inside the compiled function with copies of the
last member (at most D - 1 extra members of compute) and the copies are dropped from the
outputs, so any E works. An E-member output cannot be split evenly, though, so XLA returns it
replicated: every device would hold all E members' states between epochs. The trainer therefore
pads a phase's members to a multiple of D once, for the whole phase (`pad_to_mesh`), and drops
the copies from what it reports (experiment.Trainer.fit / evaluate).

Several processes (one per host, or several on one host): config.train.distributed=True. The
launcher calls `initialize_distributed(config)` before anything else touches JAX; it starts JAX's
distributed runtime (`jax.distributed.initialize`) with the coordinator address / number of
processes / process id from config.train (else $JAX_COORDINATOR_ADDRESS and JAX's auto-detection:
SLURM, Open MPI, Cloud TPU, Kubernetes). Every process runs the same program on the same data; the
mesh spans every process's devices, the member axis is split across all of them, and each process
places only the shards of its own devices (`jax.make_array_from_callback`, or `device_put` of a
value every process holds identically). Small per-member outputs (metrics, hyper-parameters,
confusion matrices) come back replicated so every process can read them; train states stay
sharded (padded to a multiple of D) and orbax checkpoints them shard by shard. Only the primary process
(`is_primary()`) writes files; the workdir must be on a filesystem every process sees. A dead
process makes the others fail in their next collective, or after
`train.heartbeat_timeout_seconds` when JAX's coordination service notices it. A process whose
peers never connect stops after `train.init_timeout_seconds` with one line naming them
(`initialize_distributed`), before JAX's own timeout would abort the process.

Config (config.train): shard_ensemble (bool, default False), num_devices (0 = all devices),
distributed (bool, default False; implies shard_ensemble), coordinator_address ('' = auto),
num_processes (0 = auto), process_id (-1 = auto), heartbeat_timeout_seconds,
init_timeout_seconds. The last five only say how to reach the other processes, so they are not
part of a phase's fingerprint (`LAUNCH_FIELDS`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lwi_jax.parallel import ensemble

AXIS = "ensemble"


# How this process reaches the others; they differ between processes of one run (process_id),
# so the phase fingerprints leave them out (experiment.fingerprint).
LAUNCH_FIELDS = ("coordinator_address", "num_processes", "process_id", "heartbeat_timeout_seconds",
                 "init_timeout_seconds")


def initialize_distributed(config) -> bool:
  """Starts JAX's distributed runtime when config.train.distributed; call before any JAX work.

  Unset fields ('' / 0 / -1) are left to JAX: $JAX_COORDINATOR_ADDRESS, then cluster
  auto-detection (SLURM, Open MPI, Cloud TPU pods, Kubernetes). On CPU the cross-process
  collectives are gloo (this JAX's default `jax_cpu_collectives_implementation`). Returns whether
  the runtime was started.
  """
  cfg = config.train
  if not cfg.get("distributed", False):
    return False
  kwargs = check_launch(cfg)
  wait = int(cfg.get("init_timeout_seconds", 300))
  failure = []

  def connect():
    try:
      jax.distributed.initialize(**kwargs, initialization_timeout=wait,
                                 heartbeat_timeout_seconds=int(
                                     cfg.get("heartbeat_timeout_seconds", 60)))
    except BaseException as e:  # pylint: disable=broad-except
      failure.append(e)

  thread = threading.Thread(target=connect, daemon=True, name="jax-distributed-initialize")
  thread.start()
  # JAX's own timeout ends the process with SIGABRT and a C++ stack: this one, which names the
  # missing processes, fires a little earlier.
  thread.join(wait - min(INIT_MARGIN_SECONDS, wait / 4))
  if thread.is_alive():
    me, n = kwargs.get("process_id"), kwargs.get("num_processes")
    others = ([i for i in range(n) if i != me] if me is not None and n else "the others")
    raise PeerTimeout(
        f"process {me if me is not None else '?'} of {n or '?'}: process(es) {others} did not "
        f"join at {kwargs.get('coordinator_address', 'the auto-detected coordinator')} within "
        f"{wait:g} s (train.init_timeout_seconds): start the same command in every process "
        "(each with its own train.process_id), or raise train.init_timeout_seconds")
  if failure:
    raise failure[0]
  return True


INIT_MARGIN_SECONDS = 5


class PeerTimeout(ValueError):
  """Not every process of a distributed run connected in time (a launch problem, not a bug)."""


def check_launch(cfg) -> dict:
  """jax.distributed.initialize's arguments from config.train; ValueError naming a bad field."""
  kwargs = {}
  address = str(cfg.get("coordinator_address", ""))
  if address:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise ValueError(f"train.coordinator_address={address!r} must be host:port (e.g. "
                       "'10.0.0.1:1234'), the address and a free port of process 0")
    kwargs["coordinator_address"] = address
  n, me = int(cfg.get("num_processes", 0)), int(cfg.get("process_id", -1))
  if n < 0 or me < -1:
    raise ValueError(f"train.num_processes={n} / train.process_id={me}: the number of processes "
                     "is >= 1 (0 = auto) and a process id >= 0 (-1 = auto)")
  if n > 0 and me >= n:
    raise ValueError(f"train.process_id={me} is out of range for train.num_processes={n}: "
                     f"process ids are 0 .. {n - 1}")
  if n > 0:
    kwargs["num_processes"] = n
  if me >= 0:
    kwargs["process_id"] = me
  return kwargs


def process_index() -> int:
  """This process's index among the processes of the run (0 when there is only one)."""
  return jax.process_index()


def is_primary() -> bool:
  """True in the one process that writes files (results, reports, plots, TensorBoard, locks)."""
  return process_index() == 0


@contextlib.contextmanager
def explain_peer_failure() -> Iterator[None]:
  """Says what a failed cross-process operation most likely means, and how to resume.

  When a process of a distributed run dies, the others fail in their next collective with a
  transport error (e.g. gloo's "Connection reset by peer") or are stopped by JAX's coordination
  service after train.heartbeat_timeout_seconds; neither names the cure.
  """
  try:
    yield
  except jax.errors.JaxRuntimeError as err:
    if jax.process_count() == 1:
      raise
    raise RuntimeError(
        f"process {jax.process_index()} of {jax.process_count()}: an operation across the "
        f"processes of this distributed run failed, most likely because another process died "
        f"(see its log). Rerun the same command in every process to resume from the last "
        f"checkpoint. Cause: {str(err).splitlines()[0]}") from err


def primary_decides(flag: bool) -> bool:
  """Process 0's `flag` in every process, so that all take the same branch (e.g. reuse a phase).

  With several processes this is a collective: every process must call it at the same point.
  """
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def make_mesh(num_devices: int = 0, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'ensemble' over the first `num_devices` devices (0 = all)."""
  devices = list(jax.devices() if devices is None else devices)
  if num_devices < 0 or num_devices > len(devices):
    raise ValueError(f"train.num_devices={num_devices} but {len(devices)} "
                     f"{jax.default_backend()} device(s) are visible (0 = all)")
  if jax.process_count() > 1 and num_devices not in (0, len(devices)):
    # A prefix of the global device list would leave some processes without a device.
    raise ValueError(f"train.num_devices={num_devices}: with {jax.process_count()} processes "
                     f"the mesh must span all {len(devices)} devices (set 0)")
  if num_devices:
    devices = devices[:num_devices]
  return Mesh(np.array(devices), (AXIS,))


def mesh_from_config(train_cfg) -> Mesh | None:
  """The ensemble mesh if config.train.shard_ensemble or .distributed, else None (one device)."""
  if not (train_cfg.get("shard_ensemble", False) or train_cfg.get("distributed", False)):
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


def pad_to_mesh(members, mesh: Mesh | None):
  """A member list or member-stacked tree padded to a multiple of the mesh's device count.

  Padding members are copies of the last one. A phase padded from the start keeps its states
  split evenly over the devices between epochs (see the module docstring).
  """
  if mesh is None:
    return members
  d = mesh.devices.size
  if isinstance(members, list):
    return members + members[-1:] * (-len(members) % d)
  return ensemble.pad_members(members, d)


def shard_members(tree, mesh: Mesh | None):
  """Places a member-stacked tree with its leading axis split over the mesh (E % D == 0).

  The tree must be the same in every process (it is: members are initialised from their seeds).
  E not divisible by D: left as it is in one process (the sharded functions pad internally, see
  the module docstring); replicated over the mesh with several processes, where every input of
  a multi-process program must be a global array.
  """
  if mesh is None:
    return tree
  e = ensemble.num_members(tree)
  d = mesh.devices.size
  if e % d == 0:
    return jax.device_put(tree, member_sharding(mesh))
  return replicate(tree, mesh) if jax.process_count() > 1 else tree


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
