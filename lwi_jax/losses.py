"""Class-weighted softmax cross-entropy and focal loss, optionally with logit-space offsets.

optax has neither class weights nor a weighted mean, so they are written here once. The
reduction is PyTorch's `cross_entropy(weight=w)`: sum_i w[y_i] * l_i / sum_i w[y_i], so the loss
scale does not move with the weights and learning rates stay comparable across rules.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

# (1 - p) is floored here before the log in the focal factor, so gamma = 0 has a finite
# gradient (0 * finite) even where p rounds to 1.
_TINY = 1e-30


def per_example_focal(logits: jax.Array, labels: jax.Array, gamma, label_smoothing=0.0
                      ) -> jax.Array:
  """-(1 - p_y)^gamma * log p_y per example; gamma = 0 is exactly cross-entropy (Lin 2017).

  With `label_smoothing` e > 0 the log-likelihood term is the cross-entropy against the
  smoothed target (1 - e) onehot(y) + e / C (Szegedy 2016; 0.2 in the fast CIFAR recipes):
  (1 - e)(-log p_y) + e * mean_c(-log p_c). e = 0 is exactly the unsmoothed loss. The focal
  factor still uses the true class's p_y.
  """
  chex.assert_rank(logits, 2)
  chex.assert_rank(labels, 1)
  chex.assert_equal_shape_prefix((logits, labels), 1)
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  log_py = jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
  one_minus_p = jnp.maximum(-jnp.expm1(log_py), _TINY)
  modulating = jnp.exp(jnp.asarray(gamma, jnp.float32) * jnp.log(one_minus_p))
  eps = jnp.asarray(label_smoothing, jnp.float32)
  nll = -((1.0 - eps) * log_py + eps * jnp.mean(log_p, axis=-1))
  return modulating * nll


def weighted_mean(per_example: jax.Array, labels: jax.Array, class_weights: jax.Array,
                  mask: jax.Array | None = None) -> jax.Array:
  """sum_i w[y_i] l_i / sum_i w[y_i] (optionally over the examples where mask is True)."""
  chex.assert_rank(class_weights, 1)
  w = class_weights.astype(jnp.float32)[labels]
  if mask is not None:
    w = w * mask
  return jnp.sum(w * per_example) / jnp.maximum(jnp.sum(w), _TINY)


def weighted_cross_entropy(logits, labels, class_weights) -> jax.Array:
  return weighted_mean(per_example_focal(logits, labels, 0.0), labels, class_weights)


def weighted_focal_loss(logits, labels, class_weights, gamma) -> jax.Array:
  return weighted_mean(per_example_focal(logits, labels, gamma), labels, class_weights)


def member_loss(logits: jax.Array, labels: jax.Array, class_weights: jax.Array,
                logit_offsets: jax.Array | None = None, focal_gamma=0.0,
                label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """(loss, per-example losses) of one member: the weighted (focal) loss of logits + offsets.

  `logit_offsets` [C] is added to every row of the logits before the softmax, inside the loss
  only (logit adjustment, Menon et al. 2021): CE(f(x) + b)_y. Offsets b = -log w train towards
  argmax_y w_y p(y|x) at evaluation, where the raw logits f are used, instead of multiplying the
  loss by w. Offsets 0 add +0.0 to every logit: the loss is bitwise today's weighted loss.
  """
  logits = logits.astype(jnp.float32)
  if logit_offsets is not None:
    chex.assert_shape(logit_offsets, logits.shape[-1:])
    logits = logits + logit_offsets.astype(jnp.float32)[None, :]
  per_example = per_example_focal(logits, labels, focal_gamma, label_smoothing)
  return weighted_mean(per_example, labels, class_weights), per_example


def per_class_mean(per_example: jax.Array, labels: jax.Array, num_classes: int
                   ) -> tuple[jax.Array, jax.Array]:
  """(mean of `per_example` within each class, examples per class) for one batch."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  counts = onehot.sum(0)
  return (onehot * per_example[:, None]).sum(0) / jnp.maximum(counts, 1.0), counts
