"""Class-weighted cross-entropy and focal loss against numpy (and PyTorch where installed)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwi_jax import losses

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(12, 5)).astype(np.float32) * 3.0
LABELS = np.array([0, 1, 2, 3, 4, 0, 0, 2, 2, 4, 1, 3], np.int32)
WEIGHTS = np.array([0.5, 2.0, 1.0, 0.25, 1.25], np.float32)


def _np_log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_focal_per_example(logits, labels, gamma):
  log_p = _np_log_softmax(logits)[np.arange(len(labels)), labels]
  p = np.exp(log_p)
  return -((1.0 - p) ** gamma) * log_p


def _np_weighted_mean(per_example, labels, weights):
  wy = np.asarray(weights, np.float64)[labels]
  return float((wy * per_example).sum() / wy.sum())


# ------------------------------------------------------------------------------- cross-entropy


def test_weighted_ce_matches_numpy():
  expected = _np_weighted_mean(_np_focal_per_example(LOGITS, LABELS, 0.0), LABELS, WEIGHTS)
  got = losses.weighted_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS),
                                      jnp.asarray(WEIGHTS))
  chex.assert_shape(got, ())
  chex.assert_type(got, jnp.float32)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_weighted_ce_pytorch_formula_explicit_loop():
  # PyTorch cross_entropy(weight=w, reduction='mean'): sum_i w[y_i] l_i / sum_i w[y_i],
  # written as an explicit loop with math.log / exp (no vectorised helper shared with above).
  import math
  num = den = 0.0
  for z, y in zip(LOGITS.tolist(), LABELS.tolist()):
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    nll = lse - z[y]
    num += WEIGHTS[y] * nll
    den += WEIGHTS[y]
  got = losses.weighted_cross_entropy(LOGITS, LABELS, WEIGHTS)
  np.testing.assert_allclose(float(got), num / den, rtol=1e-5)
  # ...which is NOT the plain mean of w_y * l_i (the other common convention).
  plain = float(np.mean(WEIGHTS[LABELS] * _np_focal_per_example(LOGITS, LABELS, 0.0)))
  assert abs(plain - num / den) > 1e-3


def test_weighted_ce_matches_torch():
  torch = pytest.importorskip("torch")
  expected = torch.nn.functional.cross_entropy(
      torch.from_numpy(LOGITS.astype(np.float64)), torch.from_numpy(LABELS.astype(np.int64)),
      weight=torch.from_numpy(WEIGHTS.astype(np.float64))).item()
  got = losses.weighted_cross_entropy(LOGITS, LABELS, WEIGHTS)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_uniform_weights_give_plain_mean_ce_and_scale_invariance():
  import optax
  plain = optax.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS).mean()
  got = losses.weighted_cross_entropy(LOGITS, LABELS, jnp.ones(5))
  np.testing.assert_allclose(float(got), float(plain), rtol=1e-5)
  # Multiplying every weight by a constant does not change the loss (learning rates stay put).
  np.testing.assert_allclose(float(losses.weighted_cross_entropy(LOGITS, LABELS, WEIGHTS * 7.0)),
                             float(losses.weighted_cross_entropy(LOGITS, LABELS, WEIGHTS)),
                             rtol=1e-5)


def test_weighted_mean_mask_and_zero_weights():
  per_example = jnp.arange(1.0, 7.0)
  labels = jnp.array([0, 1, 0, 1, 2, 2])
  w = jnp.array([1.0, 3.0, 0.0])
  # classes 0,1 only (class 2 has weight 0): (1*1 + 3*2 + 1*3 + 3*4) / (1+3+1+3) = 22/8
  np.testing.assert_allclose(float(losses.weighted_mean(per_example, labels, w)), 22 / 8)
  mask = jnp.array([True, True, False, False, True, True])
  np.testing.assert_allclose(float(losses.weighted_mean(per_example, labels, w, mask)), 7 / 4)
  # Everything masked: 0, not NaN.
  out = losses.weighted_mean(per_example, labels, w, jnp.zeros(6, bool))
  assert float(out) == 0.0


# ---------------------------------------------------------------------------------- focal loss


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_matches_numpy(gamma):
  per_ex = losses.per_example_focal(jnp.asarray(LOGITS), jnp.asarray(LABELS), gamma)
  chex.assert_shape(per_ex, (12,))
  chex.assert_type(per_ex, jnp.float32)
  np.testing.assert_allclose(np.asarray(per_ex), _np_focal_per_example(LOGITS, LABELS, gamma),
                             rtol=1e-5, atol=1e-7)
  expected = _np_weighted_mean(_np_focal_per_example(LOGITS, LABELS, gamma), LABELS, WEIGHTS)
  got = losses.weighted_focal_loss(LOGITS, LABELS, WEIGHTS, gamma)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_focal_two_class_by_hand():
  # logits (0, log 3) -> p = (1/4, 3/4). Label 1: p_y = 3/4, focal gamma=2:
  # -(1/4)^2 * log(3/4) = 0.0625 * 0.28768... ; label 0: -(3/4)^2 log(1/4) = 0.5625 * 1.38629...
  logits = jnp.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]], jnp.float32)
  per_ex = losses.per_example_focal(logits, jnp.array([1, 0]), 2.0)
  np.testing.assert_allclose(np.asarray(per_ex),
                             [0.0625 * -np.log(0.75), 0.5625 * -np.log(0.25)], rtol=1e-5)


def test_focal_downweights_easy_examples():
  ce = losses.per_example_focal(LOGITS, LABELS, 0.0)
  fl = losses.per_example_focal(LOGITS, LABELS, 2.0)
  assert (np.asarray(fl) <= np.asarray(ce) + 1e-7).all()
  assert (np.asarray(fl) < np.asarray(ce)).any()


def test_focal_gamma0_equals_ce():
  ce = losses.weighted_cross_entropy(LOGITS, LABELS, WEIGHTS)
  fl = losses.weighted_focal_loss(LOGITS, LABELS, WEIGHTS, 0.0)
  np.testing.assert_allclose(float(fl), float(ce), rtol=1e-6)
  # Also with gamma as a traced array (how the trainer passes it per member).
  fl_traced = jax.jit(losses.weighted_focal_loss)(LOGITS, LABELS, WEIGHTS, jnp.float32(0.0))
  np.testing.assert_allclose(float(fl_traced), float(ce), rtol=1e-6)


_EXTREME_LABELS = jnp.array([0, 0, 0])
_EXTREME_WEIGHTS = jnp.array([1.0, 2.0, 0.5])


@jax.jit
def _extreme_value_and_grads(scale, gamma):
  # Correct and wrong extremely confident predictions: p_y rounds to exactly 1 or 0.
  logits = jnp.array([[1.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) * scale
  loss = lambda z, g: losses.weighted_focal_loss(z, _EXTREME_LABELS, _EXTREME_WEIGHTS, g)
  return jax.value_and_grad(loss, argnums=(0, 1))(logits, gamma)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("scale", [1e2, 1e4, 1e30])
def test_finite_gradients_for_extremely_confident_logits(gamma, scale):
  value, (g_logits, g_gamma) = _extreme_value_and_grads(jnp.float32(scale), jnp.float32(gamma))
  chex.assert_tree_all_finite((value, g_logits, g_gamma))
  # The wrongly classified example (row 2) must still push its label's logit up.
  assert float(g_logits[2, 0]) < 0
  # p_y of row 2 is ~0, so its loss is ~scale: the total is dominated by it and positive.
  assert float(value) > 0


def test_gamma0_gradient_equals_ce_gradient():
  import optax
  z = jnp.asarray(LOGITS)
  g_focal = jax.grad(lambda z: losses.weighted_focal_loss(z, LABELS, jnp.ones(5), 0.0))(z)
  g_ce = jax.grad(lambda z: optax.softmax_cross_entropy_with_integer_labels(z, LABELS).mean())(z)
  chex.assert_trees_all_close(g_focal, g_ce, rtol=1e-5, atol=1e-7)


def test_low_precision_logits_are_upcast():
  got = losses.per_example_focal(jnp.asarray(LOGITS, jnp.bfloat16), jnp.asarray(LABELS), 0.0)
  chex.assert_type(got, jnp.float32)


def test_shape_checks():
  with pytest.raises(AssertionError):
    losses.per_example_focal(jnp.zeros((4, 3)), jnp.zeros((5,), jnp.int32), 0.0)
  with pytest.raises(AssertionError):
    losses.per_example_focal(jnp.zeros((4,)), jnp.zeros((4,), jnp.int32), 0.0)
  with pytest.raises(AssertionError):
    losses.weighted_mean(jnp.zeros(4), jnp.zeros(4, jnp.int32), jnp.ones((2, 2)))


def test_per_class_mean():
  per_example = jnp.array([1.0, 2.0, 3.0, 10.0])
  labels = jnp.array([0, 0, 2, 2])
  means, counts = losses.per_class_mean(per_example, labels, 4)
  np.testing.assert_allclose(np.asarray(means), [1.5, 0.0, 6.5, 0.0])
  np.testing.assert_allclose(np.asarray(counts), [2, 0, 2, 0])
