"""Weighting rules: pure functions from per-class scores (and counts) to class loss weights,
and `RULES`, the one registry of every rule a member can follow.

Every rule returns a float32 vector of length C normalised to mean 1, so the overall loss scale
(and hence the effective learning rate) is the same for every rule; only the balance between
classes changes. Rules are written with `jax.numpy`, so they also run inside a jitted training
loop (dynamic reweighting) and on plain numpy inputs.

Floors: scores are clipped to [SCORE_FLOOR, 1 - SCORE_FLOOR] before use. Without that a class
with TPR 0 gets an infinite `inverse_tpr` weight and a class with TPR 1 gets a zero
`class_difficulty` weight (it would stop being trained at all).

The registry: every rule (static weights, and the ones that act through the loss, the schedule,
the sampler or moving weights) is one `Rule` with one hyper-parameter shape,
name -> `HParam(default, predicate, text)`, and a `build` that turns validated hyper-parameters
and the validation scores into the member's `MemberHParams` (lwi_jax/member.py).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from lwi_jax import metrics
from lwi_jax.member import MemberHParams

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


def tpr_logit_offsets(scores, gamma: float = 1.0):
  """Logit-space inverse_tpr: b_c = γ·log(s_c / s̄) = -log w_c of `inverse_tpr` before its
  mean-1 normalisation (a constant added to every logit, which the softmax ignores)."""
  s = _clip_scores(scores)
  return gamma * (jnp.log(s) - jnp.log(jnp.mean(s)))


def dynamic_weights_update(hparams: MemberHParams, confusion: jax.Array) -> MemberHParams:
  """Epoch-boundary update of dynamic class-difficulty members (Sinha et al. 2020).

  w = (1 - s_c)^tau from the validation TPRs `s` of the member's current state; members with
  dynamic_tau < 0 keep their weights. Pure: the weights are part of the carried state.
  """
  tpr = metrics.summarize_confusion(confusion)["tpr"]
  tau = jnp.maximum(hparams.dynamic_tau, 0.0)
  new = class_difficulty(tpr, None, tau=tau)
  return hparams.replace(class_weights=jnp.where(hparams.dynamic_tau >= 0, new,
                                                 hparams.class_weights))


# Jitted over the member axis: the trainer applies it at every epoch boundary.
ensemble_dynamic_weights_update = jax.jit(jax.vmap(dynamic_weights_update))


class HParam(NamedTuple):
  """One hyper-parameter of a rule: its default, what values are valid, and that in words."""
  default: float
  ok: Callable[[float], bool]
  text: str


def _weights(rule: str, scores, counts, hparams: Mapping[str, float]) -> jax.Array:
  """Weights (float32 [C], mean 1) of static `rule`; pure, so it traces under jit and vmap."""
  scores = jnp.asarray(scores, jnp.float32)
  chex.assert_rank(scores, 1)
  w = RULES[rule].fn(scores, jnp.asarray(counts), **hparams).astype(jnp.float32)
  chex.assert_shape(w, scores.shape)
  return w


def _static(rule: str):
  """Builder of a static weight rule: its weights become the member's class weights."""
  def build(hp, scores, counts, epochs):
    del epochs
    return MemberHParams.create(_weights(rule, scores, counts, hp))
  return build


def _focal(hp, scores, counts, epochs):
  del scores, epochs
  return MemberHParams.uniform(len(counts), focal_gamma=hp["gamma"])


def _drw(hp, scores, counts, epochs):
  return MemberHParams.create(_weights("inverse_tpr", scores, counts, {"gamma": hp["gamma"]}),
                              weights_from_epoch=int(round(hp["start"] * epochs)))


def _oversample(hp, scores, counts, epochs):
  del epochs
  return MemberHParams.uniform(
      len(counts), oversample=True,
      sample_weights=_weights("inverse_tpr", scores, counts, {"gamma": hp["gamma"]}))


def _group_dro(hp, scores, counts, epochs):
  del scores, epochs
  return MemberHParams.uniform(len(counts), dro_eta=hp["eta"])


def _dynamic_difficulty(hp, scores, counts, epochs):
  del epochs
  return MemberHParams.create(_weights("class_difficulty", scores, counts, {"tau": hp["tau"]}),
                              dynamic_tau=hp["tau"])


def _logit_tpr(hp, scores, counts, epochs):
  del epochs
  return MemberHParams.create(_weights("inverse_tpr", scores, counts, {"gamma": hp["weight"]}),
                              logit_offsets=tpr_logit_offsets(scores, hp["gamma"]))


def _online_eg(hp, scores, counts, epochs):
  del scores, epochs
  return MemberHParams.uniform(len(counts), online_eta=hp["eta"],
                               online_every=int(hp["every"]))


@dataclasses.dataclass(frozen=True)
class Rule:
  """One rule: its hyper-parameters, how a member follows it, and its README line.

  `fn` is the pure weight function of a static rule (None for rules that act otherwise);
  `build(hparams, scores, counts, epochs)` returns the member's `MemberHParams` (class weights
  all ones unless the rule sets them). Builders are pure (no checks), so they also run under
  vmap, e.g. over bootstrap draws of the scores (rules/scores.py); `check_member` checks what
  they built.
  """
  name: str
  hparams: Mapping[str, HParam]
  doc: str
  build: Callable[..., MemberHParams]
  fn: Callable | None = None
  # Reads the validation split while it trains (dynamic weights, online updates): a choice
  # made on that split is then never held out for its members (report/selection.py).
  trains_on_validation: bool = False

  @property
  def static(self) -> bool:
    return self.fn is not None

  def usage(self) -> str:
    """`name:hp=default,...` as written in config.rules (for the README table)."""
    if not self.hparams:
      return self.name
    return self.name + ":" + ",".join(f"{k}={v.default:g}" for k, v in self.hparams.items())


_GAMMA = HParam(1.0, lambda g: g >= 0, "gamma >= 0")
_TAU = HParam(1.0, lambda t: t >= 0, "tau >= 0")


def _rules(*rules: Rule) -> dict[str, Rule]:
  return {r.name: r for r in rules}


RULES: dict[str, Rule] = _rules(
    Rule("uniform", {}, "all weights 1 (the unweighted control: its D should be ≈ 0)",
         _static("uniform"), uniform),
    Rule("inverse_tpr", {"gamma": _GAMMA},
         "the paper's `w_c = (1 − (s_c − s̄)/s_c)^γ = (s̄/s_c)^γ`",
         _static("inverse_tpr"), inverse_tpr),
    Rule("class_difficulty", {"tau": _TAU}, "`(1 − s_c)^τ` (Sinha et al. 2020)",
         _static("class_difficulty"), class_difficulty),
    Rule("effective_number", {"beta": HParam(0.999, lambda b: 0 <= b < 1, "0 <= beta < 1")},
         "`(1 − β)/(1 − β^{n_c})` from class counts (Cui et al. 2019)",
         _static("effective_number"), effective_number),
    Rule("inverse_frequency", {}, "`1/n_c`", _static("inverse_frequency"), inverse_frequency),
    Rule("focal", {"gamma": HParam(2.0, lambda g: g >= 0, "gamma >= 0")},
         "focal loss (Lin et al. 2017), uniform weights", _focal),
    Rule("drw", {"gamma": _GAMMA,
                 "start": HParam(0.5, lambda f: 0 <= f < 1,
                                 "0 <= start < 1 (fraction of epochs)")},
         "deferred re-weighting (Cao et al. 2019): `inverse_tpr` weights from epoch "
         "`start·epochs`", _drw),
    Rule("oversample", {"gamma": _GAMMA},
         "TPR-driven oversampling: class `c` drawn with p ∝ `(s̄/s_c)^γ`, unweighted loss",
         _oversample),
    Rule("group_dro", {"eta": HParam(0.01, lambda x: x > 0, "eta > 0")},
         "online group DRO over classes (Sagawa et al. 2020): weights updated every step",
         _group_dro),
    Rule("dynamic_difficulty", {"tau": _TAU},
         "class-difficulty weights (Sinha et al. 2020) recomputed from validation TPRs at every "
         "epoch boundary", _dynamic_difficulty, trains_on_validation=True),
    Rule("logit_tpr", {"gamma": _GAMMA,
                       "weight": HParam(0.0, lambda g: g >= 0, "weight >= 0")},
         "logit-space `inverse_tpr` (logit adjustment driven by `s`, Menon et al. 2021): "
         "`CE(logits + γ·log(s_c/s̄))` in the training loss only, optionally with "
         "`inverse_tpr` weights of exponent `weight`", _logit_tpr),
    Rule("online_eg", {"eta": HParam(0.1, lambda x: x >= 0, "eta >= 0"),
                       "every": HParam(10.0, lambda k: k >= 1 and k == int(k),
                                       "every >= 1, an integer (steps)")},
         "online validation-driven weights in logit space (Narasimhan & Menon 2021): every "
         "`every` steps `λ_c ← λ_c·exp(η·FNR_c)` from a validation batch, loss "
         "`CE(logits − log λ)`", _online_eg, trains_on_validation=True),
)


def static_rule_names() -> list[str]:
  return sorted(name for name, r in RULES.items() if r.static)


def rules_table() -> str:
  """The README's rule table, generated from the registry (a test keeps the README in sync)."""
  lines = ["| rule | what it does | hyper-parameters (default) |", "|---|---|---|"]
  for r in RULES.values():
    hps = "; ".join(f"{v.text}, default {v.default:g}" for v in r.hparams.values()) or "none"
    lines.append(f"| `{r.usage()}` | {r.doc} | {hps} |")
  return "\n".join(lines)


def check_hparams(rule: str, spec: Mapping[str, HParam], hparams: Mapping[str, float],
                  where: str) -> dict[str, float]:
  """Fills defaults from `spec` (name -> HParam) and checks every value."""
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
    raise ValueError(f"{where}: unknown rule {rule!r}; valid rules: {sorted(RULES)}")
  return check_hparams(rule, RULES[rule].hparams, hparams, where)


def check_weights(rule: str, hparams: Mapping[str, float], weights, scores,
                  class_names: Sequence[str] | None = None, what: str = "weight") -> None:
  """Raises unless every weight is finite and > 0, naming the rule, hyper-parameter and class.

  An extreme exponent overflows or underflows float32 ((s̄/s_c)^1e9 = inf, 0.99^1e9 = 0) and
  the mean-1 normalisation then turns the vector into [0, nan]: a member trained on it would
  learn nothing (or NaN) while looking like an ordinary result.
  """
  w = np.asarray(weights, np.float64)
  bad = np.flatnonzero(~np.isfinite(w) | (w <= 0))
  if bad.size == 0:
    return
  c = int(bad[0])
  name = repr(class_names[c]) if class_names is not None else f"#{c}"
  hp = ", ".join(f"{k}={v:g}" for k, v in hparams.items()) or "no hyper-parameters"
  s = np.asarray(scores, np.float64)
  raise ValueError(
      f"rule {rule!r} ({hp}) gives class {name} (validation score {s[c]:.3f}) the {what} "
      f"{w[c]:g}: the value overflows or underflows float32. Use a smaller "
      f"{' / '.join(hparams) or 'value'} (weights must be finite and > 0; "
      f"{len(bad)} of {w.size} classes affected)")


def compute_weights(rule: str, scores, counts, class_names: Sequence[str] | None = None,
                    **hparams):
  """Weights (float32 [C], mean 1) of static `rule` for per-class `scores` and train `counts`.

  Raises if a weight is not finite and positive (see `check_weights`); `class_names` only
  makes that message name the class.
  """
  full = validate(rule, hparams)
  if not RULES[rule].static:
    raise ValueError(f"rule {rule!r} has no static weight vector; static weight rules: "
                     f"{static_rule_names()}")
  w = _weights(rule, scores, counts, full)
  check_weights(rule, full, w, scores, class_names)
  return w


def check_member(rule: str, hparams: Mapping[str, float], member: MemberHParams, scores,
                 class_names: Sequence[str] | None = None) -> MemberHParams:
  """`member` if its class and sampling weights are finite and > 0 and its logit offsets finite,
  else `check_weights`' error."""
  check_weights(rule, hparams, member.class_weights, scores, class_names)
  check_weights(rule, hparams, member.sample_weights, scores, class_names, what="sampling weight")
  offsets = np.asarray(member.logit_offsets, np.float64)
  if not np.isfinite(offsets).all():
    hp = ", ".join(f"{k}={v:g}" for k, v in hparams.items())
    raise ValueError(f"rule {rule!r} ({hp}) gives non-finite logit offsets {offsets}: use a "
                     f"smaller {' / '.join(hparams)}")
  return member
