"""`MemberHParams`: everything that makes one member of an ensemble differ from another.

It lives in the core, beside `train_step`, because it is the core's explicit input: the rules
(lwi_jax/rules) build it from scores, the parallel programs stack it over members, and the
trainer carries it; none of them needs to know about the others.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class MemberHParams:
  """Per-member numeric knobs; arrays so that they can be stacked and vmapped.

  Every rule is expressed through these fields, so members with different rules (static
  weights, focal loss, deferred weights, group DRO, oversampling, dynamic difficulty weights)
  run in ONE compiled program. `class_weights` is carried through training: group DRO updates
  it every step and dynamic class-difficulty weighting at every epoch boundary.
  `logit_offsets` is carried too: the online validation-driven rule (online_eg) moves it every
  `online_every` steps. Offsets act inside the training loss only, never at evaluation.
  """

  class_weights: jax.Array  # [C] loss weight per class (the explicit input of train_step)
  focal_gamma: jax.Array  # [] 0 = plain (weighted) cross-entropy
  weights_from_epoch: jax.Array  # [] int32; uniform loss weights before this epoch (DRW)
  dro_eta: jax.Array  # [] step size of online group DRO over classes; 0 = off
  oversample: jax.Array  # [] bool; draw training examples with p ∝ sample_weights[y]
  sample_weights: jax.Array  # [C] class sampling weights (used when oversample)
  dynamic_tau: jax.Array  # [] class-difficulty exponent recomputed each epoch; < 0 = off
  logit_offsets: jax.Array  # [C] added to the logits inside the loss (logit space); 0 = off
  online_eta: jax.Array  # [] online EG step on the offsets from validation FNRs; 0 = off
  online_every: jax.Array  # [] int32 >= 1; the online update runs every this many steps
  # [] bool: BatchNorm running statistics are not updated (head-only retraining, whose
  # features must stay the baseline's at evaluation too).
  freeze_batch_stats: jax.Array
  # [N] bool: the training examples this member may train on; None = all of them. A generic
  # per-member data subset (cross-fitted scores train fold members with it,
  # lwi_jax/rules/scores.py).
  example_mask: jax.Array | None = None

  @classmethod
  def create(cls, class_weights, focal_gamma=0.0, weights_from_epoch=0, dro_eta=0.0,
             oversample=False, sample_weights=None, dynamic_tau=-1.0, logit_offsets=None,
             online_eta=0.0, online_every=1, freeze_batch_stats=False, example_mask=None
             ) -> "MemberHParams":
    class_weights = jnp.asarray(class_weights, jnp.float32)
    chex.assert_rank(class_weights, 1)
    if sample_weights is None:
      sample_weights = jnp.ones_like(class_weights)
    if logit_offsets is None:
      logit_offsets = jnp.zeros_like(class_weights)
    logit_offsets = jnp.asarray(logit_offsets, jnp.float32)
    chex.assert_equal_shape((class_weights, logit_offsets))
    return cls(class_weights, jnp.asarray(focal_gamma, jnp.float32),
               jnp.asarray(weights_from_epoch, jnp.int32), jnp.asarray(dro_eta, jnp.float32),
               jnp.asarray(oversample, jnp.bool_), jnp.asarray(sample_weights, jnp.float32),
               jnp.asarray(dynamic_tau, jnp.float32), logit_offsets,
               jnp.asarray(online_eta, jnp.float32), jnp.asarray(online_every, jnp.int32),
               jnp.asarray(freeze_batch_stats, jnp.bool_),
               None if example_mask is None else jnp.asarray(example_mask, jnp.bool_))

  @classmethod
  def uniform(cls, num_classes: int, **kwargs) -> "MemberHParams":
    """An unweighted member (all class weights 1): the baseline, and a fold member."""
    return cls.create(np.ones(num_classes, np.float32), **kwargs)
