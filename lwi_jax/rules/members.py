"""Parsing the config's rule strings into validated member specifications.

A rule string is "name" or "name:hparam=value,hparam=value", e.g. "inverse_tpr:gamma=2".
Every rule, static weights or one that acts through the loss (focal), the schedule (drw), the
sampler (oversample) or weights that move during training (group_dro, dynamic_difficulty),
comes from the one registry `weighting.RULES`.
Strings (not nested dicts) keep every member overridable from the command line:
  --config.rules="('uniform','inverse_tpr:gamma=0.5')"
A grid, "inverse_tpr:gamma=0:3:0.25" (start:stop:step, stop included) or
"inverse_tpr:gamma=0.5|1|2" (a list), expands into one ordinary rule per value (a product over
several grid hyper-parameters): they are members of the same ensemble (one compiled program),
and `RuleSpec.family` (the string as written) groups them for the console and the report.
Any rule string may end with the option `retrain=head` ("inverse_tpr:gamma=1,retrain=head"):
the member starts from its seed's trained baseline and retrains only the model's classifier
head with the rule's loss (study/head.py), instead of a full retraining from initialisation.
All validation happens here, before any data is loaded or any step is compiled.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax.numpy as jnp

from lwi_jax.member import MemberHParams
from lwi_jax.rules import weighting


def valid_rule_names() -> list[str]:
  return sorted(weighting.RULES)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  """One parsed rule string: a registry name and its full, checked hyper-parameters."""
  name: str
  hparams: dict
  family: str = ""  # the grid string this rule was expanded from; "" = written on its own
  retrain: str = "full"  # RETRAIN: "full" from initialisation, "head" from the baseline

  @property
  def static(self) -> bool:
    """Whether the rule is all in its class weights (no loss, schedule or sampler of its own)."""
    return weighting.RULES[self.name].static

  @property
  def family_label(self) -> str:
    return self.family or self.label

  @property
  def trains_on_validation(self) -> bool:
    return weighting.RULES[self.name].trains_on_validation

  @property
  def head_only(self) -> bool:
    return self.retrain == "head"

  @property
  def label(self) -> str:
    items = [f"{k}={v:g}" for k, v in sorted(self.hparams.items())]
    items += [f"retrain={self.retrain}"] if self.head_only else []
    return self.name + (":" + ",".join(items) if items else "")

  def build(self, scores, counts, epochs: int) -> MemberHParams:
    """This rule's MemberHParams for scores `s` and class `counts`, unchecked (pure: vmappable).

    A head-only member also keeps its BatchNorm statistics frozen (train.train_step).
    """
    hp = weighting.RULES[self.name].build(self.hparams, scores, counts, epochs)
    return hp.replace(freeze_batch_stats=jnp.asarray(self.head_only)) if self.head_only else hp

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


RETRAIN = ("full", "head")


def _pop_retrain(text: str, where: str) -> tuple[str, str]:
  """(the rule string without its `retrain=...` item, the retrain option: "full" if absent)."""
  name, colon, args = text.strip().partition(":")
  items = [a.strip() for a in args.split(",") if a.strip()]
  retrain = [i.partition("=")[2].strip() for i in items
             if i.partition("=")[0].strip() == "retrain"]
  if not retrain:
    return text, "full"
  if len(retrain) > 1 or retrain[0] not in RETRAIN:
    raise ValueError(f"{where}: {text!r}: retrain={'|'.join(retrain)!s} is invalid; need one "
                     f"of {list(RETRAIN)}")
  rest = [i for i in items if i.partition("=")[0].strip() != "retrain"]
  return name + (colon + ",".join(rest) if rest else ""), retrain[0]


def split_spec(text: str, where: str) -> tuple[str, dict[str, float]]:
  """'name:key=value,...' -> (name, {key: value}), the syntax of rule and post-hoc strings;
  one-line errors naming `where`. What the keys and values may be is the caller's registry's."""
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
  return name.strip(), hparams


def parse_rule(text: str, where: str = "config.rules") -> RuleSpec:
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"{where}: each rule must be a non-empty string like 'inverse_tpr:gamma=1', "
                     f"got {text!r}; valid rules: {valid_rule_names()}")
  text, retrain = _pop_retrain(text, where)
  name, hparams = split_spec(text, where)
  if name not in weighting.RULES:
    raise ValueError(f"{where}: unknown rule {name!r}; valid rules: {valid_rule_names()}")
  return RuleSpec(name, weighting.validate(name, hparams, where=f"{where} {text!r}"),
                   retrain=retrain)


MAX_GRID = 200  # members one grid string may expand into: a typo like 0:3:0.0001 is refused


def _grid_values(text: str, key: str, value: str, where: str) -> list[float]:
  """The values of one `key=value` item: a number, start:stop:step, or a|b|c."""
  def number(v):
    try:
      return float(v)
    except ValueError:
      raise ValueError(f"{where}: {text!r}: {key}={v!r} is not a number") from None
  if "|" in value:
    return [number(v) for v in value.split("|")]
  if ":" not in value:
    return [number(value)]
  parts = [number(v) for v in value.split(":")]
  if len(parts) != 3 or not parts[2] > 0 or parts[1] < parts[0]:
    raise ValueError(f"{where}: {text!r}: grid {key}={value!r} must be start:stop:step with "
                     "step > 0 and stop >= start (e.g. gamma=0:3:0.25), or a list a|b|c")
  count = int(math.floor((parts[1] - parts[0]) / parts[2] + 1e-9)) + 1
  if count > MAX_GRID:
    raise ValueError(f"{where}: {text!r}: grid {key}={value!r} has {count} values "
                     f"(at most {MAX_GRID})")
  # rounded so that 0:3:0.1 gives 0.3, not 0.30000000000000004 (labels and fingerprints)
  return [round(parts[0] + i * parts[2], 10) for i in range(count)]


def expand_rule(text: str, where: str = "config.rules") -> list[RuleSpec]:
  """The rules of one rule string: one for a plain rule, one per grid point for a grid.

  Args:
    text: "name", "name:hp=v,...", or with grid values "name:hp=a:b:step" / "name:hp=a|b|c".
    where: the config field, for the error messages.

  Returns:
    RuleSpecs in grid order (the last hyper-parameter varies fastest); a grid's share its
    `family` (the string as written).
  """
  if not isinstance(text, str) or ("|" not in text and text.count(":") < 2):
    return [parse_rule(text, where)]
  family = text.strip()
  text, retrain = _pop_retrain(text, where)
  name, _, args = text.strip().partition(":")
  items = [a.strip() for a in args.split(",") if a.strip()]
  grids = []
  for item in items:
    key, eq, value = item.partition("=")
    if not eq:
      raise ValueError(f"{where}: {text!r}: hyper-parameter {item!r} must be written key=value")
    grids.append([(key.strip(), v) for v in _grid_values(text, key.strip(), value.strip(),
                                                         where)])
  specs = []
  for combo in itertools.product(*grids):
    one = parse_rule(name + ":" + ",".join(f"{k}={v!r}" for k, v in combo), where)
    specs.append(dataclasses.replace(one, family=family, retrain=retrain))
  return specs


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
  specs = [spec for r in rules for spec in expand_rule(r)]
  labels = [s.label for s in specs]
  if len(set(labels)) != len(labels):
    raise ValueError(f"config.rules has duplicates: {labels}")
  return [MemberSpec(r, s) for r, s in itertools.product(specs, seeds)]
