"""Parsing the config's rule strings into validated member specifications.

A rule string is "name" or "name:hparam=value,hparam=value", e.g. "inverse_tpr:gamma=2".
Every rule, static weights or one that acts through the loss (focal), the schedule (drw), the
sampler (oversample) or weights that move during training (group_dro, dynamic_difficulty),
comes from the one registry `weighting.RULES`.
Strings (not nested dicts) keep every member overridable from the command line:
  --config.rules="('uniform','inverse_tpr:gamma=0.5')"
All validation happens here, before any data is loaded or any step is compiled.
"""

from __future__ import annotations

import dataclasses
import itertools

from lwi_jax.member import MemberHParams
from lwi_jax.rules import weighting


def valid_rule_names() -> list[str]:
  return sorted(weighting.RULES)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  """One parsed rule string: a registry name and its full, checked hyper-parameters."""
  name: str
  hparams: dict

  @property
  def label(self) -> str:
    if not self.hparams:
      return self.name
    return self.name + ":" + ",".join(f"{k}={v:g}" for k, v in sorted(self.hparams.items()))

  def build(self, scores, counts, epochs: int) -> MemberHParams:
    """This rule's MemberHParams for scores `s` and class `counts`, unchecked (pure: vmappable)."""
    return weighting.RULES[self.name].build(self.hparams, scores, counts, epochs)

  def member_hparams(self, scores, counts, epochs: int, class_names=None) -> MemberHParams:
    """MemberHParams of this rule given the validation TPRs `scores` and class `counts`.

    Raises (naming the rule, hyper-parameter and class; `class_names` only for the message) if
    the rule's weights would not be finite and positive.
    """
    try:
      return weighting.check_member(self.name, self.hparams,
                                    self.build(scores, counts, epochs), scores, class_names)
    except ValueError as e:  # name the member's rule as written, not only the inner rule
      raise ValueError(f"config.rules {self.label!r}: {e}") from None


@dataclasses.dataclass(frozen=True)
class MemberSpec:
  """One member of a study: a rule and the seed it shares with that seed's baseline."""
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
  if name not in weighting.RULES:
    raise ValueError(f"{where}: unknown rule {name!r}; valid rules: {valid_rule_names()}")
  return RuleSpec(name, weighting.validate(name, hparams, where=f"{where} {text!r}"))


def parse_members(rules, seeds) -> list[MemberSpec]:
  """The members of a study: rules x seeds, seed-major within each rule.

  Args:
    rules: config.rules, strings like "inverse_tpr:gamma=1".
    seeds: config.seeds, distinct non-negative integers.

  Returns:
    One MemberSpec per (rule, seed). Raises ValueError naming the config field otherwise.
  """
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
