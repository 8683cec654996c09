"""The optax optimizer and learning-rate schedule of `config.optimizer` (one per run)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


OPTIMIZERS = ("adam", "sgd", "sgdw")
SCHEDULES = ("constant", "cosine", "warmup_linear")

# Lookahead (config.optimizer.lookahead_*; airbench94's "EMA"): off unless a config turns it on.
LOOKAHEAD_DEFAULTS = {"lookahead_every": 0, "lookahead_decay": 0.95, "lookahead_start": 0.3,
                      "lookahead_power": 3.0}
# config.optimizer.norm_bias_lr_scale where a config has no such field: BatchNorm biases step
# like every other parameter.
NORM_BIAS_LR_SCALE_DEFAULT = 1.0


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


class LookaheadState(NamedTuple):
  count: jax.Array  # optimizer steps taken
  slow: optax.Params  # the running average the weights are pulled back to


def lookahead(every: int, decay: float, start: float, power: float, total_steps: int,
              steps_per_epoch: int) -> optax.GradientTransformation:
  """Weights pulled back to a running average of themselves (airbench94's "EMA", a Lookahead).

  Why: late in a short schedule SGD's iterates rattle around a minimum; averaging them (and
  training on from the average) gains accuracy for no extra gradient. Every `every` steps the
  average moves towards the current weights, slow <- rho slow + (1 - rho) fast, and the weights
  jump to it; rho = decay**every * (t / total_steps)**power grows from ~0 (no averaging) to
  decay**every at the end, and is 0 before the fraction `start` of the steps. From `start` on,
  the weights also jump to the average at every epoch's end, so evaluation sees the average.
  Appended after the optimizer's own step: the update it returns moves the weights to where the
  lookahead puts them. Parameters only (BatchNorm statistics follow the weights as they train).
  """
  def init(params):
    return LookaheadState(jnp.zeros([], jnp.int32), params)

  def update(updates, state, params):
    count = state.count + 1
    frac = count.astype(jnp.float32) / max(1, total_steps)
    after_start = frac >= start
    rho = jnp.where(after_start, decay ** every * frac ** power, 0.0)
    sync = count % every == 0
    fast = optax.apply_updates(params, updates)
    slow = jax.tree.map(lambda s, f: jnp.where(sync, s + (1.0 - rho) * (f - s), s).astype(s.dtype),
                        state.slow, fast)
    jump = after_start & (sync | (count % max(1, steps_per_epoch) == 0))
    updates = jax.tree.map(lambda u, s, p: jnp.where(jump, s - p, u).astype(u.dtype),
                           updates, slow, params)
    return updates, LookaheadState(count, slow)

  return optax.GradientTransformation(init, update)


def lookahead_options(cfg) -> dict:
  """config.optimizer's lookahead_* fields, validated (LOOKAHEAD_DEFAULTS where absent)."""
  opts = {k: cfg.get(k, v) for k, v in LOOKAHEAD_DEFAULTS.items()}
  if int(opts["lookahead_every"]) < 0:
    raise ValueError(f"optimizer.lookahead_every={opts['lookahead_every']} must be >= 0 "
                     "(0 = off, else steps between averaging)")
  for name in ("lookahead_decay", "lookahead_start"):
    if not 0.0 <= float(opts[name]) <= 1.0:
      raise ValueError(f"optimizer.{name}={opts[name]} must be in [0, 1]")
  if float(opts["lookahead_power"]) < 0.0:
    raise ValueError(f"optimizer.lookahead_power={opts['lookahead_power']} must be >= 0")
  return opts


def is_norm_bias(path) -> bool:
  """True for a BatchNorm bias (a `bias` leaf under a module named BatchNorm_*), at any depth."""
  keys = [str(getattr(k, "key", "")) for k in path]
  return bool(keys) and keys[-1] == "bias" and any(k.startswith("BatchNorm") for k in keys[:-1])


def scale_norm_biases(scale: float) -> optax.GradientTransformation:
  """Multiplies the BatchNorm biases' entries of the update by `scale`, the rest unchanged.

  Why (airbench94's `bias_scaler`, 64): with BatchNorm's scale frozen (model.bn_scale=False) a
  channel's bias is its only trained affine parameter, it sets where the ReLU cuts, and at the
  network's learning rate it barely moves in a short schedule. Placed before the weight decay
  (make_optimizer), so the biases step faster while their decay per step stays the same.
  """
  return optax.masked(optax.scale(scale), lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: is_norm_bias(path), params))


def norm_bias_lr_scale(cfg) -> float:
  """config.optimizer.norm_bias_lr_scale, validated (NORM_BIAS_LR_SCALE_DEFAULT where absent)."""
  scale = float(cfg.get("norm_bias_lr_scale", NORM_BIAS_LR_SCALE_DEFAULT))
  if scale <= 0.0:
    raise ValueError(f"optimizer.norm_bias_lr_scale={scale} must be > 0 (1 = the network's "
                     "learning rate)")
  if scale != 1.0 and cfg.name not in ("sgd", "sgdw"):
    raise ValueError(f"optimizer.norm_bias_lr_scale={scale} applies to optimizer.name in "
                     f"['sgd', 'sgdw'], not {cfg.name!r} (Adam divides a gradient's scale out)")
  return scale


def make_optimizer(cfg, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
  """optax optimizer from `config.optimizer` (name, learning_rate, schedule, weight_decay).

  'sgd' adds weight_decay * params to the gradient (L2, which momentum then amplifies);
  'sgdw' is SGD with Nesterov momentum and DECOUPLED weight decay (Loshchilov & Hutter 2019):
  the decay lr_t * weight_decay * params is applied beside the momentum step, not through it,
  so its strength does not change with the momentum (the fast CIFAR recipes' parametrisation).
  Both SGDs step BatchNorm biases norm_bias_lr_scale times faster (scale_norm_biases).
  """
  lr = learning_rate_schedule(cfg, steps_per_epoch * epochs)
  scale = norm_bias_lr_scale(cfg)
  # at 1 the chain is the plain optimizer (same state tree: older checkpoints still restore)
  bias_scale = [scale_norm_biases(scale)] if scale != 1.0 else []
  if cfg.name == "adam":
    tx = optax.adam(lr)
    if cfg.weight_decay:
      tx = optax.adamw(lr, weight_decay=cfg.weight_decay)
  elif cfg.name == "sgd":
    tx = optax.chain(*bias_scale, optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(lr, momentum=cfg.momentum, nesterov=True))
  elif cfg.name == "sgdw":
    tx = optax.chain(optax.trace(decay=cfg.momentum, nesterov=True), *bias_scale,
                     optax.add_decayed_weights(cfg.weight_decay),
                     optax.scale_by_learning_rate(lr))
  else:
    raise ValueError(f"optimizer.name={cfg.name!r} is not one of {list(OPTIMIZERS)}")
  la = lookahead_options(cfg)
  if la["lookahead_every"]:
    tx = optax.chain(tx, lookahead(int(la["lookahead_every"]), float(la["lookahead_decay"]),
                                   float(la["lookahead_start"]), float(la["lookahead_power"]),
                                   steps_per_epoch * epochs, steps_per_epoch))
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
