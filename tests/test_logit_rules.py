"""Logit-space rules (issue #22): the loss with offsets against float64 numpy, offsets 0 as an
exact no-op, logit_tpr's offsets, and the online EG update against a numpy reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwi_jax import losses, train
from lwi_jax.member import MemberHParams
from lwi_jax.models.mlp import MLP
from lwi_jax.rules import members, weighting


def _numpy_loss_and_grad(logits, labels, weights, offsets):
  """Σ_i w_{y_i} CE(z_i + b)_{y_i} / Σ_i w_{y_i} and its gradient in the logits, float64."""
  z = logits.astype(np.float64) + offsets.astype(np.float64)[None]
  log_p = z - z.max(1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
  w = weights.astype(np.float64)[labels]
  idx = np.arange(len(labels))
  loss = np.sum(w * -log_p[idx, labels]) / w.sum()
  grad = np.exp(log_p)
  grad[idx, labels] -= 1.0
  return loss, grad * w[:, None] / w.sum()


def test_logit_space_loss_and_gradient_equal_a_float64_computation():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(12, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, 12).astype(np.int32)
  weights = rng.uniform(0.3, 2.0, 5).astype(np.float32)
  offsets = rng.normal(size=5).astype(np.float32)
  fn = lambda z: losses.member_loss(z, jnp.asarray(labels), jnp.asarray(weights),
                                    jnp.asarray(offsets))[0]
  loss, grad = jax.value_and_grad(fn)(jnp.asarray(logits))
  want_loss, want_grad = _numpy_loss_and_grad(logits, labels, weights, offsets)
  np.testing.assert_allclose(float(loss), want_loss, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-5, atol=1e-7)
  # the offsets move the loss: a test that cannot pass with them ignored
  assert abs(want_loss - _numpy_loss_and_grad(logits, labels, weights, 0 * offsets)[0]) > 1e-2


def _tiny_mlp(num_classes=3, norm="none"):
  model = MLP(num_classes=num_classes, hidden_sizes=(8,), norm=norm)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(40, 4)), jnp.float32)
  y = jnp.asarray(np.arange(40) % num_classes, jnp.int32)
  state = train.create_train_state(model, optax.adam(1e-2), x[:1], jax.random.key(0))
  return state, x, y


def test_zero_offsets_are_bitwise_the_plain_loss_and_step():
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(9, 4)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 4, 9), jnp.int32)
  w = jnp.asarray(rng.uniform(0.5, 2, 4), jnp.float32)
  plain = lambda z: losses.weighted_mean(losses.per_example_focal(z, labels, 0.0), labels, w)
  zero = lambda z: losses.member_loss(z, labels, w, jnp.zeros(4))[0]
  np.testing.assert_array_equal(jax.value_and_grad(plain)(logits)[0],
                                jax.value_and_grad(zero)(logits)[0])
  np.testing.assert_array_equal(jax.grad(plain)(logits), jax.grad(zero)(logits))
  state, x, y = _tiny_mlp()
  batch = {"inputs": x[:16], "labels": y[:16]}
  step = jax.jit(train.train_step)
  a, ma = step(state, batch, jnp.ones(3), jax.random.key(3))
  b, mb = step(state, batch, jnp.ones(3), jax.random.key(3), 0.0, 0.0, jnp.zeros(3))
  chex.assert_trees_all_equal(a.params, b.params)
  chex.assert_trees_all_equal(ma, mb)


def test_logit_tpr_offsets_and_optional_weights():
  s = np.array([0.9, 0.5, 0.0], np.float32)  # 0 is clipped to SCORE_FLOOR
  counts = np.array([10, 10, 10])
  hp = members.parse_rule("logit_tpr:gamma=2").member_hparams(s, counts, 4)
  clipped = np.clip(s.astype(np.float64), weighting.SCORE_FLOOR, 1 - weighting.SCORE_FLOOR)
  np.testing.assert_allclose(hp.logit_offsets, 2 * np.log(clipped / clipped.mean()), rtol=1e-5)
  np.testing.assert_array_equal(hp.class_weights, np.ones(3))
  both = members.parse_rule("logit_tpr:gamma=1,weight=1").member_hparams(s, counts, 4)
  np.testing.assert_allclose(both.class_weights,
                             weighting.compute_weights("inverse_tpr", s, counts), rtol=1e-6)
  online = members.parse_rule("online_eg:eta=0.3,every=4").member_hparams(s, counts, 4)
  assert float(online.online_eta) == pytest.approx(0.3) and int(online.online_every) == 4
  np.testing.assert_array_equal(online.logit_offsets, np.zeros(3))


def _numpy_eg(offsets, fnr, present, eta):
  """The paper's step λ ← λ·exp(η·FNR) on λ = exp(-b), float64, with mean log λ = 0."""
  lam = np.exp(-offsets.astype(np.float64)) * np.exp(np.where(present, eta * fnr, 0.0))
  log_lam = np.log(lam)
  return -(log_lam - log_lam.mean())


def test_online_eg_update_equals_numpy_step_by_step():
  rng = np.random.default_rng(4)
  b_jax = jnp.zeros(4)
  b_np = np.zeros(4)
  for _ in range(6):
    fnr = rng.uniform(0, 1, 4)
    present = rng.uniform(size=4) > 0.2
    b_jax = train.online_eg_update(b_jax, jnp.asarray(fnr, jnp.float32), jnp.asarray(present),
                                   jnp.float32(0.7))
    b_np = _numpy_eg(b_np, fnr, present, 0.7)
    np.testing.assert_allclose(np.asarray(b_jax), b_np, rtol=1e-5, atol=1e-6)
  assert np.ptp(b_np) > 0.1
  np.testing.assert_array_equal(train.online_eg_update(b_jax, jnp.ones(4), jnp.ones(4, bool),
                                                       jnp.float32(0.0)), b_jax)


def test_online_member_in_train_epoch_follows_the_numpy_reference(monkeypatch):
  """The epoch's online updates, replayed with the pure pieces and the numpy step: the same
  validation batches (fold_in(step key, 1)), every `every`-th step of the run, nowhere else."""
  state, x, y = _tiny_mlp()
  vx, vy = x[:30] + 0.1, y[:30]
  hp = MemberHParams.uniform(3, online_eta=0.5, online_every=3)
  key, epoch, batch = train.epoch_key(0, 1), 1, 8
  out_state, out_hp, _ = jax.jit(lambda s, h: train.train_epoch(
      s, h, key, epoch, x, y, vx, vy, batch_size=batch, augment="none"))(state, hp)
  # replay
  steps = 40 // batch
  k_order, k_steps = jax.random.split(key)
  order = train.epoch_order(hp, k_order, y, steps, batch)
  b, st, updates = np.zeros(3), state, 0
  step, predict = jax.jit(train.train_step), jax.jit(train.predict_logits)
  for i, step_key in enumerate(jax.random.split(k_steps, steps)):
    _, k_drop = jax.random.split(step_key)
    st, _ = step(st, {"inputs": x[order[i]], "labels": y[order[i]]}, jnp.ones(3),
                             k_drop, 0.0, 0.0, jnp.asarray(b, jnp.float32))
    if (epoch * steps + i + 1) % 3 == 0:
      idx = np.asarray(jax.random.permutation(jax.random.fold_in(step_key, 1), 30))[:batch]
      pred = np.asarray(predict(st, vx[idx])).argmax(1)
      truth = np.asarray(vy)[idx]
      counts = np.bincount(truth, minlength=3)
      fnr = 1 - np.bincount(truth[pred == truth], minlength=3) / np.maximum(counts, 1)
      b = _numpy_eg(b, fnr, counts > 0, 0.5)
      updates += 1
  assert updates == 2  # steps 6 and 9 of the run (epoch 1 of 5-step epochs)
  np.testing.assert_allclose(np.asarray(out_hp.logit_offsets), b, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(out_state.params, st.params, rtol=1e-4, atol=1e-5)


def test_a_non_online_member_is_unchanged_by_the_validation_inputs():
  state, x, y = _tiny_mlp()
  hp = MemberHParams.uniform(3)
  run = jax.jit(lambda s, h, *v: train.train_epoch(s, h, train.epoch_key(0, 0), 0, x, y, *v,
                                                   batch_size=8, augment="none"))
  a = run(state, hp)
  b = run(state, hp, x[:30], y[:30])
  chex.assert_trees_all_equal(a[0].params, b[0].params)
  np.testing.assert_array_equal(b[1].logit_offsets, np.zeros(3))


@pytest.mark.parametrize("text,field", [("logit_tpr:gamma=-1", "logit_tpr.gamma"),
                                        ("logit_tpr:weight=-0.5", "logit_tpr.weight"),
                                        ("online_eg:eta=-0.1", "online_eg.eta"),
                                        ("online_eg:every=0", "online_eg.every"),
                                        ("online_eg:every=2.5", "online_eg.every"),
                                        ("inverse_tpr:retrain=all", "retrain")])
def test_bad_values_are_refused_in_one_line_naming_the_field(text, field):
  with pytest.raises(ValueError) as e:
    members.parse_members([text], [0])
  assert field in str(e.value) and "\n" not in str(e.value)
