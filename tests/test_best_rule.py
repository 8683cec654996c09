"""The "best rule" (report.md, plots/confusion_best.png) never rewards destroying accuracy."""

import ml_collections
import numpy as np
import pytest

from configs import common
from lwi_jax.report import markdown
from lwi_jax.report import results as results_lib

CLASSES = ("a", "b", "c")


def _scores(tpr, accuracy):
  tpr = np.asarray(tpr, np.float64)
  return {"tpr": tpr, "accuracy": accuracy, "macro_f1": accuracy, "var_tpr": float(np.var(tpr)),
          "worst_tpr": float(tpr.min())}


def _member(rule, seed, tpr, accuracy, round_index=1):
  return {"round": round_index, "rule": rule, "seed": seed, "label": f"{rule}@seed{seed}",
          "test": _scores(tpr, accuracy), "history": {"accuracy": np.array([0.9])}}


# Per rule: (per-class TPRs, accuracy) for seeds 0 and 1. The baseline's accuracy is 0.80.
BASELINE = [([0.9, 0.8, 0.5], 0.80), ([0.92, 0.78, 0.5], 0.80)]
RULES = {
    "wrecker": [([0.6, 0.6, 0.55], 0.74), ([0.62, 0.6, 0.56], 0.74)],  # largest D, -6 points
    "good": [([0.88, 0.78, 0.6], 0.795), ([0.9, 0.76, 0.6], 0.795)],  # smaller D, -0.5 points
    "worse": [([0.95, 0.85, 0.4], 0.81), ([0.96, 0.84, 0.4], 0.81)],  # D < 0, +1 point
}


def _results(rules, max_drop=None):
  config = ml_collections.ConfigDict()
  common.add_study_fields(config, test="none")  # the configs' defaults (max_accuracy_drop)
  if max_drop is not None:
    config.compare.max_accuracy_drop = max_drop
  baseline = [_member("baseline", s, *BASELINE[s], round_index=0) for s in (0, 1)]
  members = [_member(r, s, *RULES[r][s]) for r in rules for s in (0, 1)]
  rows = results_lib.compare_rules(baseline, members)
  tolerance = results_lib.max_accuracy_drop(config)
  best = results_lib.best_rule(rows, tolerance)
  return {
      "config": {"seeds": [0, 1], "model": {"name": "m"}, "optimizer": {"name": "adam"},
                 "train": {"epochs": 1, "batch_size": 8, "augment": "none"}},
      "dataset": {"name": "toy", "info": {}, "class_names": list(CLASSES),
                  "sizes": {"train": 30, "validation": 3, "test": 30}},
      "backend": "cpu", "wall_seconds": 1.0, "test": "none", "baseline": baseline,
      "rounds": [members], "comparisons": [rows],
      "best_rule": {"rule": best["rule"] if best else None, "max_accuracy_drop": tolerance,
                    "criterion": results_lib.best_rule_criterion(tolerance)}}


def test_largest_d_within_the_accuracy_tolerance_wins():
  results = _results(["wrecker", "good", "worse"])
  rows = {r["rule"]: r for r in results["comparisons"][0]}
  # The premise: the wrecker has the largest D, bought with 6 points of accuracy.
  assert rows["wrecker"]["D"]["mean"] > rows["good"]["D"]["mean"] > 0 > rows["worse"]["D"]["mean"]
  np.testing.assert_allclose(rows["wrecker"]["delta_accuracy"]["mean"], -0.06)
  assert results["best_rule"]["rule"] == "good"  # default tolerance: 1 point
  report = markdown.report_markdown(results)
  assert "Best rule: `good`" in report
  assert "at most 1 point below the baseline's (`compare.max_accuracy_drop`)" in report
  assert "The largest D overall, `wrecker`" in report and "costs 6.00 points" in report
  assert "plots/confusion_best.png" in report
  assert "Best rule: `good`" in markdown.console_summary(results)


def test_tolerance_is_a_config_field():
  assert _results(["wrecker", "good"], max_drop=10.0)["best_rule"]["rule"] == "wrecker"
  assert _results(["wrecker", "good"], max_drop=0.4)["best_rule"]["rule"] is None


def test_no_rule_qualifies_no_best_and_the_report_says_so():
  results = _results(["wrecker", "worse"])  # one costs 6 points, the other raises Var(s)
  assert results["best_rule"]["rule"] is None
  report = markdown.report_markdown(results)
  assert "Best rule: none" in report and "no rule qualifies" in report
  assert "plots/confusion_best.png" not in report.replace("no `plots/confusion_best.png`", "")


@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_bad_tolerance_names_the_field(value):
  config = ml_collections.ConfigDict({"compare": {"test": "none", "max_accuracy_drop": value}})
  with pytest.raises(ValueError, match="compare.max_accuracy_drop"):
    results_lib.max_accuracy_drop(config)


def test_console_keeps_zero_retraining_rows_and_the_answer_of_the_stacked_ones():
  """Post-hoc rows stacked on retrained rules stay in report.md; the console shows the trained
  rules, the baseline's post-hoc rows and whichever row is the answer, and says how many it
  left out (the main job's console must stay within 60 lines)."""
  results = _results(["wrecker", "good", "worse"])
  posthoc = {"good+arm": "good", "worse+arm": "worse", "baseline+arm": "baseline"}
  results["posthoc"] = [{"rule": r, "label": f"{r}@seed0", "posthoc": {
      "source_rule": src, "offsets": [0.1, 0.0, -0.1], "fit_split": "validation"}}
      for r, src in posthoc.items()]
  extra = results_lib.compare_rules(
      results["baseline"], [_member(r, s, *RULES[src if src != "baseline" else "good"][s])
                            for r, src in posthoc.items() for s in (0, 1)])
  results["comparisons"][0] += extra
  results["best_rule"]["rule"] = "good+arm"
  console = markdown.console_summary(results)
  table = [line.split(" | ")[0].lstrip("| ") for line in console.splitlines()
           if line.startswith("| ") and not line.startswith("| rule")]
  assert table == ["baseline", "wrecker", "good", "worse", "good+arm", "baseline+arm"]
  assert "(1 more post-hoc rows stacked on retrained rules: report.md)" in console
  assert "worse+arm" in markdown.report_markdown(results)
