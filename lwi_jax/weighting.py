"""Weighting rules: pure functions from per-class scores (and counts) to class loss weights.

Every rule returns a float32 vector of length C normalised to mean 1, so the overall loss scale
(and hence the effective learning rate) is the same for every rule; only the balance between
classes changes. Rules are written with `jax.numpy`, so they also run inside a jitted training
loop (dynamic reweighting) and on plain numpy inputs.

Floors: scores are clipped to [SCORE_FLOOR, 1 - SCORE_FLOOR] before use. Without that a class
with TPR 0 gets an infinite `inverse_tpr` weight and a class with TPR 1 gets a zero
`class_difficulty` weight (it would stop being trained at all).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import chex
import jax.numpy as jnp
import numpy as np

SCORE_FLOOR = 0.01


def _normalise(w):
  return w / jnp.mean(w)


def _clip_scores(scores):
  return jnp.clip(jnp.asarray(scores, jnp.float32), SCORE_FLOOR, 1.0 - SCORE_FLOOR)


def uniform(scores, counts):
  del counts
  return jnp.ones_like(jnp.asarray(scores, jnp.float32))


def inverse_tpr(scores, counts, gamma: float = 1.0):
  """The source paper's rule w_c = (1 - (s_c - s̄)/s_c)^gamma = (s̄ / s_c)^gamma."""
  del counts
  s = _clip_scores(scores)
  return _normalise((jnp.mean(s) / s) ** gamma)


def class_difficulty(scores, counts, tau: float = 1.0):
  """Sinha et al. 2020: w_c = (1 - s_c)^tau, difficulty measured on held-out data."""
  del counts
  s = _clip_scores(scores)
  return _normalise((1.0 - s) ** tau)


def effective_number(scores, counts, beta: float = 0.999):
  """Cui et al. 2019: w_c = (1 - beta) / (1 - beta^{n_c}); uniform on balanced data."""
  del scores
  n = jnp.maximum(jnp.asarray(counts, jnp.float32), 1.0)
  return _normalise((1.0 - beta) / (1.0 - beta ** n))


def inverse_frequency(scores, counts):
  del scores
  n = jnp.maximum(jnp.asarray(counts, jnp.float32), 1.0)
  return _normalise(1.0 / n)


@dataclasses.dataclass(frozen=True)
class Rule:
  fn: Callable
  # hyper-parameter -> (default, predicate, description of the valid values)
  hparams: Mapping[str, tuple[float, Callable[[float], bool], str]]
  doc: str


RULES: dict[str, Rule] = {
    "uniform": Rule(uniform, {}, "all weights 1 (the unweighted control)"),
    "inverse_tpr": Rule(inverse_tpr, {"gamma": (1.0, lambda g: g >= 0, "gamma >= 0")},
                        "(mean(s)/s_c)^gamma"),
    "class_difficulty": Rule(class_difficulty, {"tau": (1.0, lambda t: t >= 0, "tau >= 0")},
                             "(1-s_c)^tau"),
    "effective_number": Rule(effective_number,
                             {"beta": (0.999, lambda b: 0 <= b < 1, "0 <= beta < 1")},
                             "(1-beta)/(1-beta^n_c)"),
    "inverse_frequency": Rule(inverse_frequency, {}, "1/n_c"),
}


def check_hparams(rule: str, spec: Mapping, hparams: Mapping[str, float], where: str
                  ) -> dict[str, float]:
  """Fills defaults from `spec` (name -> (default, predicate, text)) and checks every value."""
  unknown = set(hparams) - set(spec)
  if unknown:
    raise ValueError(f"{where}: rule {rule!r} has no hyper-parameter(s) {sorted(unknown)}; "
                     f"valid: {sorted(spec) or 'none'}")
  full = {}
  for name, (default, ok, text) in spec.items():
    value = float(hparams.get(name, default))
    if not np.isfinite(value) or not ok(value):
      raise ValueError(f"{where}: {rule}.{name}={value} is invalid; need {text}")
    full[name] = value
  return full


def validate(rule: str, hparams: Mapping[str, float], where: str = "rule") -> dict[str, float]:
  """Returns the full hyper-parameter dict for `rule`, or raises naming the valid choices."""
  if rule not in RULES:
    raise ValueError(f"{where}: unknown weighting rule {rule!r}; valid rules: {sorted(RULES)}")
  return check_hparams(rule, RULES[rule].hparams, hparams, where)


def compute_weights(rule: str, scores, counts, **hparams):
  """Weights (float32 [C], mean 1) of `rule` for per-class `scores` and training `counts`."""
  full = validate(rule, hparams)
  scores = jnp.asarray(scores, jnp.float32)
  chex.assert_rank(scores, 1)
  w = RULES[rule].fn(scores, jnp.asarray(counts), **full)
  chex.assert_shape(w, scores.shape)
  return w.astype(jnp.float32)
