"""Issue #25: the report and plots stay readable (and small) above 30 classes."""

import ml_collections
import numpy as np

from configs import common
from lwi_jax.report import markdown, plots, scores_markdown, text_format
from lwi_jax.report import results as results_lib

C = 40


def _member(rule, seed, rng, round_index=1):
  cm = np.diag(rng.integers(5, 10, C)) + rng.integers(0, 2, (C, C))
  tpr = np.diag(cm) / cm.sum(1)
  test = {"tpr": tpr, "confusion": cm, "accuracy": float(np.trace(cm) / cm.sum()),
          "macro_f1": 0.5, "var_tpr": float(np.var(tpr)), "worst_tpr": float(tpr.min())}
  hist = {"loss": [1.0, 0.5], "accuracy": [0.3, 0.6], "val_accuracy": [0.3, 0.5]}
  return {"round": round_index, "rule": rule, "seed": seed, "label": f"{rule}@seed{seed}",
          "test": test, "history": hist}


def _results(best):
  rng = np.random.default_rng(0)
  config = ml_collections.ConfigDict()
  common.add_study_fields(config, test="none")
  baseline = [_member("baseline", s, rng, 0) for s in (0, 1)]
  members = [_member(r, s, rng) for r in ("u", "w") for s in (0, 1)]
  rows = results_lib.compare_rules(baseline, members)
  return {
      "config": {"seeds": [0, 1], "model": {"name": "m"}, "optimizer": {"name": "adam"},
                 "train": {"epochs": 1, "batch_size": 8, "augment": "none"}},
      "dataset": {"name": "toy", "info": {}, "class_names": [f"class{i:02d}" for i in range(C)],
                  "sizes": {"train": 30, "validation": 3, "test": 30}},
      "backend": "cpu", "wall_seconds": 1.0, "test": "none", "baseline": baseline,
      "rounds": [members], "comparisons": [rows],
      "best_rule": {"rule": best, "max_accuracy_drop": 1.0,
                    "criterion": results_lib.best_rule_criterion(1.0)}}


def test_plots_above_30_classes_are_pairs_and_sorted_curves(tmp_path):
  results = _results("w")
  plots.write_all(str(tmp_path), results)
  names = sorted(p.name for p in tmp_path.iterdir())
  assert names == sorted(text_format.plot_names(results)) == [
      "confused_pairs_baseline.png", "confused_pairs_best.png", "tpr_sorted.png",
      "training_curves.png"]
  for name in names:
    height, width = plots.plt.imread(tmp_path / name).shape[:2]
    assert max(height, width) < 2000, (name, height, width)
  fig = plots.confused_pairs(np.asarray(results["baseline"][0]["test"]["confusion"]),
                             results["dataset"]["class_names"], "t")
  assert len(fig.axes[0].get_yticklabels()) == plots.TOP_PAIRS
  plots.plt.close(fig)


def test_report_above_30_classes_lists_worst_and_best_classes():
  results = _results(None)
  report = markdown.report_markdown(results)
  assert f"10 worst and 5 best of {C} classes" in report
  assert max(len(line) for line in report.splitlines()) < 400
  assert "no `plots/confused_pairs_best.png`" in report
  assert "`plots/tpr_sorted.png`, `plots/confused_pairs_baseline.png`" in report


def test_scores_section_above_30_classes_shows_the_extreme_scores():
  results = _results(None)
  raw = np.linspace(0.1, 0.9, C)
  results["scores"] = {
      "config": {"confidence": 0.95, "method": "validation", "shrinkage": "none"},
      "seeds": [{"seed": 0, "n": np.full(C, 5), "raw": raw, "wilson_low": raw / 2,
                 "wilson_high": raw, "tpr": raw}]}
  lines = scores_markdown.scores_section(results)
  header = next(line for line in lines if line.startswith("| seed |"))
  assert header.count("| class") == 15 and "class00 |" in header and "class39 |" in header
  assert "the 10 lowest and 5 highest scores of seed 0 of 40 classes" in "\n".join(lines)
