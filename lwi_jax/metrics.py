"""Per-class evaluation: confusion matrix, TPR (recall), precision, F1, Var(s), worst class.

Computed in JAX so they vmap over an ensemble. `Var(s)` is the population variance
mean((s_i - s̄)^2), the paper's measure of learnability imbalance.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def confusion_matrix(labels: jax.Array, predictions: jax.Array, num_classes: int,
                     mask: jax.Array | None = None) -> jax.Array:
  """cm[i, j] = number of examples of true class i predicted as j (int32)."""
  chex.assert_rank((labels, predictions), 1)
  chex.assert_equal_shape((labels, predictions))
  flat = labels * num_classes + predictions
  weights = jnp.ones_like(flat) if mask is None else mask.astype(jnp.int32)
  cm = jnp.zeros(num_classes * num_classes, jnp.int32).at[flat].add(weights)
  return cm.reshape(num_classes, num_classes)


def summarize_confusion(cm: jax.Array) -> dict[str, jax.Array]:
  """Scores derived from a confusion matrix; empty rows/columns give 0, never NaN."""
  chex.assert_rank(cm, 2)
  cm = cm.astype(jnp.float32)
  tp = jnp.diagonal(cm)
  support = cm.sum(1)
  predicted = cm.sum(0)
  tpr = tp / jnp.maximum(support, 1.0)
  precision = tp / jnp.maximum(predicted, 1.0)
  f1 = 2 * precision * tpr / jnp.maximum(precision + tpr, 1e-12)
  return {
      "tpr": tpr,
      "precision": precision,
      "f1": f1,
      "accuracy": tp.sum() / jnp.maximum(cm.sum(), 1.0),
      "macro_f1": f1.mean(),
      "var_tpr": jnp.mean((tpr - tpr.mean()) ** 2),
      "worst_tpr": tpr.min(),
  }
