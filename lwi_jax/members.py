"""Parsing the config's rule strings into validated member specifications.

A rule string is "name" or "name:hparam=value,hparam=value", e.g. "inverse_tpr:gamma=2".
Strings (not nested dicts) keep every member overridable from the command line:
  --config.rules="('uniform','inverse_tpr:gamma=0.5')"
All validation happens here, before any data is loaded or any step is compiled.
"""

from __future__ import annotations

import dataclasses
import itertools

from lwi_jax import weighting

# Rules that change the loss instead of the class weights: name -> (hparam -> (default, ok, text)).
LOSS_RULES = {
    "focal": {"gamma": (2.0, lambda g: g >= 0, "gamma >= 0")},
}


def valid_rule_names() -> list[str]:
  return sorted(set(weighting.RULES) | set(LOSS_RULES))


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  name: str
  hparams: dict

  @property
  def label(self) -> str:
    if not self.hparams:
      return self.name
    return self.name + ":" + ",".join(f"{k}={v:g}" for k, v in sorted(self.hparams.items()))

  @property
  def weight_rule(self) -> str:
    """The weighting rule that produces this member's class weights."""
    return "uniform" if self.name in LOSS_RULES else self.name

  @property
  def weight_hparams(self) -> dict:
    return {} if self.name in LOSS_RULES else dict(self.hparams)

  @property
  def focal_gamma(self) -> float:
    return self.hparams["gamma"] if self.name == "focal" else 0.0


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
  hparams = {}
  for item in filter(None, (a.strip() for a in args.split(","))):
    key, eq, value = item.partition("=")
    if not eq:
      raise ValueError(f"{where}: {text!r}: hyper-parameter {item!r} must be written key=value")
    try:
      hparams[key.strip()] = float(value)
    except ValueError:
      raise ValueError(f"{where}: {text!r}: {key.strip()}={value!r} is not a number") from None
  if name in LOSS_RULES:
    spec = LOSS_RULES[name]
    unknown = set(hparams) - set(spec)
    if unknown:
      raise ValueError(f"{where}: rule {name!r} has no hyper-parameter(s) {sorted(unknown)}; "
                       f"valid: {sorted(spec)}")
    full = {}
    for key, (default, ok, desc) in spec.items():
      full[key] = hparams.get(key, default)
      if not ok(full[key]):
        raise ValueError(f"{where}: {name}.{key}={full[key]} is invalid; need {desc}")
    return RuleSpec(name, full)
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
