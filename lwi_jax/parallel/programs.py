"""The compiled ensemble programs: the core's per-member functions over E stacked members.

Each factory takes a pure per-member function of lwi_jax/train.py, maps it over the member axis
with an `ensemble.map_members` strategy, optionally splits that axis over a device mesh
(`sharding.shard_ensemble_fn`) and jits it with the model's compiler options. Factories are
cached on their (hashable) arguments, so every phase of a run reuses one compiled program.
"""

from __future__ import annotations

import functools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lwi_jax import models, train
from lwi_jax.models import resnet_cnn
from lwi_jax.parallel import ensemble, sharding


def _compile(member, num_member_args: int, strategy: str, chunk: int, mesh,
             replicated_outputs: tuple[int, ...], compiler_options: tuple, donate=()):
  """map_members -> (shard over `mesh`) -> jit: what every ensemble program is made of."""
  fn = ensemble.map_members(member, strategy, num_member_args=num_member_args, chunk=chunk)
  if mesh is not None:
    fn = sharding.shard_ensemble_fn(fn, num_member_args, mesh,
                                    replicated_outputs=replicated_outputs)
  return jax.jit(fn, donate_argnums=donate, compiler_options=dict(compiler_options) or None)


@functools.lru_cache(maxsize=None)
def ensemble_train_epoch_fn(batch_size: int, augment, strategy: str, chunk: int = 0,
                            mesh=None, compiler_options: tuple = (), on_step=None,
                            label_smoothing: float = 0.0):
  """Jitted (states[E], hparams[E], keys[E], epoch, inputs, labels) -> (states, hparams, metrics).

  Args:
    batch_size: examples per step (config.train.batch_size).
    augment: a name or an augment.AugmentSpec.
    strategy: an ensemble strategy (ensemble.STRATEGIES).
    chunk: members vmapped at once (0 = all, see ensemble.map_members).
    mesh: split the members over devices (lwi_jax.parallel.sharding; hparams and metrics come
      back replicated), or None for one device.
    compiler_options: (key, value) pairs the model needs (programs.compiler_options).
    on_step: host progress callback (see train.train_epoch; it fires once per point for every
      pass of the member program, ensemble.member_passes).
    label_smoothing: config.train.label_smoothing.

  Returns:
    The compiled program; states and hparams are donated.
  """
  member = functools.partial(train.train_epoch, batch_size=batch_size, augment=augment,
                             label_smoothing=label_smoothing, on_step=on_step)
  return _compile(member, 3, strategy, chunk, mesh, (1, 2), compiler_options, donate=(0, 1))


def _member_logits(state: train.TrainState, inputs: jax.Array, mask: jax.Array,
                   eval_flip: bool = False, eval_translate: int = 0) -> jax.Array:
  """Logits [S*B, C] (float32; 0 at padding) of one member over pre-batched eval data [S, B, ...]
  with mask [S, B]: the study's only evaluation program (confusions, predictions and the
  post-hoc arms are read from its output on the host: lwi_jax/study/trainer.py)."""

  def body(_, xs):
    x, m = xs
    logits = train.predict_logits(state, x, eval_flip, eval_translate).astype(jnp.float32)
    return None, jnp.where(m[:, None], logits, 0.0)

  out = jax.lax.scan(body, None, (inputs, mask))[1]
  return out.reshape(-1, out.shape[-1])


@functools.lru_cache(maxsize=None)
def ensemble_logits_fn(strategy: str, chunk: int = 0, mesh=None, compiler_options: tuple = (),
                       eval_flip: bool = False, eval_translate: int = 0):
  """Jitted (states[E], inputs, mask) -> logits [E, S*B, C] (replicated)."""
  member = functools.partial(_member_logits, eval_flip=eval_flip, eval_translate=eval_translate)
  return _compile(member, 1, strategy, chunk, mesh, (0,), compiler_options)


def ensemble_epoch_keys(seeds, epoch: int) -> jax.Array:
  """Keys [E] of one epoch: member i's key depends on (seeds[i], epoch) only (paired design)."""
  return jax.vmap(lambda s: train.epoch_key(s, epoch))(jnp.asarray(seeds, jnp.uint32))


# The init program runs once per phase, yet XLA:CPU at its default LLVM optimisation (level 2)
# spends 1-2.5 s compiling the small presets' per-parameter threefry draws; level 1 compiles
# them 3-5x faster and computes bitwise the same state (tests/test_init_program.py checks every
# model). Level 0 draws other bits. Programs that run many times keep the default level, where
# it buys speed (and level 0 computes other float64 gradients: BUILD_NOTES, twelfth session).
_INIT_OPTIONS_CPU = (("xla_backend_optimization_level", 1),)


def jit_init(fn, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)` for a function that only initialises: with the init options on
  the CPU backend (other backends keep their defaults). The backend is asked here, at the call,
  not at import: it must not start before jax.distributed.initialize."""
  options = dict(_INIT_OPTIONS_CPU) if jax.default_backend() == "cpu" else None
  return jax.jit(fn, compiler_options=options, **jit_kwargs)


@functools.lru_cache(maxsize=None)
def _init_program():
  return jit_init(train.create_train_state, static_argnums=(0, 1))


def init_member(model: nn.Module, tx, sample_inputs: jax.Array, key: jax.Array
                ) -> train.TrainState:
  """One member's initial state (train.create_train_state) through the one init program."""
  return _init_program()(model, tx, sample_inputs, key)


def init_ensemble(model: nn.Module, tx, sample_inputs: jax.Array, seeds, mesh=None
                  ) -> train.TrainState:
  """Stacked states [E, ...] for members with the given seeds (same seed -> same init).

  One compiled per-member init, reused for every seed, ensemble size and call: a jitted vmap
  built per call would recompile every time (tens of seconds on CPU per phase).
  With a `mesh` (lwi_jax.parallel.sharding) the member axis is split over its devices.
  """
  keys = [jax.random.fold_in(train.seed_key(s), 0) for s in np.asarray(seeds, np.uint32)]
  states = ensemble.stack([init_member(model, tx, sample_inputs, k) for k in keys])
  return sharding.shard_members(states, mesh)


def compiler_options(cfg) -> tuple:
  """XLA options for the programs that train / evaluate this model, as hashable (key, value)
  pairs for `jax.jit(..., compiler_options=dict(...))`: the CPU convolution path needs
  resnet_cnn.CPU_COMPILER_OPTIONS on the CPU backend (resnet_cnn explains why); everything
  else none."""
  if cfg.name not in models.IMAGE_CNNS or models.resolve_conv_impl(cfg.get("conv_impl", "auto")) != "cpu":
    return ()
  if jax.default_backend() != "cpu" or not _cpu_options_supported():
    return ()
  return tuple(sorted(resnet_cnn.CPU_COMPILER_OPTIONS.items()))


@functools.lru_cache(maxsize=None)
def _cpu_options_supported() -> bool:
  """The options are experimental XLA flags: a jaxlib without them gets a warning, not a crash."""
  try:
    jax.jit(lambda x: x + 1, compiler_options=resnet_cnn.CPU_COMPILER_OPTIONS)(jnp.zeros(()))
    return True
  except Exception as e:  # noqa: BLE001 -- XlaRuntimeError / ValueError, by jaxlib version
    warnings.warn(f"this jaxlib does not accept {sorted(resnet_cnn.CPU_COMPILER_OPTIONS)} ({e}); "
                  "the CPU convolutions run without them (correct, but several times slower)")
    return False
