"""Multilayer perceptron for tabular features: [Dense -> (norm) -> activation -> dropout] x L -> Dense.

Inputs are the float32 [B, F] feature rows of a tabular source (data/tabular.py), already
imputed and standardised, so the network needs no input layer of its own. Every piece is a
config field (hidden_sizes, activation, dropout_rate, norm), and nothing here knows about the
ensemble: the trainer vmaps it like the other models.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from lwi_jax.models import activations

NORMS = ("none", "layer", "batch")


class MLP(nn.Module):
  num_classes: int
  hidden_sizes: Sequence[int] = (256, 256)
  activation: str = "relu"
  dropout_rate: float = 0.0
  norm: str = "none"  # 'layer' (LayerNorm) or 'batch' (BatchNorm, running stats in batch_stats)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    chex.assert_rank(x, 2)
    x = x.astype(jnp.float32)
    act = activations.get(self.activation)
    for i, width in enumerate(self.hidden_sizes):
      # No bias before BatchNorm: it would be cancelled by the mean, leaving a parameter with a
      # zero gradient (that Adam turns numerical noise into steps on).
      x = nn.Dense(width, use_bias=self.norm != "batch", name=f"dense{i}")(x)
      if self.norm == "layer":
        x = nn.LayerNorm(name=f"norm{i}")(x)
      elif self.norm == "batch":
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"norm{i}")(x)
      x = act(x)
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="head")(x)


def check_config(cfg) -> None:
  """Errors that name the field and the allowed values, before any data is loaded."""
  activations.get(cfg.activation)
  if cfg.norm not in NORMS:
    raise ValueError(f"model.norm={cfg.norm!r} is not one of {list(NORMS)}")
  sizes = tuple(cfg.hidden_sizes)
  if any(not isinstance(h, int) or h < 1 for h in sizes):
    raise ValueError(f"model.hidden_sizes={sizes} must be positive integers (() = a linear model)")
  if not 0.0 <= float(cfg.dropout_rate) < 1.0:
    raise ValueError(f"model.dropout_rate={cfg.dropout_rate} must be in [0, 1)")
