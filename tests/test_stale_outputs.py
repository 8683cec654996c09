"""Issue #25: a rerun removes the plots that no longer belong to its study, and nothing else."""

import numpy as np

from lwi_jax.report import plots


def _results(best):
  hist = {"loss": [1.0, 0.5], "accuracy": [0.3, 0.6], "val_accuracy": [0.3, 0.5]}
  member = lambda rnd, rule: {"round": rnd, "label": f"{rule}@seed0", "rule": rule,
                              "history": hist, "test": {"tpr": [0.5, 0.6],
                                                        "confusion": np.eye(2, dtype=int) * 5}}
  return {"dataset": {"class_names": ["a", "b"]},
          "baseline": [member(0, "baseline")], "rounds": [[member(1, "w")]],
          "comparisons": [[{"rule": "w", "tpr_mean": [0.5, 0.6], "tpr_sd": [0, 0],
                            "D": {"mean": 0.1}, "accuracy_mean": 0.6}]],
          "best_rule": {"rule": best, "max_accuracy_drop": 1.0}}


def test_a_rerun_without_a_best_rule_removes_the_old_confusion_best(tmp_path):
  plots.write_all(str(tmp_path), _results("w"))
  assert (tmp_path / "confusion_best.png").is_file()
  (tmp_path / "my_figure.png").write_bytes(b"mine")  # the user's own file
  (tmp_path / "confusion_best.png.bak").write_bytes(b"mine too")
  removed = plots.write_all(str(tmp_path), _results(None))
  assert removed == ["confusion_best.png"]
  assert {p.name for p in tmp_path.iterdir()} == {
      "tpr_bars.png", "confusion_baseline.png", "training_curves.png", "who_paid.png",
      "my_figure.png", "confusion_best.png.bak"}
