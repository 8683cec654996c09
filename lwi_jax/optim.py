"""The optax optimizer and learning-rate schedule of `config.optimizer` (one per run)."""

from __future__ import annotations

import jax
import optax


OPTIMIZERS = ("adam", "sgd", "sgdw")
SCHEDULES = ("constant", "cosine", "warmup_linear")


def learning_rate_schedule(cfg, total_steps: int):
  """The learning rate per step from `config.optimizer`.

  'warmup_linear' is the fast CIFAR recipes' triangle (David Page's ResNet-9, airbench): linear
  from initial_lr_fraction * lr up to lr over the first warmup_fraction of the steps, then
  linear down to final_lr_fraction * lr at the last step.
  """
  total = max(1, total_steps)
  if cfg.schedule == "constant":
    return cfg.learning_rate
  if cfg.schedule == "cosine":
    return optax.cosine_decay_schedule(cfg.learning_rate, total)
  if cfg.schedule == "warmup_linear":
    lr = cfg.learning_rate
    warmup = cfg.warmup_fraction
    start, end = cfg.initial_lr_fraction, cfg.final_lr_fraction
    for name, v in (("warmup_fraction", warmup), ("initial_lr_fraction", start),
                    ("final_lr_fraction", end)):
      if not 0.0 <= v <= 1.0:
        raise ValueError(f"optimizer.{name}={v} must be in [0, 1]")
    peak = max(1, int(round(warmup * total)))
    return optax.join_schedules(
        [optax.linear_schedule(start * lr, lr, peak),
         optax.linear_schedule(lr, end * lr, max(1, total - peak))], [peak])
  raise ValueError(f"optimizer.schedule={cfg.schedule!r} is not one of {list(SCHEDULES)}")


def make_optimizer(cfg, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
  """optax optimizer from `config.optimizer` (name, learning_rate, schedule, weight_decay).

  'sgd' adds weight_decay * params to the gradient (L2, which momentum then amplifies);
  'sgdw' is SGD with Nesterov momentum and DECOUPLED weight decay (Loshchilov & Hutter 2019):
  the decay lr_t * weight_decay * params is applied beside the momentum step, not through it,
  so its strength does not change with the momentum (the fast CIFAR recipes' parametrisation).
  """
  lr = learning_rate_schedule(cfg, steps_per_epoch * epochs)
  if cfg.name == "adam":
    tx = optax.adam(lr)
    if cfg.weight_decay:
      tx = optax.adamw(lr, weight_decay=cfg.weight_decay)
  elif cfg.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(lr, momentum=cfg.momentum, nesterov=True))
  elif cfg.name == "sgdw":
    tx = optax.chain(optax.trace(decay=cfg.momentum, nesterov=True),
                     optax.add_decayed_weights(cfg.weight_decay),
                     optax.scale_by_learning_rate(lr))
  else:
    raise ValueError(f"optimizer.name={cfg.name!r} is not one of {list(OPTIMIZERS)}")
  return tx


def make_head_optimizer(cfg, steps_per_epoch: int, epochs: int, head: str
                        ) -> optax.GradientTransformation:
  """`make_optimizer` over the parameters under the top-level collection `head` only.

  Every other parameter gets an exactly zero update (optax.set_to_zero: no step, no weight
  decay, no optimizer state), so x + 0 leaves it bitwise unchanged (head-only retraining).
  """
  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "head" if getattr(path[0], "key", None) == head else "frozen", params)
  return optax.multi_transform({"head": make_optimizer(cfg, steps_per_epoch, epochs),
                                "frozen": optax.set_to_zero()}, labels)
