"""The pieces of report text that several sections (and the figures) share: how an interval,
a p-value, a percentage and seconds are written, the class count above which tables list
only the extreme classes, the best rule's row and the figure names the text points to.

It stands apart so that every section module (markdown.py, paid_markdown.py,
decision_markdown.py, scores_markdown.py) and plots.py import it, and none imports another
for a format.
"""

from __future__ import annotations

import math

# Above this many classes per-class columns and C x C images are unreadable (a 200-class
# confusion PNG was 9558 x 8643 px): the report lists the worst and best classes, the plots show
# sorted TPR curves and the most-confused pairs (plots.py).
MANY_CLASSES = 30
WORST_SHOWN, BEST_SHOWN = 10, 5


def ci_text(s: dict, scale: float = 1.0, digits: int = 2) -> str:
  """A difference's mean and 95% interval, "+1.23 [+0.45, +2.01]" (the mean alone without one)."""
  if not math.isfinite(s["ci_low"]):
    return f"{s['mean'] * scale:+.{digits}f}"
  return (f"{s['mean'] * scale:+.{digits}f} [{s['ci_low'] * scale:+.{digits}f}, "
          f"{s['ci_high'] * scale:+.{digits}f}]")


def p_text(x: float) -> str:
  """A p-value as the report prints it ("<0.001" below 0.001, "–" when undefined)."""
  return "–" if x is None or not math.isfinite(x) else (f"{x:.3f}" if x >= 0.001 else "<0.001")


def seconds_text(x) -> str:
  return "–" if x is None or not math.isfinite(x) else f"{x:.0f}"


def percent_text(x: float) -> str:
  return "–" if not math.isfinite(x) else f"{x * 100:.1f}"


def json_compact(d: dict) -> str:
  return ", ".join(f"{k}={v}" for k, v in d.items() if k != "name")


def best_row(results: dict) -> dict | None:
  """The comparison row of results["best_rule"] (last round), or None."""
  name = results.get("best_rule", {}).get("rule")
  rows = results["comparisons"][-1] if results["comparisons"] else []
  return next((r for r in rows if r["rule"] == name), None)


def plot_names(results: dict) -> list[str]:
  """The figures plots.write_all draws for `results`, in its order."""
  many = len(results["dataset"]["class_names"]) > MANY_CLASSES
  prefix = "confused_pairs_" if many else "confusion_"
  paid = not many and any(r.get("n", 1) for r in (results["comparisons"] or [[]])[-1])
  return (["tpr_sorted.png" if many else "tpr_bars.png", prefix + "baseline.png"]
          + ([prefix + "best.png"] if best_row(results) else [])
          + ["training_curves.png"] + (["who_paid.png"] if paid else []))

