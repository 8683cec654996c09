"""The vmapped / sequential ensemble trainer equals training every member on its own.

Tiny shapes (ResidualCNN widths (4, 8, 8), dense 16, 16x16 images, batch 8) and module-level
caches keep compilation, which dominates on CPU, to a few programs shared by all tests.
SGD is used on purpose: Adam's first step is ~lr * sign(g), which turns float round-off in
gradients that are mathematically zero (conv biases before BatchNorm) into lr-sized differences
that say nothing about the ensemble machinery.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lwi_jax import losses
from lwi_jax import member
from lwi_jax import metrics
from lwi_jax import models
from lwi_jax import optim
from lwi_jax import train
from lwi_jax.models.resnet_cnn import ResidualCNN
from lwi_jax.parallel import ensemble
from lwi_jax.parallel import programs

NUM_CLASSES = 5
N, HW, BATCH = 32, 16, 8
SEEDS = (0, 0, 0, 1)  # members A, B, C share seed 0; D has seed 1
E = len(SEEDS)
AUGMENT = "flip_crop"
TOL = dict(rtol=1e-5, atol=1e-5)


def _model(conv_impl="matmul"):
  return ResidualCNN(num_classes=NUM_CLASSES, widths=(4, 8, 8), dense_width=16,
                     dropout_rate=0.5, conv_impl=conv_impl)


def _tx():
  cfg = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.05, schedule="constant",
                                       weight_decay=1e-4, momentum=0.9))
  return optim.make_optimizer(cfg, N // BATCH, 1)


@functools.lru_cache(maxsize=None)
def _setup():
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(0, 256, (N, HW, HW, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, NUM_CLASSES, N).astype(np.int32))
  model = _model()
  tx = _tx()
  states = programs.init_ensemble(model, tx, inputs[:1], SEEDS)
  w_a = np.ones(NUM_CLASSES, np.float32)
  w_b = np.array([4.0, 0.25, 0.25, 0.25, 0.25], np.float32)
  w_b = w_b / w_b.mean()
  weights = np.stack([w_a, w_a, w_b, w_a])
  gammas = np.array([0.0, 0.0, 0.0, 2.0], np.float32)
  hparams = ensemble.stack([member.MemberHParams.create(w, g) for w, g in zip(weights, gammas)])
  keys = programs.ensemble_epoch_keys(SEEDS, 0)
  batch = {"inputs": inputs[:BATCH], "labels": labels[:BATCH]}
  step_rngs = jax.vmap(lambda k: jax.random.fold_in(k, 7))(keys)
  return dict(inputs=inputs, labels=labels, model=model, tx=tx, states=states,
              weights=jnp.asarray(weights), gammas=jnp.asarray(gammas), hparams=hparams,
              keys=keys, batch=batch, step_rngs=step_rngs)


# ------------------------------------------------------------------------------- train_step

@functools.lru_cache(maxsize=None)
def _vmapped_step():
  s = _setup()
  step = jax.jit(jax.vmap(train.train_step, in_axes=(0, None, 0, 0, 0)))
  return step(s["states"], s["batch"], s["weights"], s["step_rngs"], s["gammas"])


def test_vmapped_train_step_shapes_and_progress():
  states, m = _vmapped_step()
  chex.assert_tree_shape_prefix((states.params, states.batch_stats, states.opt_state), (E,))
  chex.assert_shape(states.step, (E,))
  np.testing.assert_array_equal(np.asarray(states.step), np.ones(E))
  chex.assert_shape(m["loss"], (E,))
  chex.assert_tree_all_finite(m)
  # The step did something (comparing two no-ops would pass vacuously).
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                       _setup()["states"].params, states.params)
  assert max(jax.tree.leaves(moved)) > 1e-4


class TrainStepTest(chex.TestCase):
  """The vmapped ensemble step equals each member's step alone, jitted and eager."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmapped_train_step_equals_each_member_alone(self):
    s = _setup()
    states, m = _vmapped_step()
    step = self.variant(train.train_step)
    for i in range(E):
      new_state, new_m = step(ensemble.unstack(s["states"], i), s["batch"], s["weights"][i],
                              s["step_rngs"][i], s["gammas"][i])
      chex.assert_trees_all_close(new_state, ensemble.unstack(states, i), **TOL)
      chex.assert_trees_all_close(new_m, ensemble.unstack(m, i), **TOL)


# ------------------------------------------------------------------------------ train_epoch


def _member_epoch_fn():
  return functools.partial(train.train_epoch, batch_size=BATCH, augment=AUGMENT)


_jit_member_epoch = jax.jit(_member_epoch_fn())


@functools.lru_cache(maxsize=None)
def _ensemble_epoch(strategy):
  s = _setup()
  # The library's jitted map_members(train_epoch); it donates its state arguments: pass copies.
  fn = programs.ensemble_train_epoch_fn(BATCH, AUGMENT, strategy)
  states, hparams = jax.tree.map(jnp.copy, (s["states"], s["hparams"]))
  return fn(states, hparams, s["keys"], 0, s["inputs"], s["labels"])


@functools.lru_cache(maxsize=None)
def _single_epoch(i):
  s = _setup()
  return _jit_member_epoch(ensemble.unstack(s["states"], i), ensemble.unstack(s["hparams"], i),
                           s["keys"][i], 0, s["inputs"], s["labels"])


@pytest.mark.parametrize("strategy", ["vmap", "sequential"])
def test_ensemble_epoch_equals_each_member_alone(strategy):
  out = _ensemble_epoch(strategy)
  chex.assert_tree_shape_prefix(out, (E,))
  for i in range(E):
    chex.assert_trees_all_close(ensemble.unstack(out, i), _single_epoch(i), **TOL)


@pytest.mark.parametrize("strategy", ["vmap", "sequential"])
def test_same_seed_same_weights_identical_different_weights_diverge(strategy):
  states = _ensemble_epoch(strategy)[0]
  a, b, c, d = (ensemble.unstack(states.params, i) for i in range(E))
  chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-6)  # A and B: same seed, same weights

  def max_diff(x, y):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in
               zip(jax.tree.leaves(x), jax.tree.leaves(y)))

  assert max_diff(a, c) > 1e-3, "different class weights must give different members"
  assert max_diff(a, d) > 1e-3, "different seeds must give different members"


def test_epoch_keys_depend_on_seed_and_epoch_only():
  k = programs.ensemble_epoch_keys([0, 0, 1], 0)
  k_data = jax.random.key_data(k)
  np.testing.assert_array_equal(k_data[0], k_data[1])
  assert not np.array_equal(k_data[0], k_data[2])
  assert not np.array_equal(k_data[0], jax.random.key_data(programs.ensemble_epoch_keys([0], 1))[0])


# ------------------------------------------------------------------------------------- init


def test_init_same_seed_same_params_different_seed_different():
  states = _setup()["states"]
  chex.assert_tree_shape_prefix((states.params, states.batch_stats, states.opt_state), (E,))
  chex.assert_shape(states.step, (E,))
  members = [ensemble.unstack(states, i) for i in range(E)]
  chex.assert_trees_all_equal(members[0].params, members[1].params)
  chex.assert_trees_all_equal(members[0].params, members[2].params)
  kernels = [np.asarray(m.params["Conv3x3_0"]["kernel"]) for m in members]
  assert not np.allclose(kernels[0], kernels[3])
  # Another call (other ensemble size, other order) reproduces each seed's initialisation.
  again = programs.init_ensemble(_setup()["model"], _setup()["tx"], _setup()["inputs"][:1], [1, 0])
  chex.assert_trees_all_equal(ensemble.unstack(again, 0), members[3])
  chex.assert_trees_all_equal(ensemble.unstack(again, 1), members[0])


def test_state_shape_matches_single_member_shape():
  s = _setup()
  single = jax.eval_shape(lambda k: train.create_train_state(s["model"], s["tx"], s["inputs"][:1],
                                                             k), jax.random.key(0))
  jax.tree.map(lambda stacked, one: chex.assert_shape(stacked, (E,) + one.shape),
               s["states"].params, single.params)


# ------------------------------------------------------------------------- conv implementations


def test_conv_impl_xla_and_matmul_agree():
  s = _setup()
  st = ensemble.unstack(s["states"], 3)
  variables = {"params": st.params, "batch_stats": st.batch_stats}
  x, y = s["batch"]["inputs"], s["batch"]["labels"]
  rng = jax.random.key(3)

  def run(conv_impl):
    model = _model(conv_impl)

    def loss_fn(params):
      logits, upd = model.apply({"params": params, "batch_stats": st.batch_stats}, x, train=True,
                                rngs={"dropout": rng}, mutable=["batch_stats"])
      return losses.weighted_cross_entropy(logits, y, jnp.ones(NUM_CLASSES)), (logits, upd)

    eval_logits = model.apply(variables, x, train=False)
    (loss, (logits, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    return eval_logits, loss, logits, upd, grads

  # Full float32 precision: a GPU's default TF32 makes correct implementations differ by ~1e-3.
  with jax.default_matmul_precision("highest"):
    xla, mm = jax.jit(lambda: run("xla"))(), jax.jit(lambda: run("matmul"))()
  chex.assert_trees_all_close(xla, mm, rtol=1e-4, atol=1e-4)
  assert float(jnp.max(jnp.abs(xla[0]))) > 1e-3  # non-trivial logits


def test_conv3x3_matmul_equals_lax_conv():
  from lwi_jax.models import resnet_cnn
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(2, 7, 5, 3)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
  # Independent reference: direct loops over the 3x3 window of the zero-padded input.
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  ref = np.zeros((2, 7, 5, 4))
  for dy in range(3):
    for dx in range(3):
      ref += np.einsum("nhwc,co->nhwo", xp[:, dy:dy + 7, dx:dx + 5], np.asarray(k[dy, dx]))
  np.testing.assert_allclose(np.asarray(resnet_cnn.conv3x3_matmul(x, k)), ref, rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(resnet_cnn.conv3x3_xla(x, k)), ref, rtol=1e-4, atol=1e-4)


def test_max_pool_impls_agree_on_odd_sizes():
  from lwi_jax.models import resnet_cnn
  x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 5, 7, 3)), jnp.float32)
  chex.assert_trees_all_close(resnet_cnn.max_pool_2x2(x, "xla"),
                              resnet_cnn.max_pool_2x2(x, "matmul"))
  chex.assert_shape(resnet_cnn.max_pool_2x2(x, "matmul"), (2, 2, 3, 3))


# ------------------------------------------------------------------------------- evaluation


_jit_eval_apply = jax.jit(lambda st, x: st.apply_fn(
    {"params": st.params, "batch_stats": st.batch_stats}, x, train=False))


@pytest.mark.parametrize("strategy", ["vmap", "sequential"])
def test_ensemble_confusion_equals_per_member_argmax(strategy):
  s = _setup()
  inputs, labels = np.asarray(s["inputs"])[:13], np.asarray(s["labels"])[:13]
  batched = train.batch_for_eval(inputs, labels, 5)
  logits = programs.ensemble_logits_fn(strategy)(s["states"], batched[0], batched[2])
  chex.assert_shape(logits, (E, 15, NUM_CLASSES))  # 3 batches of 5, the last 2 rows padding
  for i in range(E):
    pred = np.asarray(jnp.argmax(_jit_eval_apply(ensemble.unstack(s["states"], i), inputs), -1))
    np.testing.assert_array_equal(np.argmax(np.asarray(logits[i])[:13], -1), pred)
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(expected, (labels, pred), 1)
    np.testing.assert_array_equal(metrics.confusion_counts(pred, labels, NUM_CLASSES), expected)


def test_batch_for_eval_pads_and_masks():
  x = np.arange(7 * 2, dtype=np.uint8).reshape(7, 2)
  y = np.arange(7, dtype=np.int32)
  xb, yb, mb = train.batch_for_eval(x, y, 3)
  assert xb.shape == (3, 3, 2) and yb.shape == (3, 3) and mb.shape == (3, 3)
  assert mb.sum() == 7 and mb.reshape(-1)[:7].all() and not mb.reshape(-1)[7:].any()
  np.testing.assert_array_equal(xb.reshape(-1, 2)[:7], x)
  np.testing.assert_array_equal(yb.reshape(-1)[:7], y)


# ------------------------------------------------------------------------------- config errors


def test_config_errors_name_the_field():
  assert ensemble.resolve_strategy("auto") == "vmap"
  with pytest.raises(ValueError, match="train.ensemble_strategy") as e:
    ensemble.resolve_strategy("pmap")
  assert "sequential" in str(e.value)
  with pytest.raises(ValueError, match="model.conv_impl") as e:
    models.resolve_conv_impl("cudnn")
  assert "matmul" in str(e.value)
  base = dict(name="adam", learning_rate=1e-3, schedule="constant", weight_decay=0.0,
              momentum=0.9)
  with pytest.raises(ValueError, match="optimizer.name"):
    optim.make_optimizer(ml_collections.ConfigDict({**base, "name": "rmsprop"}), 1, 1)
  with pytest.raises(ValueError, match="optimizer.schedule"):
    optim.make_optimizer(ml_collections.ConfigDict({**base, "schedule": "linear"}), 1, 1)


def test_batch_larger_than_data_is_an_error():
  s = _setup()
  with pytest.raises(ValueError, match="batch_size"):
    train.train_epoch(ensemble.unstack(s["states"], 0), ensemble.unstack(s["hparams"], 0),
                      s["keys"][0], 0, s["inputs"], s["labels"], batch_size=N + 1,
                      augment="none")
