"""Confusion matrix and per-class scores against numpy / hand computation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwi_jax import metrics


def _np_confusion(labels, preds, c, mask=None):
  cm = np.zeros((c, c), np.int64)
  for i, (y, p) in enumerate(zip(labels, preds)):
    if mask is None or mask[i]:
      cm[y, p] += 1
  return cm


def test_confusion_matrix_by_hand():
  labels = jnp.array([0, 0, 1, 2, 2, 2])
  preds = jnp.array([0, 1, 1, 2, 0, 2])
  cm = metrics.confusion_matrix(labels, preds, 3)
  chex.assert_shape(cm, (3, 3))
  chex.assert_type(cm, jnp.int32)
  np.testing.assert_array_equal(np.asarray(cm), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_confusion_matrix_random_vs_numpy():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 7, 500)
  preds = rng.integers(0, 7, 500)
  cm = metrics.confusion_matrix(jnp.asarray(labels), jnp.asarray(preds), 7)
  np.testing.assert_array_equal(np.asarray(cm), _np_confusion(labels, preds, 7))


def test_confusion_matrix_mask():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 4, 50)
  preds = rng.integers(0, 4, 50)
  mask = rng.random(50) < 0.6
  cm = metrics.confusion_matrix(jnp.asarray(labels), jnp.asarray(preds), 4, jnp.asarray(mask))
  np.testing.assert_array_equal(np.asarray(cm), _np_confusion(labels, preds, 4, mask))
  assert int(cm.sum()) == int(mask.sum())


def test_confusion_matrix_shape_checks():
  with pytest.raises(AssertionError):
    metrics.confusion_matrix(jnp.zeros(3, jnp.int32), jnp.zeros(4, jnp.int32), 3)


def test_summary_by_hand():
  # cm rows = true class, cols = predicted:
  #   class 0: 3 of 4 right, 1 -> class 1
  #   class 1: 1 of 2 right, 1 -> class 2
  #   class 2: 4 of 4 right
  cm = jnp.array([[3, 1, 0], [0, 1, 1], [0, 0, 4]], jnp.int32)
  s = metrics.summarize_confusion(cm)
  tpr = np.array([3 / 4, 1 / 2, 1.0])
  precision = np.array([3 / 3, 1 / 2, 4 / 5])
  f1 = 2 * precision * tpr / (precision + tpr)
  np.testing.assert_allclose(np.asarray(s["tpr"]), tpr, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(s["precision"]), precision, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(s["f1"]), f1, rtol=1e-6)
  np.testing.assert_allclose(float(s["accuracy"]), 8 / 10, rtol=1e-6)
  np.testing.assert_allclose(float(s["macro_f1"]), f1.mean(), rtol=1e-6)
  # Population variance (ddof=0): mean 0.75, deviations (0, -0.25, 0.25) -> 0.125 / 3.
  np.testing.assert_allclose(float(s["var_tpr"]), 0.125 / 3, rtol=1e-6)
  np.testing.assert_allclose(float(s["var_tpr"]), np.var(tpr, ddof=0), rtol=1e-6)
  assert abs(float(s["var_tpr"]) - np.var(tpr, ddof=1)) > 1e-3  # not the sample variance
  np.testing.assert_allclose(float(s["worst_tpr"]), 0.5, rtol=1e-6)


def test_summary_random_vs_numpy():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 10, 1000)
  preds = np.where(rng.random(1000) < 0.6, labels, rng.integers(0, 10, 1000))
  cm = _np_confusion(labels, preds, 10)
  s = metrics.summarize_confusion(jnp.asarray(cm))
  tpr = np.array([(preds[labels == c] == c).mean() for c in range(10)])
  precision = np.array([(labels[preds == c] == c).mean() for c in range(10)])
  f1 = 2 * precision * tpr / (precision + tpr)
  np.testing.assert_allclose(np.asarray(s["tpr"]), tpr, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(s["precision"]), precision, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(s["f1"]), f1, rtol=1e-5)
  np.testing.assert_allclose(float(s["accuracy"]), (labels == preds).mean(), rtol=1e-6)
  np.testing.assert_allclose(float(s["var_tpr"]), np.var(tpr), rtol=1e-4)
  np.testing.assert_allclose(float(s["worst_tpr"]), tpr.min(), rtol=1e-6)


def test_empty_class_gives_zero_not_nan():
  # Class 1 never occurs and is never predicted; class 2 occurs but is never predicted.
  cm = jnp.array([[2, 0, 0], [0, 0, 0], [1, 0, 0]], jnp.int32)
  s = metrics.summarize_confusion(cm)
  chex.assert_tree_all_finite(s)
  np.testing.assert_allclose(np.asarray(s["tpr"]), [1.0, 0.0, 0.0])
  np.testing.assert_allclose(np.asarray(s["precision"]), [2 / 3, 0.0, 0.0], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(s["f1"]), [0.8, 0.0, 0.0], rtol=1e-6)
  # An all-zero confusion matrix (nothing evaluated) is all zeros too.
  z = metrics.summarize_confusion(jnp.zeros((4, 4), jnp.int32))
  chex.assert_tree_all_finite(z)
  assert float(z["accuracy"]) == 0.0 and float(z["var_tpr"]) == 0.0


def test_vmapped_over_ensemble_equals_per_member():
  rng = np.random.default_rng(4)
  e, n, c = 4, 64, 5
  labels = rng.integers(0, c, n)
  preds = rng.integers(0, c, (e, n))
  mask = rng.random(n) < 0.8
  cms = jax.vmap(lambda p: metrics.confusion_matrix(jnp.asarray(labels), p, c,
                                                    jnp.asarray(mask)))(jnp.asarray(preds))
  chex.assert_shape(cms, (e, c, c))
  stacked = jax.jit(jax.vmap(metrics.summarize_confusion))(cms)
  chex.assert_tree_shape_prefix(stacked, (e,))
  for i in range(e):
    np.testing.assert_array_equal(np.asarray(cms[i]), _np_confusion(labels, preds[i], c, mask))
    single = metrics.summarize_confusion(cms[i])
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], stacked), single, rtol=1e-6)
