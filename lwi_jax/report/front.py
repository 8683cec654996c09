"""The accuracy-evenness front: every rule's (accuracy, evenness) point on one split, with
paired bootstrap intervals in both coordinates, and the non-dominated set.

Evenness (`compare.evenness`, higher = more even, so a front maximises both coordinates):
- "var": -Var(s), the paper's measure (its gain over the baseline is D);
- "worst": the worst class's TPR;
- "worst_k": the mean TPR of the `compare.worst_k` worst classes.

Intervals come from the stratified bootstrap of bootstrap.py: one resample of the split's
examples per replicate, applied to every member (so a rule's difference to its seed's baseline
is paired), each rule's statistic the mean over its seeds. Numbers only;
report/decision_markdown.py and report/plots.py render them.
"""

from __future__ import annotations

import numpy as np

from lwi_jax import metrics
from lwi_jax.report import bootstrap

EVENNESS = ("var", "worst", "worst_k")
EVENNESS_TEXT = {"var": "−Var(s)×10³", "worst": "worst-class TPR %",
                 "worst_k": "worst-{k} mean TPR %"}


def validate(cmp) -> None:
  """Raises naming the `config.compare` field of the front or the selection that is unusable."""
  if cmp.evenness not in EVENNESS:
    raise ValueError(f"compare.evenness={cmp.evenness!r} is not one of {list(EVENNESS)}")
  if int(cmp.worst_k) < 1:
    raise ValueError(f"compare.worst_k={cmp.worst_k} must be >= 1")
  if cmp.selection not in ("validation", "none"):
    raise ValueError(f"compare.selection={cmp.selection!r} is not one of ['validation', 'none']")
  if not 0 < float(cmp.selection_alpha) < 1:
    raise ValueError(f"compare.selection_alpha={cmp.selection_alpha} must be in (0, 1)")


def evenness(confusion, measure: str, k: int = 2) -> np.ndarray:
  """Evenness of confusion matrices [..., C, C] (higher = more even)."""
  s = metrics.summarize_confusion(np.asarray(confusion), np)
  if measure == "var":
    return -s["var_tpr"]
  if measure == "worst":
    return s["worst_tpr"]
  if measure == "worst_k":
    return np.sort(s["tpr"], axis=-1)[..., :max(1, int(k))].mean(-1)
  raise ValueError(f"compare.evenness={measure!r} is not one of {list(EVENNESS)}")


def evenness_scale(measure: str) -> float:
  """Display factor of an evenness value (×10³ for Var, % for TPRs)."""
  return 1e3 if measure == "var" else 100.0


def non_dominated(accuracy, even) -> np.ndarray:
  """Mask of the points no other point dominates (>= in both coordinates, > in one).

  Ties and duplicates: two equal points do not dominate each other, so both stay on the front.
  A point with a non-finite coordinate is never on it.
  """
  a = np.asarray(accuracy, np.float64)
  e = np.asarray(even, np.float64)
  ok = np.isfinite(a) & np.isfinite(e)
  geq = (a[None, :] >= a[:, None]) & (e[None, :] >= e[:, None])
  gt = (a[None, :] > a[:, None]) | (e[None, :] > e[:, None])
  dominated = (geq & gt & ok[None, :]).any(1)  # row i: is some j at least as good, better once?
  return ok & ~dominated


def _interval(point: float, draws: np.ndarray, confidence: float) -> dict:
  alpha = (1 - confidence) / 2
  return {"mean": float(point), "ci_low": float(np.quantile(draws, alpha)),
          "ci_high": float(np.quantile(draws, 1 - alpha))}


def split_evidence(baseline: tuple, rules: dict, labels, num_classes: int, measure: str, k: int,
                   num_samples: int, seed: int, confidence: float = 0.95) -> dict:
  """Every rule's point and paired difference to the baseline on one split.

  Args:
    baseline: (seeds [S], predictions [S, N]) of the finite baseline members.
    rules: rule -> (seeds, predictions [s, N]) of its finite members (seeds among the baseline's).
    labels: true classes [N] of the split.
    num_classes: C.
    measure, k: the evenness (`compare.evenness`, `compare.worst_k`).
    num_samples, seed: bootstrap replicates and their seed (`compare.bootstrap_*`).
    confidence: of the intervals.

  Returns:
    {"baseline": {"accuracy", "evenness"}, "rules": {rule: {"accuracy", "evenness" (intervals),
    "delta_accuracy", "gain" (bootstrap.summary of the paired difference, with p)}}}.
  """
  base_seeds, base_preds = list(baseline[0]), np.asarray(baseline[1])
  blocks, index = [base_preds], {}
  start = len(base_seeds)
  for rule, (seeds, preds) in rules.items():
    index[rule] = (np.arange(start, start + len(seeds)), [base_seeds.index(s) for s in seeds])
    blocks.append(np.asarray(preds))
    start += len(seeds)
  observed, reps = bootstrap.resampled_confusions(np.concatenate(blocks), labels, num_classes,
                                                  num_samples, seed)
  acc = {"obs": metrics.summarize_confusion(observed, np)["accuracy"],
         "rep": metrics.summarize_confusion(reps, np)["accuracy"]}
  even = {"obs": evenness(observed, measure, k), "rep": evenness(reps, measure, k)}
  b = np.arange(len(base_seeds))
  out = {"baseline": {name: _interval(v["obs"][b].mean(), v["rep"][:, b].mean(-1), confidence)
                      for name, v in (("accuracy", acc), ("evenness", even))}, "rules": {}}
  for rule, (idx, bidx) in index.items():
    row = {}
    for name, v, diff in (("accuracy", acc, "delta_accuracy"), ("evenness", even, "gain")):
      row[name] = _interval(v["obs"][idx].mean(), v["rep"][:, idx].mean(-1), confidence)
      row[diff] = bootstrap.summary((v["obs"][idx] - v["obs"][bidx]).mean(),
                                    (v["rep"][:, idx] - v["rep"][:, bidx]).mean(-1), confidence)
    out["rules"][rule] = row
  return out


def front_points(evidence: dict) -> list[dict]:
  """The baseline and every rule as points, each marked whether it is on the front."""
  rows = [("baseline", evidence["baseline"])] + list(evidence["rules"].items())
  acc = [r["accuracy"]["mean"] for _, r in rows]
  even = [r["evenness"]["mean"] for _, r in rows]
  mask = non_dominated(acc, even)
  return [{"rule": name, "accuracy": r["accuracy"], "evenness": r["evenness"],
           "on_front": bool(m)} for (name, r), m in zip(rows, mask)]
