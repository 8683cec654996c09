"""The MLP: config wiring, and the vmapped ensemble trains every member exactly as if alone."""

import importlib.util
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lwi_jax import models
from lwi_jax import train
from lwi_jax.models.mlp import MLP
from lwi_jax.parallel import ensemble

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "tabular.py")


def _cfg(**kw):
  cfg = ml_collections.ConfigDict(dict(name="mlp", hidden_sizes=(8, 8), activation="relu",
                                       dropout_rate=0.5, norm="batch"))
  cfg.update(kw)
  return cfg


def test_config_wiring_and_errors():
  model = models.create_model(_cfg(norm="layer", activation="gelu"), 4)
  assert isinstance(model, MLP) and model.norm == "layer" and model.activation == "gelu"
  x = jnp.ones((3, 5))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  assert variables["params"]["dense0"]["kernel"].shape == (5, 8)
  assert variables["params"]["head"]["kernel"].shape == (8, 4)
  bn = jax.eval_shape(lambda: models.create_model(_cfg(), 4).init(jax.random.key(0), x,
                                                                   train=False))
  assert "batch_stats" in bn  # carried by the trainer's TrainState
  for field, value in (("activation", "sigmoidal"), ("norm", "group"),
                       ("hidden_sizes", (8, 0)), ("dropout_rate", 1.0)):
    with pytest.raises(ValueError, match=f"model.{field}"):
      models.create_model(_cfg(**{field: value}), 4)


def _init(model, x, seed):
  """Random variables without compiling the initialisers (seconds each on XLA:CPU)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype), shapes)


def test_vmapped_ensemble_equals_each_member_alone():
  # BatchNorm (running statistics carried in batch_stats) and dropout (per-member keys): the
  # parts of the MLP whose state or randomness could leak between members.
  model = models.create_model(_cfg(norm="batch"), 3)
  rng = np.random.default_rng(0)
  batch = {"inputs": jnp.asarray(rng.normal(size=(12, 5)), jnp.float32),
           "labels": jnp.asarray(np.arange(12) % 3, jnp.int32)}
  tx = optax.adam(1e-2)
  seeds = [0, 1, 2]
  variables = [_init(model, batch["inputs"], s) for s in seeds]
  states = ensemble.stack([
      train.TrainState.create(apply_fn=model.apply, params=v["params"], tx=tx,
                              batch_stats=v["batch_stats"]) for v in variables])
  weights = jnp.asarray([[1.0, 1.0, 1.0], [0.5, 2.0, 1.0], [3.0, 0.2, 0.6]])
  keys = jax.random.split(jax.random.key(3), len(seeds))

  def step(state, w, key, batch):  # member arguments first, the shared batch last
    return train.train_step(state, batch, w, key)

  together = jax.jit(ensemble.map_members(step, "vmap", num_member_args=3))(
      states, weights, keys, batch)
  alone_fn = jax.jit(step)
  for i in range(len(seeds)):
    alone = alone_fn(ensemble.unstack(states, i), weights[i], keys[i], batch)
    chex.assert_trees_all_close(ensemble.unstack(together, i), alone, atol=1e-5, rtol=1e-5)
  chex.assert_tree_all_finite(together)
  p = together[0].params["head"]["kernel"]
  assert not np.allclose(p[0], p[1])  # the members really differ
  stats = together[0].batch_stats["norm0"]["mean"]
  assert not np.allclose(stats[0], variables[0]["batch_stats"]["norm0"]["mean"])  # updated


def test_bad_model_field_fails_before_data_is_loaded(tmp_path):
  from lwi_jax.study import study as study_lib
  spec = importlib.util.spec_from_file_location("tabular_config", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("csv")  # data.path is empty: loading data would fail otherwise
  config.model.activation = "swish!"
  config.workdir = str(tmp_path / "w")
  with pytest.raises(ValueError, match="model.activation='swish!'"):
    study_lib.Study(config)
