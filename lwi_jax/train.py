"""Pure training and evaluation functions for ONE member, and their ensemble versions.

The class-weight vector is an explicit input of `train_step`, not part of the model or the
optimizer, so a single compiled program can train E members with E different weightings: every
argument of the member functions gets a leading ensemble axis and `ensemble.map_members`
executes it (vmap, or lax.map). Keys are derived from each member's seed only, so members that
share a seed share initialisation, data order, augmentation and dropout: rule comparisons are
paired.
"""

from __future__ import annotations

import functools
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state

from lwi_jax import augment as augment_lib
from lwi_jax import ensemble, losses, metrics


class TrainState(train_state.TrainState):
  batch_stats: Any = None


@struct.dataclass
class MemberHParams:
  """Per-member numeric knobs; arrays so that they can be stacked and vmapped."""

  class_weights: jax.Array  # [C] loss weight per class
  focal_gamma: jax.Array  # [] 0 = plain (weighted) cross-entropy

  @classmethod
  def create(cls, class_weights, focal_gamma=0.0) -> "MemberHParams":
    return cls(jnp.asarray(class_weights, jnp.float32), jnp.asarray(focal_gamma, jnp.float32))


def make_optimizer(cfg, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
  """optax optimizer from `config.optimizer` (name, learning_rate, schedule, weight_decay)."""
  total = max(1, steps_per_epoch * epochs)
  if cfg.schedule == "constant":
    lr = cfg.learning_rate
  elif cfg.schedule == "cosine":
    lr = optax.cosine_decay_schedule(cfg.learning_rate, total)
  else:
    raise ValueError(f"optimizer.schedule={cfg.schedule!r} is not one of ['constant', 'cosine']")
  if cfg.name == "adam":
    tx = optax.adam(lr)
    if cfg.weight_decay:
      tx = optax.adamw(lr, weight_decay=cfg.weight_decay)
  elif cfg.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(lr, momentum=cfg.momentum, nesterov=True))
  else:
    raise ValueError(f"optimizer.name={cfg.name!r} is not one of ['adam', 'sgd']")
  return tx


def create_train_state(model: nn.Module, tx, sample_inputs: jax.Array, key: jax.Array
                       ) -> TrainState:
  """Initial state of one member; the init key should come from the member's seed only."""
  variables = model.init({"params": key, "dropout": key}, sample_inputs, train=False)
  return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                           batch_stats=variables.get("batch_stats", {}))


def seed_key(seed) -> jax.Array:
  return jax.random.key(seed)


def init_ensemble(model: nn.Module, tx, sample_inputs: jax.Array, seeds) -> TrainState:
  """Stacked states [E, ...] for members with the given seeds (same seed -> same init)."""
  keys = jax.vmap(lambda s: jax.random.fold_in(seed_key(s), 0))(jnp.asarray(seeds, jnp.uint32))
  return jax.jit(jax.vmap(lambda k: create_train_state(model, tx, sample_inputs, k)))(keys)


def train_step(state: TrainState, batch: dict, class_weights: jax.Array, rng: jax.Array,
               focal_gamma=0.0) -> tuple[TrainState, dict]:
  """One optimizer step of one member on `batch` with loss weights `class_weights` [C]."""
  chex.assert_rank(class_weights, 1)
  chex.assert_rank(batch["labels"], 1)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["inputs"], train=True,
        rngs={"dropout": rng}, mutable=["batch_stats"])
    per_example = losses.per_example_focal(logits, batch["labels"], focal_gamma)
    loss = losses.weighted_mean(per_example, batch["labels"], class_weights)
    return loss, (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["labels"])
  return state, {"loss": loss, "accuracy": accuracy}


def epoch_key(seed, epoch) -> jax.Array:
  """Key of one member's epoch: a function of (seed, epoch) only, hence paired across rules."""
  return jax.random.fold_in(jax.random.fold_in(seed_key(seed), 1), epoch)


def train_epoch(state: TrainState, hparams: MemberHParams, key: jax.Array, inputs: jax.Array,
                labels: jax.Array, *, batch_size: int, augment: str) -> tuple[TrainState, dict]:
  """One pass over the (device-resident) training set as a `lax.scan` over batches."""
  n = labels.shape[0]
  steps = n // batch_size
  if steps == 0:
    raise ValueError(f"train.batch_size={batch_size} exceeds the {n} training examples")
  k_perm, k_steps = jax.random.split(key)
  order = jax.random.permutation(k_perm, n)[:steps * batch_size].reshape(steps, batch_size)

  def body(state, xs):
    idx, step_key = xs
    k_aug, k_drop = jax.random.split(step_key)
    batch = {"inputs": augment_lib.augment(augment, inputs[idx], k_aug), "labels": labels[idx]}
    return train_step(state, batch, hparams.class_weights, k_drop, hparams.focal_gamma)

  state, step_metrics = jax.lax.scan(body, state, (order, jax.random.split(k_steps, steps)))
  return state, jax.tree.map(jnp.mean, step_metrics)


def predict_confusion(state: TrainState, inputs: jax.Array, labels: jax.Array, mask: jax.Array,
                      *, num_classes: int) -> jax.Array:
  """Confusion matrix of one member over pre-batched eval data [S, B, ...] with mask [S, B]."""

  def body(cm, xs):
    x, y, m = xs
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, x,
                            train=False)
    return cm + metrics.confusion_matrix(y, jnp.argmax(logits, -1), num_classes, m), None

  cm0 = jnp.zeros((num_classes, num_classes), jnp.int32)
  return jax.lax.scan(body, cm0, (inputs, labels, mask))[0]


def batch_for_eval(inputs: np.ndarray, labels: np.ndarray, batch_size: int):
  """Pads an eval split to whole batches: (inputs [S,B,...], labels [S,B], mask [S,B])."""
  n = labels.shape[0]
  steps = max(1, -(-n // batch_size))
  pad = steps * batch_size - n
  inputs = np.concatenate([inputs, np.zeros((pad,) + inputs.shape[1:], inputs.dtype)])
  labels = np.concatenate([labels, np.zeros((pad,), labels.dtype)])
  mask = np.arange(steps * batch_size) < n
  return (inputs.reshape((steps, batch_size) + inputs.shape[1:]),
          labels.reshape(steps, batch_size), mask.reshape(steps, batch_size))


@functools.lru_cache(maxsize=None)
def ensemble_train_epoch_fn(batch_size: int, augment: str, strategy: str):
  """Jitted (states[E], hparams[E], keys[E], inputs, labels) -> (states[E], metrics[E])."""
  member = functools.partial(train_epoch, batch_size=batch_size, augment=augment)
  return jax.jit(ensemble.map_members(member, strategy, num_member_args=3), donate_argnums=0)


@functools.lru_cache(maxsize=None)
def ensemble_confusion_fn(num_classes: int, strategy: str):
  """Jitted (states[E], inputs, labels, mask) -> confusion matrices [E, C, C]."""
  member = functools.partial(predict_confusion, num_classes=num_classes)
  return jax.jit(ensemble.map_members(member, strategy, num_member_args=1))


def ensemble_epoch_keys(seeds, epoch: int) -> jax.Array:
  return jax.vmap(lambda s: epoch_key(s, epoch))(jnp.asarray(seeds, jnp.uint32))
