"""Per-class evaluation: confusion matrix, TPR (recall), precision, F1, Var(s), worst class.

The scores are computed in JAX (vmapped over an ensemble) or numpy (`xp`); a study counts its
confusion matrices on the host from its one evaluation program's logits (`confusion_counts`),
`confusion_matrix` is the same count inside a compiled program. `Var(s)` is the population
variance mean((s_i - s̄)^2), the paper's measure of learnability imbalance.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

# The scalar scores of a confusion matrix that a study compares between members.
SUMMARY_KEYS = ("accuracy", "macro_f1", "var_tpr", "worst_tpr")
# How a member is compared with its seed's baseline, per score: (name, score, sign). sign -1:
# the baseline's score minus the member's (D, the paper's fall in Var(s): positive = more even);
# +1: the member's minus the baseline's. The statistics and the report iterate this table.
PAIRED_DIFFERENCES = (("D", "var_tpr", -1.0), ("delta_accuracy", "accuracy", 1.0),
                      ("delta_macro_f1", "macro_f1", 1.0), ("delta_worst_tpr", "worst_tpr", 1.0))


def confusion_matrix(labels: jax.Array, predictions: jax.Array, num_classes: int,
                     mask: jax.Array | None = None) -> jax.Array:
  """cm[i, j] = number of examples of true class i predicted as j (int32)."""
  chex.assert_rank((labels, predictions), 1)
  chex.assert_equal_shape((labels, predictions))
  flat = labels * num_classes + predictions
  weights = jnp.ones_like(flat) if mask is None else mask.astype(jnp.int32)
  cm = jnp.zeros(num_classes * num_classes, jnp.int32).at[flat].add(weights)
  return cm.reshape(num_classes, num_classes)


def predicted_classes(logits: np.ndarray, num_classes: int) -> np.ndarray:
  """argmax over the last axis of logits [..., N, C] as int8 (int16 past 127 classes): what a
  phase stores per example for the bootstrap and McNemar's test."""
  return np.argmax(logits, -1).astype(np.int16 if num_classes > 127 else np.int8)


def confusion_counts(predictions: np.ndarray, labels: np.ndarray, num_classes: int
                     ) -> np.ndarray:
  """`confusion_matrix` on the host (numpy, int64): what a study computes from the logits its
  one evaluation program returns (lwi_jax/study/trainer.py) and what the post-hoc arms score."""
  labels = np.asarray(labels, np.int64)
  flat = labels * num_classes + np.asarray(predictions, np.int64)
  return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def summarize_confusion(cm, xp=jnp) -> dict:
  """Scores of confusion matrices [..., C, C]; empty rows/columns give 0, never NaN.

  Args:
    cm: counts, cm[..., i, j] = examples of true class i predicted as j.
    xp: the array module: `jnp` (float32, inside the compiled programs, vmappable) or `np`
      (float64, for the bootstrap's [B, M, C, C] replicates): one definition for both.

  Returns:
    Per-class `tpr`, `precision`, `f1` [..., C] and the scalars [...] of SUMMARY_KEYS.
  """
  chex.assert_rank(cm, {2, 3, 4})
  cm = xp.asarray(cm).astype(xp.float32 if xp is jnp else xp.float64)
  return summarize_counts(xp.diagonal(cm, axis1=-2, axis2=-1), cm.sum(-1), cm.sum(-2),
                          cm.sum((-2, -1)), xp)


def summarize_counts(tp, support, predicted, total, xp=jnp) -> dict:
  """`summarize_confusion` from per-class counts [..., C]: O(C), not O(C^2), per matrix.

  Args:
    tp: correct predictions of each class; support: examples of each class (row sums);
    predicted: examples predicted as each class (column sums); total: examples [...].
    xp: `jnp` or `np`; the counts must already be in the float type of that module.
  """
  tpr = tp / xp.maximum(support, 1.0)
  precision = tp / xp.maximum(predicted, 1.0)
  f1 = 2 * precision * tpr / xp.maximum(precision + tpr, 1e-12)
  return {
      "tpr": tpr,
      "precision": precision,
      "f1": f1,
      "accuracy": tp.sum(-1) / xp.maximum(total, 1.0),
      "macro_f1": f1.mean(-1),
      "var_tpr": xp.mean((tpr - tpr.mean(-1, keepdims=True)) ** 2, -1),
      "worst_tpr": tpr.min(-1),
  }


def imbalance_scores(cm, k: int, xp=jnp) -> dict:
  """Evenness measures beyond Var(s) of confusion matrices [..., C, C].

  - `worst_k_tpr`: mean TPR of the k worst classes (`compare.worst_k`; at most C);
  - `hmean_tpr`: harmonic mean of the TPRs, C / sum_c 1/s_c (0 when a class has TPR 0): it
    falls fast when one class is poor, unlike the arithmetic mean (balanced accuracy);
  - `var_tpr_noise_corrected`: Var(s) - mean_c s_c(1 - s_c)/n_c. An observed TPR on n_c
    examples carries binomial noise of variance s_c(1 - s_c)/n_c, which Var(s) of measured
    TPRs includes even for a perfectly even classifier; the corrected value removes that floor
    (plug-in estimate: it can be slightly negative when the TPRs are even to within the noise).
  """
  cm = xp.asarray(cm).astype(xp.float32 if xp is jnp else xp.float64)
  support = cm.sum(-1)
  tpr = xp.diagonal(cm, axis1=-2, axis2=-1) / xp.maximum(support, 1.0)
  k = max(1, min(int(k), tpr.shape[-1]))
  var = xp.mean((tpr - tpr.mean(-1, keepdims=True)) ** 2, -1)
  any_zero = (tpr <= 0).any(-1)
  hmean = tpr.shape[-1] / xp.sum(1.0 / xp.maximum(tpr, 1e-12), -1)
  return {"worst_k_tpr": xp.sort(tpr, axis=-1)[..., :k].mean(-1),
          "hmean_tpr": xp.where(any_zero, 0.0, hmean),
          "var_tpr_noise_corrected": var - xp.mean(tpr * (1 - tpr) / xp.maximum(support, 1.0),
                                                   -1)}
