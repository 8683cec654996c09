"""report.md's section on the scores behind the weights: each seed's per-class scores with
their Wilson intervals (and the shrunk scores), and the round-1 weights with intervals.

It stands apart because it describes the rules' input (rules/scores.py), not the
comparison of their results.
"""

from __future__ import annotations

import numpy as np

from lwi_jax.report.text_format import BEST_SHOWN, MANY_CLASSES, WORST_SHOWN, percent_text


def scores_section(results: dict) -> list[str]:
  """Markdown: the scores behind the weights, with intervals, and each weight's interval."""
  sc = results.get("scores")
  if not sc:
    return []
  all_names = results["dataset"]["class_names"]
  cols = np.arange(len(all_names))
  if len(all_names) > MANY_CLASSES:  # the lowest and highest scores of the first seed
    order = np.argsort(np.asarray(sc["seeds"][0]["raw"]), kind="stable")
    cols = np.concatenate([order[:WORST_SHOWN], order[-BEST_SHOWN:]])
  names = [all_names[i] for i in cols]
  pick = lambda v: np.asarray(v)[cols]
  conf = sc["config"]["confidence"]
  how = ("out-of-fold predictions of " + str(sc["config"]["folds"]) + " fold members per seed "
         "over the training pool" if sc["config"]["method"] == "crossfit"
         else "each seed's baseline on the validation split")
  lines = [f"## Scores behind the weights (method `{sc['config']['method']}`)", "",
           f"Per-class TPR s from {how}; brackets: {conf:.0%} Wilson intervals; n = examples "
           f"scored per class. Shrinkage: `{sc['config']['shrinkage']}`"
           + (" (the rules used the shrunk s in the last line of each seed)."
              if sc["config"]["shrinkage"] != "none" else ".")
           + (f" Shown: the {WORST_SHOWN} lowest and {BEST_SHOWN} highest scores of seed "
              f"{sc['seeds'][0]['seed']} of {len(all_names)} classes (all: `results.json`)."
              if len(cols) < len(all_names) else ""), "",
           "| seed | n/class | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
  for rec in sc["seeds"]:
    n = np.asarray(rec["n"])
    lines.append(f"| {rec['seed']} | {int(n.min())}–{int(n.max())} | " + " | ".join(
        f"{percent_text(s)} [{percent_text(lo)}, {percent_text(hi)}]" for s, lo, hi in
        zip(pick(rec["raw"]), pick(rec["wilson_low"]), pick(rec["wilson_high"]))) + " |")
    if sc["config"]["shrinkage"] != "none":
      lines.append(f"| {rec['seed']} shrunk | | "
                   + " | ".join(percent_text(s) for s in pick(rec["tpr"])) + " |")
  rows = [m for m in results["rounds"][0] if m.get("weight_interval")] if results["rounds"] else []
  if rows:
    lines += ["", f"Round-1 weights with {conf:.0%} intervals (parametric bootstrap of the "
              "score counts through shrinkage and rule; sampling weights for `oversample`):", "",
              "| member | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m in rows:
      field = "sample_weights" if m.get("rule_name") == "oversample" else "class_weights"
      w = pick(m["initial_class_weights" if field == "class_weights" else field])
      iv = m["weight_interval"][field]
      lines.append(f"| {m['label']} | " + " | ".join(
          f"{x:.2f} [{lo:.2f}, {hi:.2f}]" for x, lo, hi in zip(w, pick(iv["low"]),
                                                                pick(iv["high"]))) + " |")
  lines.append("")
  return lines

