"""The init program's XLA options (programs.jit_init): faster to compile, the same state.

On CPU the init program compiles at LLVM optimisation level 1 (programs.py says why). That is
only allowed because it changes no bit of what init computes; these tests check that on every
model, and that the comparison would see a change (level 0 draws other bits).
"""

import chex
import jax
import numpy as np
import optax
import pytest

from configs import cifar, names, tabular
from lwi_jax import models, train
from lwi_jax.parallel import programs

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU-only XLA options")


def _model_and_inputs(name: str):
  """The presets' models at test sizes; each has a different set of initializers."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
  if name in ("conv_groups", "resnet_cnn"):
    cfg = cifar.get_config("smoke").model  # conv_groups: whitening, identity init, no BN scale
    if name == "resnet_cnn":
      cfg.name, cfg.whiten_patch, cfg.identity_init, cfg.bn_scale = name, 0, False, True
    return models.create_model(cfg, 10, {}, images), images[:1]
  if name == "conv_lstm":
    cfg = names.get_config().model
    cfg.embed_dim, cfg.conv_features, cfg.lstm_hidden = 8, (8,), 8
    tokens = rng.integers(0, 20, (1, 12), dtype=np.int32)
    return models.create_model(cfg, 3, {"vocab_size": 20}), tokens
  cfg = tabular.get_config().model
  cfg.hidden_sizes, cfg.norm = (16, 16), "batch"
  return models.create_model(cfg, 3), rng.normal(size=(1, 7)).astype(np.float32)


def _init(options):
  return jax.jit(train.create_train_state, static_argnums=(0, 1), compiler_options=options)


@pytest.mark.parametrize("name", ["conv_groups", "resnet_cnn", "conv_lstm", "mlp"])
def test_init_program_is_bitwise_the_default_levels(name):
  model, inputs = _model_and_inputs(name)
  tx, key = optax.sgd(0.1, momentum=0.9), jax.random.key(3)
  fast = programs.init_member(model, tx, inputs, key)
  default = _init(None)(model, tx, inputs, key)
  chex.assert_trees_all_equal((fast.params, fast.batch_stats, fast.opt_state),
                              (default.params, default.batch_stats, default.opt_state))
  if name == "resnet_cnn":  # the comparison sees another level's bits
    other = _init({"xla_backend_optimization_level": 0})(model, tx, inputs, key)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(other.params),
                                                          jax.tree.leaves(default.params)))


def test_init_ensemble_compiles_its_init_with_the_options(monkeypatch):
  """The study's init (programs.init_ensemble) is built by jit_init with the CPU options."""
  seen = []
  real_jit = jax.jit

  def spy(fn, **kwargs):
    seen.append(kwargs.get("compiler_options"))
    return real_jit(fn, **kwargs)

  monkeypatch.setattr(programs.jax, "jit", spy)
  programs._init_program.cache_clear()  # pylint: disable=protected-access
  try:
    model, inputs = _model_and_inputs("mlp")
    states = programs.init_ensemble(model, optax.sgd(0.1), inputs, [0, 1])
  finally:
    programs._init_program.cache_clear()  # pylint: disable=protected-access
  assert seen == [{"xla_backend_optimization_level": 1}]
  chex.assert_tree_shape_prefix(states.params, (2,))
