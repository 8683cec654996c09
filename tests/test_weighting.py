"""Weighting rules against hand-computed numpy values, floors, validation errors, jit."""

import chex
import jax
import numpy as np
import pytest

from lwi_jax.rules import weighting

SCORES = np.array([0.5, 0.8, 0.2, 0.9], np.float32)
COUNTS = np.array([100, 400, 50, 1000], np.int64)
ALL_RULES = ("uniform", "inverse_tpr", "class_difficulty", "effective_number",
             "inverse_frequency")


def _mean1(w):
  w = np.asarray(w, np.float64)
  return w / w.mean()


# ----------------------------------------------------------------------------- rule values


def test_uniform_is_all_ones():
  w = weighting.compute_weights("uniform", SCORES, COUNTS)
  np.testing.assert_array_equal(np.asarray(w), np.ones(4, np.float32))


def test_inverse_tpr_gamma1_by_hand():
  # mean(s) = (0.5 + 0.8 + 0.2 + 0.9) / 4 = 0.6; raw = 0.6 / s = [1.2, 0.75, 3.0, 2/3];
  # sum(raw) = 5.616666...; mean = 1.404166...
  raw = np.array([1.2, 0.75, 3.0, 2.0 / 3.0])
  expected = raw / (raw.sum() / 4)
  w = weighting.compute_weights("inverse_tpr", SCORES, COUNTS, gamma=1.0)
  np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-5)
  # The hardest class (s=0.2) gets the largest weight, the easiest the smallest.
  assert np.argmax(w) == 2 and np.argmin(w) == 3


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
def test_inverse_tpr_matches_paper_formula(gamma):
  # The source paper writes w_c = (1 - (s_c - s̄) / s_c)^gamma.
  s = SCORES.astype(np.float64)
  sbar = s.mean()
  expected = _mean1((1.0 - (s - sbar) / s) ** gamma)
  w = weighting.compute_weights("inverse_tpr", SCORES, COUNTS, gamma=gamma)
  np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-5)


def test_inverse_tpr_default_gamma_is_one():
  np.testing.assert_allclose(np.asarray(weighting.compute_weights("inverse_tpr", SCORES, COUNTS)),
                             np.asarray(weighting.compute_weights("inverse_tpr", SCORES, COUNTS,
                                                                  gamma=1.0)), rtol=1e-6)


@pytest.mark.parametrize("tau", [0.0, 1.0, 2.0])
def test_class_difficulty_by_hand(tau):
  # (1 - s) = [0.5, 0.2, 0.8, 0.1]
  expected = _mean1(np.array([0.5, 0.2, 0.8, 0.1]) ** tau)
  w = weighting.compute_weights("class_difficulty", SCORES, COUNTS, tau=tau)
  np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-5)


def test_class_difficulty_tau1_explicit_numbers():
  # (1 - s) = [0.5, 0.2, 0.8, 0.1], mean 0.4 -> [1.25, 0.5, 2.0, 0.25]
  w = weighting.compute_weights("class_difficulty", SCORES, COUNTS, tau=1.0)
  np.testing.assert_allclose(np.asarray(w), [1.25, 0.5, 2.0, 0.25], rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.99, 0.999])
def test_effective_number_by_hand(beta):
  n = COUNTS.astype(np.float64)
  expected = _mean1((1.0 - beta) / (1.0 - beta ** n))
  w = weighting.compute_weights("effective_number", SCORES, COUNTS, beta=beta)
  np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-4)


def test_effective_number_beta0_is_uniform_and_balanced_is_uniform():
  w0 = weighting.compute_weights("effective_number", SCORES, COUNTS, beta=0.0)
  np.testing.assert_allclose(np.asarray(w0), np.ones(4), rtol=1e-6)
  wb = weighting.compute_weights("effective_number", SCORES, np.full(4, 500), beta=0.999)
  np.testing.assert_allclose(np.asarray(wb), np.ones(4), rtol=1e-5)


def test_effective_number_two_classes_explicit():
  # beta = 0.5, n = [1, 2]: (1-b)/(1-b^n) = [0.5/0.5, 0.5/0.75] = [1, 2/3], mean 5/6
  w = weighting.compute_weights("effective_number", [0.5, 0.5], [1, 2], beta=0.5)
  np.testing.assert_allclose(np.asarray(w), [1.2, 0.8], rtol=1e-5)


def test_inverse_frequency_by_hand():
  # 1/n = [0.01, 0.0025, 0.02, 0.001], mean = 0.008375
  expected = np.array([0.01, 0.0025, 0.02, 0.001]) / 0.008375
  w = weighting.compute_weights("inverse_frequency", SCORES, COUNTS)
  np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-5)


def test_score_based_rules_ignore_counts_and_count_rules_ignore_scores():
  other_counts = np.array([7, 7, 3000, 1])
  other_scores = np.array([0.1, 0.3, 0.99, 0.6])
  for rule in ("inverse_tpr", "class_difficulty"):
    np.testing.assert_allclose(np.asarray(weighting.compute_weights(rule, SCORES, COUNTS)),
                               np.asarray(weighting.compute_weights(rule, SCORES, other_counts)))
  for rule in ("effective_number", "inverse_frequency"):
    np.testing.assert_allclose(np.asarray(weighting.compute_weights(rule, SCORES, COUNTS)),
                               np.asarray(weighting.compute_weights(rule, other_scores, COUNTS)))


# ------------------------------------------------------------------ normalisation and dtypes


@pytest.mark.parametrize("rule", ALL_RULES)
def test_mean_one_float32_shape(rule):
  rng = np.random.default_rng(0)
  scores = rng.uniform(0.05, 0.95, 10)
  counts = rng.integers(1, 5000, 10)
  w = weighting.compute_weights(rule, scores, counts)
  chex.assert_shape(w, (10,))
  chex.assert_type(w, np.float32)
  chex.assert_tree_all_finite(w)
  np.testing.assert_allclose(float(np.mean(np.asarray(w, np.float64))), 1.0, rtol=1e-5)
  assert (np.asarray(w) >= 0).all()


# ------------------------------------------------------------------------------ edge cases


def _clipped(scores):
  return np.clip(np.asarray(scores, np.float64), weighting.SCORE_FLOOR,
                 1.0 - weighting.SCORE_FLOOR)


def test_documented_floor_value():
  # The module docstring documents the floor; tests below rely on it being small and positive.
  assert 0.0 < weighting.SCORE_FLOOR < 0.1
  assert "SCORE_FLOOR" in weighting.__doc__ or "clipped" in weighting.__doc__


@pytest.mark.parametrize("rule", ["inverse_tpr", "class_difficulty"])
@pytest.mark.parametrize("scores", [
    [0.0, 0.5, 0.7, 0.9],   # a class with TPR 0
    [1.0, 0.5, 0.7, 0.9],   # a class with TPR 1
    [0.0, 1.0, 0.0, 1.0],   # both extremes
])
def test_extreme_scores_finite_nonzero_and_floored(rule, scores):
  w = np.asarray(weighting.compute_weights(rule, scores, COUNTS))
  assert np.isfinite(w).all(), w
  assert (w > 0).all(), f"{rule} gave a zero weight for {scores}: {w}"
  s = _clipped(scores)
  if rule == "inverse_tpr":
    expected = _mean1(s.mean() / s)
  else:
    expected = _mean1(1.0 - s)
  np.testing.assert_allclose(w, expected, rtol=1e-4)


@pytest.mark.parametrize("rule", ALL_RULES)
@pytest.mark.parametrize("value", [0.0, 0.37, 1.0])
def test_all_equal_scores_give_uniform_weights(rule, value):
  w = np.asarray(weighting.compute_weights(rule, np.full(5, value), np.full(5, 100)))
  assert np.isfinite(w).all()
  np.testing.assert_allclose(w, np.ones(5), rtol=1e-5)


@pytest.mark.parametrize("rule", ["effective_number", "inverse_frequency"])
def test_zero_counts_are_floored_to_one(rule):
  w = np.asarray(weighting.compute_weights(rule, SCORES, [0, 10, 100, 1000]))
  assert np.isfinite(w).all() and (w > 0).all()
  w1 = np.asarray(weighting.compute_weights(rule, SCORES, [1, 10, 100, 1000]))
  np.testing.assert_allclose(w, w1, rtol=1e-6)


# ------------------------------------------------------------------------------ validation


def test_unknown_rule_lists_valid_rules():
  with pytest.raises(ValueError) as e:
    weighting.compute_weights("inverse_trp", SCORES, COUNTS)
  for name in ALL_RULES:
    assert name in str(e.value)
  assert "inverse_trp" in str(e.value)


@pytest.mark.parametrize("rule, hparams, needle", [
    ("inverse_tpr", {"gamma": -0.5}, "gamma >= 0"),
    ("class_difficulty", {"tau": -1.0}, "tau >= 0"),
    ("effective_number", {"beta": 1.0}, "0 <= beta < 1"),
    ("effective_number", {"beta": 1.5}, "0 <= beta < 1"),
    ("effective_number", {"beta": -0.1}, "0 <= beta < 1"),
    ("inverse_tpr", {"gamma": float("nan")}, "gamma >= 0"),
    ("inverse_tpr", {"gamma": float("inf")}, "gamma >= 0"),
])
def test_invalid_hparam_value(rule, hparams, needle):
  with pytest.raises(ValueError) as e:
    weighting.compute_weights(rule, SCORES, COUNTS, **hparams)
  assert needle in str(e.value)
  assert rule in str(e.value)


@pytest.mark.parametrize("rule, bad, valid", [
    ("inverse_tpr", "tau", "gamma"),
    ("class_difficulty", "gamma", "tau"),
    ("effective_number", "gamma", "beta"),
    ("uniform", "gamma", "none"),
])
def test_unknown_hparam_lists_valid_ones(rule, bad, valid):
  with pytest.raises(ValueError) as e:
    weighting.compute_weights(rule, SCORES, COUNTS, **{bad: 1.0})
  msg = str(e.value)
  assert bad in msg and valid in msg


def test_validate_fills_defaults():
  assert weighting.validate("inverse_tpr", {}) == {"gamma": 1.0}
  assert weighting.validate("effective_number", {"beta": 0.9}) == {"beta": 0.9}
  assert weighting.validate("uniform", {}) == {}


def test_scores_must_be_a_vector():
  with pytest.raises(AssertionError):
    weighting.compute_weights("inverse_tpr", np.full((2, 2), 0.5), COUNTS)


# ----------------------------------------------------------------------------- jit / numpy


@pytest.mark.parametrize("rule", ALL_RULES)
def test_jit_and_eager_agree(rule):
  fn = weighting.RULES[rule].fn
  scores = np.array([0.0, 0.3, 0.55, 1.0, 0.9], np.float32)
  counts = np.array([3, 50, 500, 5000, 1], np.int32)
  eager = fn(scores, counts)
  jitted = jax.jit(fn)(scores, counts)
  chex.assert_trees_all_close(eager, jitted, rtol=1e-6, atol=1e-7)
  chex.assert_tree_all_finite(jitted)


def test_hparams_can_be_traced():
  # Dynamic reweighting calls the rules inside jit with traced exponents.
  f = jax.jit(lambda s, g: weighting.inverse_tpr(s, None, gamma=g))
  w = f(SCORES, 2.0)
  np.testing.assert_allclose(np.asarray(w), _mean1((SCORES.mean() / SCORES) ** 2.0), rtol=1e-5)
  g = jax.jit(lambda s, t: weighting.class_difficulty(s, None, tau=t))
  np.testing.assert_allclose(np.asarray(g(SCORES, 0.5)), _mean1((1.0 - SCORES) ** 0.5), rtol=1e-5)
