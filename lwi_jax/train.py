"""Pure training and evaluation functions for ONE member.

The class-weight vector is an explicit input of `train_step`, not part of the model or the
optimizer, so a single compiled program can train E members with E different weightings: every
argument of the member functions gets a leading ensemble axis and lwi_jax/parallel/programs.py
maps them over it (vmap, or lax.map). Keys are derived from each member's seed only, so
members that share a seed share initialisation, data order, augmentation and dropout: rule
comparisons are paired.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.training import train_state

from lwi_jax import augment as augment_lib
from lwi_jax import losses
from lwi_jax.member import MemberHParams


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def create_train_state(model: nn.Module, tx, sample_inputs: jax.Array, key: jax.Array
                       ) -> TrainState:
  """Initial state of one member; the init key should come from the member's seed only."""
  variables = model.init({"params": key, "dropout": key}, sample_inputs, train=False)
  return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                           batch_stats=variables.get("batch_stats", {}))


def seed_key(seed) -> jax.Array:
  return jax.random.key(seed)


def train_step(state: TrainState, batch: dict, class_weights: jax.Array, rng: jax.Array,
               focal_gamma=0.0, label_smoothing: float = 0.0, logit_offsets=None,
               freeze_batch_stats=False) -> tuple[TrainState, dict]:
  """One optimizer step of one member on `batch` with loss weights `class_weights` [C].

  Args:
    state: the member's TrainState.
    batch: {"inputs": [B, ...], "labels": [B] int}.
    class_weights: [C] loss weight per class, an explicit input so that one compiled program
      trains members with different weights.
    rng: the step's dropout key.
    focal_gamma: focal-loss exponent (0 = weighted cross-entropy).
    label_smoothing: config.train.label_smoothing, the same for every member.
    logit_offsets: [C] added to the logits inside the loss only (losses.member_loss); None or
      0 = the plain loss.
    freeze_batch_stats: bool []; True keeps the BatchNorm running statistics as they were
      (head-only retraining: the features at evaluation stay the baseline's).

  Returns:
    (new state, metrics): loss, accuracy (of the raw logits), and the batch's per-class mean
    loss and count (what group DRO's weight update needs).
  """
  chex.assert_rank(class_weights, 1)
  chex.assert_rank(batch["labels"], 1)
  num_classes = class_weights.shape[0]

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["inputs"], train=True,
        rngs={"dropout": rng}, mutable=["batch_stats"])
    loss, per_example = losses.member_loss(logits, batch["labels"], class_weights,
                                           logit_offsets, focal_gamma, label_smoothing)
    return loss, (logits, updates, per_example)

  (loss, (logits, updates, per_example)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  batch_stats = jax.tree.map(lambda old, new: jnp.where(freeze_batch_stats, old, new),
                             state.batch_stats, updates.get("batch_stats", {}))
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["labels"])
  class_loss, class_count = losses.per_class_mean(per_example, batch["labels"], num_classes)
  return state, {"loss": loss, "accuracy": accuracy, "class_loss": class_loss,
                 "class_count": class_count}


def group_dro_update(class_weights: jax.Array, class_loss: jax.Array, class_count: jax.Array,
                     eta) -> jax.Array:
  """Exponentiated-gradient step of online group DRO over classes (Sagawa et al. 2020).

  q_c <- q_c exp(eta L_c) for the classes present in the batch, renormalised to mean 1 (our
  weights' convention). eta = 0 leaves the weights unchanged.
  """
  step = jnp.where(class_count > 0, eta * jax.lax.stop_gradient(class_loss), 0.0)
  q = class_weights * jnp.exp(step - jnp.max(step))
  return jnp.where(eta > 0, q / jnp.mean(q), class_weights)  # exact no-op when off


def online_eg_update(logit_offsets: jax.Array, fnr: jax.Array, present: jax.Array, eta
                     ) -> jax.Array:
  """One exponentiated-gradient step of the online validation-driven rule (Narasimhan & Menon
  2021), on the loss's logit offsets b = -log λ.

  λ_c <- λ_c exp(η FNR_c) for the classes present in the validation batch, normalised to
  mean log λ = 0 (the paper normalises λ to the simplex; the two differ by one constant added
  to every logit, which the softmax ignores). η = 0 leaves the offsets unchanged.
  """
  log_lam = -logit_offsets + jnp.where(present, eta * fnr, 0.0)
  log_lam = log_lam - jnp.mean(log_lam)
  return jnp.where(eta > 0, -log_lam, logit_offsets)  # exact no-op when off


def validation_fnr(state: TrainState, inputs: jax.Array, labels: jax.Array, key: jax.Array,
                   batch_size: int, num_classes: int) -> tuple[jax.Array, jax.Array]:
  """(per-class false-negative rate [C], class present [C]) of one member, in evaluation
  mode, on min(batch_size, N) validation examples drawn without replacement with `key`."""
  n = labels.shape[0]
  idx = jax.random.permutation(key, n)[:min(batch_size, n)]
  y = labels[idx]
  correct = (jnp.argmax(predict_logits(state, inputs[idx]), -1) == y).astype(jnp.float32)
  onehot = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
  counts = onehot.sum(0)
  return 1.0 - (onehot * correct[:, None]).sum(0) / jnp.maximum(counts, 1.0), counts > 0


def epoch_key(seed, epoch) -> jax.Array:
  """Key of one member's epoch: a function of (seed, epoch) only, hence paired across rules."""
  return jax.random.fold_in(jax.random.fold_in(seed_key(seed), 1), epoch)


def epoch_order(hparams: MemberHParams, key: jax.Array, labels: jax.Array, steps: int,
                batch_size: int) -> jax.Array:
  """Example indices [steps, batch] of one epoch: a permutation, or class-weighted draws.

  Oversampling members draw with replacement, example i with probability ∝ sample_weights[y_i].
  Both orders are computed (cheap) so every member runs the same program. A member with an
  `example_mask` only ever sees its subset: its permutation lists the subset first and is
  repeated cyclically to fill the same `steps` as a full member (so it keeps the optimizer
  schedule), and its draws give the other examples probability 0.
  """
  n = labels.shape[0]
  k_perm, k_draw = jax.random.split(key)
  p = hparams.sample_weights[labels]
  if hparams.example_mask is None:
    perm = jax.random.permutation(k_perm, n)[:steps * batch_size]
  else:
    mask = hparams.example_mask
    chex.assert_shape(mask, (n,))
    subset_first = jnp.argsort(jax.random.uniform(k_perm, (n,)) + (~mask).astype(jnp.float32))
    perm = subset_first[jnp.arange(steps * batch_size) % jnp.maximum(mask.sum(), 1)]
    p = jnp.where(mask, p, 0.0)
  drawn = jax.random.choice(k_draw, n, (steps * batch_size,), replace=True, p=p / p.sum())
  return jnp.where(hparams.oversample, drawn, perm).reshape(steps, batch_size)


# A progress callback fires at most this many times per epoch (and member pass).
PROGRESS_POINTS = 20


def progress_every(steps: int) -> int:
  """Steps between two progress callbacks of an epoch of `steps` steps."""
  return max(1, -(-steps // PROGRESS_POINTS))


def _report_progress(on_step, i, steps: int) -> None:
  """Calls on_step(done, every) on the host after steps every, 2*every, ..., and the last one.

  `i` is the scan's step counter, shared by all members under vmap, so a vmapped ensemble
  reports once per point, not once per member. Unordered: the callback never delays the step.
  """
  every = progress_every(steps)
  done = i + 1
  jax.lax.cond((done % every == 0) | (done == steps),
               lambda: jax.debug.callback(on_step, done, every, ordered=False), lambda: None)


def train_epoch(state: TrainState, hparams: MemberHParams, key: jax.Array, epoch,
                inputs: jax.Array, labels: jax.Array, val_inputs: jax.Array | None = None,
                val_labels: jax.Array | None = None, *, batch_size: int,
                augment: str | augment_lib.AugmentSpec, label_smoothing: float = 0.0,
                on_step=None) -> tuple[TrainState, MemberHParams, dict]:
  """One pass over the (device-resident) training set as a `lax.scan` over batches.

  Args:
    state: the member's TrainState.
    hparams: the member's MemberHParams, carried (group DRO changes its class weights every
      step) and returned.
    key: the epoch's key (`epoch_key(seed, epoch)`): data order, augmentation, dropout.
    epoch: the epoch's index (deferred weights, alternating flips).
    inputs, labels: the whole training split.
    batch_size: examples per step.
    augment: a name or an augment.AugmentSpec (config.train's augmentation fields).
    label_smoothing: config.train.label_smoothing.
    on_step: `on_step(done_steps, every)`, if given, is called on the host during the epoch (a
      progress bar, lwi_jax/runtime/console.py); it reads nothing the step computes, so
      results are unchanged.
    val_inputs, val_labels: the validation split, given when some member of the phase follows
      the online rule (hparams.online_eta > 0): after every step whose 1-based number in the
      run, epoch * steps + i + 1, is a multiple of hparams.online_every, its `logit_offsets`
      take one `online_eg_update` from `validation_fnr` on a batch drawn with
      fold_in(step key, 1), a function of (seed, epoch, step) only. None: no online update.

  Returns:
    (state, hparams, metrics) after the epoch. Metrics include `finite`: False if any step's
    loss, or the parameters, batch statistics or class weights at the end, are NaN or
    infinite. It is reduced inside the scan (one scalar `isfinite` per step, one pass over the
    parameters per epoch), so a diverged member is detected in the epoch it diverged without
    copying anything to the host.
  """
  augment = augment_lib.as_spec(augment)
  n = labels.shape[0]
  steps = n // batch_size
  if steps == 0:
    raise ValueError(f"train.batch_size={batch_size} exceeds the {n} training examples")
  k_order, k_steps = jax.random.split(key)
  order = epoch_order(hparams, k_order, labels, steps, batch_size)
  use_weights = jnp.asarray(epoch) >= hparams.weights_from_epoch
  xs = (order, jax.random.split(k_steps, steps), jnp.arange(steps))
  num_classes = hparams.class_weights.shape[-1]

  def online(state, hp, i, step_key):
    done = jnp.asarray(epoch, jnp.int32) * steps + i + 1
    due = (hp.online_eta > 0) & (done % jnp.maximum(hp.online_every, 1) == 0)

    def update(hp):
      fnr, present = validation_fnr(state, val_inputs, val_labels,
                                    jax.random.fold_in(step_key, 1), batch_size, num_classes)
      return hp.replace(logit_offsets=online_eg_update(hp.logit_offsets, fnr, present,
                                                       hp.online_eta))

    # vmapped members turn the cond into a select (both sides run); one member at a time
    # (train.ensemble_strategy='sequential') skips the validation pass between updates
    return jax.lax.cond(due, update, lambda hp: hp, hp)

  def body(carry, xs):
    state, hp, finite = carry
    idx, step_key, i = xs
    if on_step is not None:
      _report_progress(on_step, i, steps)
    k_aug, k_drop = jax.random.split(step_key)
    batch = {"inputs": augment_lib.apply(augment, inputs[idx], k_aug, idx, epoch),
             "labels": labels[idx]}
    weights = jnp.where(use_weights, hp.class_weights, jnp.ones_like(hp.class_weights))
    state, m = train_step(state, batch, weights, k_drop, hp.focal_gamma, label_smoothing,
                          hp.logit_offsets, hp.freeze_batch_stats)
    hp = hp.replace(class_weights=group_dro_update(
        hp.class_weights, m.pop("class_loss"), m.pop("class_count"), hp.dro_eta))
    if val_inputs is not None:
      hp = online(state, hp, i, step_key)
    return (state, hp, finite & jnp.isfinite(m["loss"])), m

  (state, hparams, finite), step_metrics = jax.lax.scan(
      body, (state, hparams, jnp.bool_(True)), xs)
  metrics_out = jax.tree.map(jnp.mean, step_metrics)
  metrics_out["finite"] = finite & all_finite((state.params, state.batch_stats,
                                               hparams.class_weights, hparams.logit_offsets))
  return state, hparams, metrics_out


def all_finite(tree) -> jax.Array:
  """Scalar bool: every floating-point leaf of `tree` is free of NaN and infinity."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves \
      else jnp.bool_(True)


def predict_logits(state: TrainState, x: jax.Array, eval_flip: bool = False,
                   eval_translate: int = 0) -> jax.Array:
  """Logits of one member in evaluation mode, with the test-time views of the fast CIFAR
  recipes (images only; one forward pass per view, no training cost).

  `eval_flip` (config.train.eval_flip): the sum of the logits of the image and its mirror image
  (the cheapest gain: one more pass). `eval_translate` = p > 0 (config.train.eval_translate,
  airbench's "mirror + translate"): half of the logits come from the image shifted by p pixels
  up-left and down-right (reflect-padded), each with its mirror when `eval_flip`; the scale of
  the logits stays that of the unshifted views (post-hoc offsets are added to them).
  """
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  def views(images):
    logits = state.apply_fn(variables, images, train=False).astype(jnp.float32)
    if eval_flip:
      logits = logits + state.apply_fn(variables, images[:, :, ::-1],
                                       train=False).astype(jnp.float32)
    return logits

  logits = views(x)
  if eval_translate:
    p, (h, w) = eval_translate, x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    shifted = views(padded[:, :h, :w]) + views(padded[:, 2 * p:2 * p + h, 2 * p:2 * p + w])
    logits = 0.5 * logits + 0.25 * shifted
  return logits


def eval_batches(n: int, batch_size: int) -> tuple[int, int]:
  """(steps S, batch B) of an eval split of n rows in batches of at most `batch_size`.

  B is `batch_size`, or n when that is smaller: a 20-row split of long texts padded to a
  1000-row batch would take 50 times its memory.
  """
  batch = max(1, min(batch_size, n))
  return max(1, -(-n // batch)), batch


def batch_for_eval(inputs: np.ndarray, labels: np.ndarray, batch_size: int):
  """Pads an eval split to whole batches (`eval_batches`): (inputs [S,B,...], labels [S,B],
  mask [S,B])."""
  n = labels.shape[0]
  steps, batch_size = eval_batches(n, batch_size)
  pad = steps * batch_size - n
  inputs = np.concatenate([inputs, np.zeros((pad,) + inputs.shape[1:], inputs.dtype)])
  labels = np.concatenate([labels, np.zeros((pad,), labels.dtype)])
  mask = np.arange(steps * batch_size) < n
  return (inputs.reshape((steps, batch_size) + inputs.shape[1:]),
          labels.reshape(steps, batch_size), mask.reshape(steps, batch_size))
