"""Parsing the config's rule strings into validated member specifications.

A rule string is "name" or "name:hparam=value,hparam=value", e.g. "inverse_tpr:gamma=2".
Static weighting rules come from `weighting.RULES`; `TRAINING_RULES` adds rules that act
through the loss (focal), the schedule (drw), the sampler (oversample) or weights that move
during training (group_dro, dynamic_difficulty).
Strings (not nested dicts) keep every member overridable from the command line:
  --config.rules="('uniform','inverse_tpr:gamma=0.5')"
All validation happens here, before any data is loaded or any step is compiled.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from lwi_jax import weighting

_GAMMA = {"gamma": (1.0, lambda g: g >= 0, "gamma >= 0")}


def _hp(default, ok, text):
  return (default, ok, text)


# Rules that act through something other than a static weight vector:
# name -> (hyper-parameter spec, builder(hparams, scores, counts, epochs) -> MemberHParams kwargs, doc).
TRAINING_RULES = {
    "focal": ({"gamma": _hp(2.0, lambda g: g >= 0, "gamma >= 0")},
              lambda hp, s, n, e: {"focal_gamma": hp["gamma"]},
              "focal loss (Lin 2017), uniform class weights"),
    "drw": ({"gamma": _hp(1.0, lambda g: g >= 0, "gamma >= 0"),
             "start": _hp(0.5, lambda f: 0 <= f < 1, "0 <= start < 1 (fraction of epochs)")},
            lambda hp, s, n, e: {
                "class_weights": weighting.compute_weights("inverse_tpr", s, n, gamma=hp["gamma"]),
                "weights_from_epoch": int(round(hp["start"] * e))},
            "deferred re-weighting (Cao 2019): inverse_tpr weights from epoch start*epochs"),
    "oversample": (_GAMMA,
                   lambda hp, s, n, e: {
                       "oversample": True,
                       "sample_weights": weighting.compute_weights("inverse_tpr", s, n,
                                                                   gamma=hp["gamma"])},
                   "TPR-driven oversampling: draw class c with p ∝ (mean(s)/s_c)^gamma"),
    "group_dro": ({"eta": _hp(0.01, lambda x: x > 0, "eta > 0")},
                  lambda hp, s, n, e: {"dro_eta": hp["eta"]},
                  "online group DRO over classes (Sagawa 2020), weights updated every step"),
    "dynamic_difficulty": ({"tau": _hp(1.0, lambda t: t >= 0, "tau >= 0")},
                           lambda hp, s, n, e: {
                               "class_weights": weighting.compute_weights(
                                   "class_difficulty", s, n, tau=hp["tau"]),
                               "dynamic_tau": hp["tau"]},
                           "class-difficulty weights (Sinha 2020) recomputed from validation "
                           "TPRs at every epoch boundary"),
}


def valid_rule_names() -> list[str]:
  return sorted(set(weighting.RULES) | set(TRAINING_RULES))


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  name: str
  hparams: dict

  @property
  def label(self) -> str:
    if not self.hparams:
      return self.name
    return self.name + ":" + ",".join(f"{k}={v:g}" for k, v in sorted(self.hparams.items()))

  def member_hparams(self, scores, counts, epochs: int):
    """MemberHParams of this rule given the validation TPRs `scores` and class `counts`."""
    from lwi_jax import train  # local: train imports nothing from here, keep it that way
    num_classes = len(counts)
    kwargs = {"class_weights": np.ones(num_classes, np.float32)}
    if self.name in TRAINING_RULES:
      kwargs.update(TRAINING_RULES[self.name][1](self.hparams, scores, counts, epochs))
    else:
      kwargs["class_weights"] = weighting.compute_weights(self.name, scores, counts,
                                                          **self.hparams)
    return train.MemberHParams.create(**kwargs)


@dataclasses.dataclass(frozen=True)
class MemberSpec:
  rule: RuleSpec
  seed: int

  @property
  def label(self) -> str:
    return f"{self.rule.label}@seed{self.seed}"


def parse_rule(text: str, where: str = "config.rules") -> RuleSpec:
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"{where}: each rule must be a non-empty string like 'inverse_tpr:gamma=1', "
                     f"got {text!r}; valid rules: {valid_rule_names()}")
  name, _, args = text.strip().partition(":")
  name = name.strip()
  hparams = {}
  for item in filter(None, (a.strip() for a in args.split(","))):
    key, eq, value = item.partition("=")
    if not eq:
      raise ValueError(f"{where}: {text!r}: hyper-parameter {item!r} must be written key=value")
    try:
      hparams[key.strip()] = float(value)
    except ValueError:
      raise ValueError(f"{where}: {text!r}: {key.strip()}={value!r} is not a number") from None
  if name in TRAINING_RULES:
    return RuleSpec(name, weighting.check_hparams(name, TRAINING_RULES[name][0], hparams, where))
  if name not in weighting.RULES:
    raise ValueError(f"{where}: unknown rule {name!r}; valid rules: {valid_rule_names()}")
  return RuleSpec(name, weighting.validate(name, hparams, where=f"{where} {text!r}"))


def parse_members(rules, seeds) -> list[MemberSpec]:
  """rules x seeds, seed-major within each rule; errors name the config field."""
  rules = list(rules)
  seeds = list(seeds)
  if not rules:
    raise ValueError(f"config.rules is empty; give at least one of {valid_rule_names()}")
  if not seeds:
    raise ValueError("config.seeds is empty; give at least one integer seed")
  if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
    raise ValueError(f"config.seeds must be non-negative integers, got {seeds}")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"config.seeds has duplicates: {seeds}")
  specs = [parse_rule(r) for r in rules]
  labels = [s.label for s in specs]
  if len(set(labels)) != len(labels):
    raise ValueError(f"config.rules has duplicates: {labels}")
  return [MemberSpec(r, s) for r, s in itertools.product(specs, seeds)]
