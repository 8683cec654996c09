"""The ConvLSTM: padding is invisible, the matmul conv is a convolution, and the vmapped ensemble
trains every member exactly as if it were alone."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lwi_jax import models
from lwi_jax import train
from lwi_jax.data import text_encoding
from lwi_jax.models.conv_lstm import ConvLSTM, conv1d_same
from lwi_jax.parallel import ensemble

NAMES = ["José Müller", "bo li", "alexandra papadopoulou", "o'neil-smith"]


def _model(**kw):
  """Tiny sizes: these tests check wiring and exactness, and compile time dominates them."""
  cfg = ml_collections.ConfigDict(dict(name="conv_lstm", embed_dim=4, conv_features=(6, 6),
                                       kernel_size=3, lstm_hidden=8, dropout_rate=0.5))
  cfg.update(kw)
  return models.create_model(cfg, 5, text_encoding.encoding_info(32))


def _init(model, x, seed=0):
  """Random parameters without compiling the model's initialisers.

  On XLA:CPU every random initialiser compiles for about a second; numpy draws with the
  shapes from `eval_shape` test the same code in a fraction of the time.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype), shapes)


def test_logits_shape_and_no_batch_stats():
  model = _model()
  x = jnp.asarray(text_encoding.encode(NAMES, 24).ids)
  variables = _init(model, x)
  assert set(variables) == {"params"}  # nothing for the trainer's batch_stats to carry
  # Called exactly as train.train_step calls it.
  logits, updates = jax.jit(lambda v, x, k: model.apply(
      v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"]))(
          variables, x, jax.random.key(1))
  chex.assert_shape(logits, (len(NAMES), 5))
  assert not updates.get("batch_stats")


@pytest.mark.parametrize("kernel_size", [3, 4])
def test_padding_to_another_length_does_not_change_the_logits(kernel_size):
  # Two conv layers: the second must not see the first's outputs at pad positions. An even
  # kernel pads asymmetrically, the case most likely to leak.
  model = _model(kernel_size=kernel_size)
  # The last row is all padding, as in the padded tail of an eval batch: it must stay finite.
  short = jnp.asarray(text_encoding.encode(NAMES + [""], 22).ids)
  long = jnp.asarray(text_encoding.encode(NAMES + [""], 40).ids)
  np.testing.assert_array_equal(np.asarray(long[:, :22]), np.asarray(short))
  variables = _init(model, short)
  # Evaluation mode: dropout sits after the LSTM and its mask has no time axis, so training
  # mode adds nothing here but compile time.
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  logits = apply(variables, short)
  chex.assert_tree_all_finite(logits)
  chex.assert_trees_all_close(logits, apply(variables, long), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_matmul_conv_is_a_same_convolution(k):
  rng = np.random.default_rng(k)
  x = jnp.asarray(rng.normal(size=(2, 9, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, 5, 7)), jnp.float32)
  ref = jax.lax.conv_general_dilated(x, kernel, (1,), [((k - 1) // 2, k // 2)],
                                     dimension_numbers=("NWC", "WIO", "NWC"))
  chex.assert_trees_all_close(conv1d_same(x, kernel), ref, atol=1e-5, rtol=1e-5)


def test_vmapped_ensemble_equals_each_member_alone():
  model = _model(conv_features=(6,))
  # an all-padding row must not poison the grads
  ids = text_encoding.encode(NAMES * 2 + [""], 16).ids
  batch = {"inputs": jnp.asarray(ids), "labels": jnp.asarray(np.arange(9) % 5, jnp.int32)}
  seeds = [0, 1, 2]
  tx, apply_fn = optax.adam(1e-2), model.apply
  states = ensemble.stack([
      train.TrainState.create(apply_fn=apply_fn, params=_init(model, batch["inputs"], s)["params"],
                              tx=tx, batch_stats={}) for s in seeds])
  weights = jnp.asarray([[1.0] * 5, [0.5, 2.0, 1.0, 1.0, 0.5], [3.0, 0.2, 0.6, 0.6, 0.6]])
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
  # The members really differ (seeds, weights, dropout keys), so the check has teeth.
  p = together[0].params["head"]["kernel"]
  assert not np.allclose(p[0], p[1])


def test_model_needs_the_vocabulary_from_a_text_source():
  cfg = ml_collections.ConfigDict(dict(name="conv_lstm", embed_dim=8, conv_features=(8,),
                                       kernel_size=3, lstm_hidden=8, dropout_rate=0.0))
  with pytest.raises(ValueError, match=r"data.info\['vocab_size'\]"):
    models.create_model(cfg, 3, {})
  assert isinstance(models.create_model(cfg, 3, {"vocab_size": 43}), ConvLSTM)
