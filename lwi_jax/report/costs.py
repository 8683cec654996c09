"""What each row of a study cost: training seconds per phase, and each rule's share of them.

Apart from results.py because it is the one place that reads the phases' wall times (the
`seconds` history) rather than their predictions; the numbers feed the cost column that answers
"is retraining worth it?" (a post-hoc row on the baseline costs 0).
"""

from __future__ import annotations

import numpy as np


def _trained_in(phase: dict, name: str) -> dict[str, list[int]]:
  """Phase name -> its members' indices: a round merged from a full and a head-only phase
  (study/phases.merge) names each member's phase; a plain phase is all `name`."""
  groups = {}
  for i, n in enumerate(phase.get("phase") or [name] * len(phase["rules"])):
    groups.setdefault(n, []).append(i)
  return groups


def _member_seconds(phase: dict, i: int) -> float:
  """Member i's phase's training seconds: the sum of its epochs' wall times (compilation and
  each epoch's validation included), shared by every member trained in that phase."""
  sec = phase["history"].get("seconds")
  return float(np.nansum(np.asarray(sec[i], np.float64))) if sec is not None and len(sec) else 0.0


def phase_seconds(phase: dict, name: str = "phase") -> dict[str, float]:
  """Training seconds of each phase a round's members were trained in (see _member_seconds)."""
  return {n: _member_seconds(phase, idx[0]) for n, idx in _trained_in(phase, name).items()}


def rule_costs(round_phases: list[dict], posthoc: dict | None) -> list[dict]:
  """Per round, rule -> training seconds spent on it beyond the baseline: its members' share of
  the phase(s) that trained them, summed over the rounds up to this one; a post-hoc row: its
  source rule's (0 on the baseline)."""
  out, spent = [], {}
  for r, phase in enumerate(round_phases):
    rules = list(phase["rules"])
    for idx in _trained_in(phase, f"round{r + 1}").values():
      sec, in_phase = _member_seconds(phase, idx[0]), [rules[i] for i in idx]
      for rule in dict.fromkeys(in_phase):
        spent[rule] = spent.get(rule, 0.0) + sec * in_phase.count(rule) / len(in_phase)
    out.append(dict(spent))
  if posthoc is not None and out:
    for rule, info in zip(posthoc["rules"], posthoc["posthoc"]):
      out[-1][rule] = out[-1].get(info["source_rule"], 0.0)
  return out
