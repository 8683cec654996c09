"""The honest choice: a rule (family and hyper-parameter) chosen on a selection split, then
confirmed once on test, beside the naive "best on test" and its optimism.

Protocol (`compare.selection="validation"`):
1. on the validation split, every rule's paired evenness gain and accuracy change against its
   seed's baseline (front.split_evidence);
2. the chosen rule: the largest evenness gain among the rules whose selection-split accuracy is
   at most `compare.max_accuracy_drop` points below the baseline's and whose gain is
   significant there (bootstrap p < `compare.selection_alpha`); the uniform control is never a
   candidate; ties go to the higher accuracy; none qualifies: keep the unweighted baseline;
3. the chosen rule's test gain with its interval is the study's confirmed effect (test played
   no part in the choice);
4. "best on test": the same accuracy tolerance, the largest test gain (no significance, the
   control allowed: what picking on test does); its optimism = its test gain minus its gain on
   the selection split, where it was not chosen.

The selection split must be independent of the scores the weights came from: with
`scores.method="crossfit"` (and one round) the weights come from the training pool and the
validation split is free; with `scores.method="validation"`, or rounds > 1, the weights were
derived from it and the choice is not held out: `independent` is False and every rendering says
so. Numbers only.
"""

from __future__ import annotations

import math

from lwi_jax.report import front

CONTROL = "uniform"


def independence(config) -> tuple[bool, str]:
  """(is the validation split free for selection, the reason in words)."""
  if config.scores.method != "crossfit":
    return False, ("the weights came from it (scores.method='validation'; "
                   "scores.method='crossfit' holds it out)")
  if int(config.rounds) > 1:
    return False, ("rounds > 1 derive weights from validation scores: use rounds=1 for a "
                   "held-out choice")
  return True, "the weights came from cross-fitted training scores, not from it"


def criterion_text(max_drop: float, alpha: float, measure: str) -> str:
  return (f"the largest {measure!r} evenness gain on the selection split among rules within "
          f"{max_drop:g} accuracy point{'s' if max_drop != 1 else ''} of the baseline there "
          f"(`compare.max_accuracy_drop`) whose gain is significant there (bootstrap p < "
          f"{alpha:g}), never the uniform control")


def _within(row: dict, max_drop: float) -> bool:
  d = row["delta_accuracy"]["mean"]
  return math.isfinite(d) and -100.0 * d <= max_drop + 1e-9


def choose(selection: dict, max_drop: float, alpha: float, controls=(CONTROL,)) -> str | None:
  """The rule the protocol picks from the selection split's evidence, or None.

  `controls`: rules never chosen: the unweighted loss under another name, and rules whose
  members (or post-hoc offsets) saw the selection split (report/results.selection_results).
  """
  ok = [(r, row) for r, row in selection["rules"].items()
        if r not in controls and _within(row, max_drop) and math.isfinite(row["gain"]["mean"])
        and row["gain"]["mean"] > 0 and row["gain"]["p_value"] < alpha]
  best = max(ok, key=lambda x: (x[1]["gain"]["mean"], x[1]["accuracy"]["mean"]), default=None)
  return best[0] if best else None


def best_on_test(test: dict, max_drop: float) -> str | None:
  """The naive pick: the largest test gain > 0 within the accuracy tolerance on test."""
  ok = [(r, row) for r, row in test["rules"].items()
        if _within(row, max_drop) and row["gain"]["mean"] > 0]
  best = max(ok, key=lambda x: (x[1]["gain"]["mean"], x[1]["accuracy"]["mean"]), default=None)
  return best[0] if best else None


def protocol(selection: dict, test: dict, config, families: dict, controls=(CONTROL,)) -> dict:
  """The selection, its confirmation on test and the naive pick, from two splits' evidence.

  Args:
    selection, test: front.split_evidence of the validation and test splits.
    config: the study's config (compare.*, scores.method, rounds).
    families: rule -> its family (the grid string it was expanded from, or itself).
    controls: the rules that train the unweighted loss (`uniform`, a grid's gamma=0).

  Returns:
    split, independent (+ why), criterion, chosen (rule, family, both splits' evidence) or None,
    naive (rule, test and selection gain, optimism) or None, the fronts of both splits.
  """
  cmp = config.compare
  max_drop, alpha = float(cmp.max_accuracy_drop), float(cmp.selection_alpha)
  independent, why = independence(config)
  pick = choose(selection, max_drop, alpha, controls)
  naive = best_on_test(test, max_drop)

  def evidence(rule):
    return {"rule": rule, "family": families.get(rule, rule),
            "selection": selection["rules"][rule], "test": test["rules"][rule]}

  out = {"split": "validation", "independent": independent, "why": why,
         "evenness": cmp.evenness, "worst_k": int(cmp.worst_k),
         "criterion": criterion_text(max_drop, alpha, cmp.evenness),
         "chosen": evidence(pick) if pick else None, "naive": None,
         "evidence": {"selection": selection, "test": test},
         "families": {r: families.get(r, r) for r in test["rules"]},
         "front": {"selection": front.front_points(selection), "test": front.front_points(test)}}
  if naive:
    n = evidence(naive)
    n["optimism"] = n["test"]["gain"]["mean"] - n["selection"]["gain"]["mean"]
    out["naive"] = n
  return out
