"""PNG figures of a study (matplotlib, no display needed), written atomically."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lwi_jax.report import front  # noqa: E402
from lwi_jax.report.paid_markdown import delta_tpr  # noqa: E402
from lwi_jax.report.text_format import MANY_CLASSES, plot_names  # noqa: E402
from lwi_jax.runtime import io_utils  # noqa: E402

TOP_PAIRS = 25  # bars of confused_pairs_*.png (drawn above MANY_CLASSES classes)


def _label(text) -> str:
  """`text` shown literally: a class or rule name such as 'a$b^$' would otherwise be parsed
  as matplotlib mathtext (and fail to draw)."""
  return str(text).replace("$", r"\$")


def _save(fig, path: str) -> None:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  plt.close(fig)
  io_utils.atomic_write_bytes(path, buf.getvalue())


def _finite(members: list[dict]) -> list[dict]:
  """Members that stayed finite (all of them if none did, so a failed study still plots)."""
  return [m for m in members if m.get("status", "ok") == "ok"] or members


def tpr_bars(results: dict):
  """Per-class TPR of the baseline vs every rule of the last round (the paper's figure 2)."""
  names = [_label(n) for n in results["dataset"]["class_names"]]
  base = np.array([m["test"]["tpr"] for m in _finite(results["baseline"])], float)
  rows = results["comparisons"][-1]
  series = [("baseline", base.mean(0), base.std(0))] + [
      (r["rule"], np.asarray(r["tpr_mean"]), np.asarray(r["tpr_sd"])) for r in rows]
  width = 0.8 / len(series)
  x = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(min(18, max(8, len(names) * 0.25 * len(series))), 4.5))
  colors = plt.get_cmap("tab20" if len(series) > 10 else "tab10").colors
  for i, (label, mean, sd) in enumerate(series):
    ax.bar(x + (i - (len(series) - 1) / 2) * width, mean * 100, width, yerr=sd * 100,
           label=_label(label), capsize=2, color=colors[i % len(colors)])
  ax.set_xticks(x, names, rotation=30, ha="right")
  ax.set_ylabel("test TPR (%)")
  ax.set_title("Per-class TPR, mean ± sd over seeds")
  ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return fig


def confusion(cm: np.ndarray, names, title: str):
  cm = np.asarray(cm, float)
  names = [_label(n) for n in names]
  norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(1 + 0.55 * len(names), 0.8 + 0.5 * len(names)))
  im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  for i in range(len(names)):
    for j in range(len(names)):
      ax.text(j, i, f"{norm[i, j] * 100:.0f}", ha="center", va="center", fontsize=7,
              color="white" if norm[i, j] > 0.5 else "black")
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
  ax.set_yticks(range(len(names)), names, fontsize=8)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(_label(title), fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.046)
  return fig


def tpr_sorted(results: dict):
  """Per-class TPR of the baseline and every rule, classes sorted by the baseline's TPR.

  Readable at any number of classes: one line per series, the x axis the class rank; the
  worst classes (left) are named."""
  names = results["dataset"]["class_names"]
  base = np.array([m["test"]["tpr"] for m in _finite(results["baseline"])], float).mean(0)
  order = np.argsort(base, kind="stable")
  fig, ax = plt.subplots(figsize=(10, 4.5))
  ax.plot(np.arange(len(names)), base[order] * 100, "k-", lw=2, label="baseline")
  for r in results["comparisons"][-1]:
    ax.plot(np.arange(len(names)), np.asarray(r["tpr_mean"])[order] * 100, lw=1,
            label=_label(r["rule"]))
  worst = ", ".join(_label(names[i]) for i in order[:5])
  ax.set_xlabel(f"class, sorted by the baseline's TPR (worst: {worst})")
  ax.set_ylabel("test TPR (%), mean over seeds")
  ax.set_title(f"Per-class TPR of {len(names)} classes")
  ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return fig


def confused_pairs(cm: np.ndarray, names, title: str, top: int = TOP_PAIRS):
  """The `top` (true, predicted) pairs with the largest share of the true class's examples."""
  cm = np.asarray(cm, float)
  share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  np.fill_diagonal(share, 0)
  flat = np.argsort(-share, axis=None, kind="stable")[:top]
  rows, cols = np.unravel_index(flat, share.shape)
  keep = share[rows, cols] > 0
  rows, cols = rows[keep], cols[keep]
  fig, ax = plt.subplots(figsize=(8, 1 + 0.3 * max(len(rows), 1)))
  ax.barh(np.arange(len(rows)), share[rows, cols] * 100, color="tab:red")
  ax.set_yticks(np.arange(len(rows)),
                [f"{_label(names[i])} → {_label(names[j])}" for i, j in zip(rows, cols)],
                fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("% of the true class's test examples predicted as the other class")
  ax.set_title(_label(title), fontsize=9)
  return fig


def training_curves(results: dict):
  members = results["baseline"] + (results["rounds"][-1] if results["rounds"] else [])
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for m in members:
    h = m["history"]
    epochs = np.arange(1, len(h["loss"]) + 1)
    style = "k-" if m["round"] == 0 else "-"
    for ax, key in zip(axes, ("loss", "accuracy", "val_accuracy")):
      ax.plot(epochs, np.asarray(h[key], float), style, lw=1, label=_label(m["label"]))
  for ax, title in zip(axes, ("training loss (weighted)", "training accuracy",
                              "validation accuracy")):
    ax.set_title(title)
    ax.set_xlabel("epoch")
  axes[-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  return fig


def front_plot(selection: dict):
  """Accuracy vs evenness on the test split: every point with its intervals in both
  coordinates, the non-dominated front drawn, the baseline marked, the held-out choice
  highlighted (its selection-split point too, hollow)."""
  scale = front.evenness_scale(selection["evenness"])
  ylabel = front.EVENNESS_TEXT[selection["evenness"]].format(k=selection["worst_k"])
  fig, ax = plt.subplots(figsize=(8, 5.5))
  chosen = (selection["chosen"] or {}).get("rule")
  pts = selection["front"]["test"]
  for p in pts:
    a, e = p["accuracy"], p["evenness"]
    x, y = a["mean"] * 100, e["mean"] * scale
    err = ([[x - a["ci_low"] * 100], [a["ci_high"] * 100 - x]],
           [[y - e["ci_low"] * scale], [e["ci_high"] * scale - y]])
    style = ("ks" if p["rule"] == "baseline" else "r*" if p["rule"] == chosen
             else "o" if p["on_front"] else ".")
    ax.errorbar(x, y, xerr=err[0], yerr=err[1], fmt=style, ms=12 if p["rule"] == chosen else 6,
                ecolor="0.7", elinewidth=0.8,
                capsize=2, zorder=3 if p["rule"] == chosen else 2)
    ax.annotate(_label(p["rule"]), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
  on = sorted((p for p in pts if p["on_front"]), key=lambda p: p["accuracy"]["mean"])
  ax.plot([p["accuracy"]["mean"] * 100 for p in on], [p["evenness"]["mean"] * scale for p in on],
          "g-", lw=1.2, label="non-dominated front (test)", zorder=1)
  if chosen:
    sel = next(p for p in selection["front"]["selection"] if p["rule"] == chosen)
    ax.plot(sel["accuracy"]["mean"] * 100, sel["evenness"]["mean"] * scale, "r*", mfc="none",
            ms=12, label=f"chosen, on the {selection['split']} split")
  ax.plot([], [], "ks", label="baseline (unweighted)")
  ax.plot([], [], "r*", ms=12, label=_label(f"chosen: {chosen}") if chosen else "chosen: none")
  ax.set_xlabel("test accuracy %")
  ax.set_ylabel(f"test {ylabel} (higher = more even)")
  ax.set_title("accuracy-evenness front, test split (bars: 95% bootstrap intervals)", fontsize=9)
  ax.legend(fontsize=7, loc="best")
  return fig


# Every file name write_all can produce. A rerun removes those it did not write this time (a
# study without a best rule must not keep the last run's confusion_best.png); files of any
# other name in plots/ are the user's and are never touched.
OUTPUT_NAMES = ("tpr_bars.png", "confusion_baseline.png", "confusion_best.png",
                "training_curves.png", "tpr_sorted.png", "confused_pairs_baseline.png",
                "confused_pairs_best.png", "front.png", "who_paid.png")


def who_paid(results: dict):
  """Per-class test TPR change (rule - baseline, points) of every rule of the last round, with
  the bootstrap's 95% intervals where the study has them: who gained, who paid."""
  names = [_label(n) for n in results["dataset"]["class_names"]]
  rows = [r for r in results["comparisons"][-1] if r.get("n", 1)]
  width = 0.8 / max(len(rows), 1)
  x = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(min(18, max(8, len(names) * 0.25 * len(rows))), 4.5))
  colors = plt.get_cmap("tab20" if len(rows) > 10 else "tab10").colors
  for i, row in enumerate(rows):
    mean, low, high = delta_tpr(results, row)
    err = None if low is None else np.abs(np.stack([mean - low, high - mean])) * 100
    ax.bar(x + (i - (len(rows) - 1) / 2) * width, mean * 100, width, yerr=err, capsize=2,
           label=_label(row["rule"]), color=colors[i % len(colors)])
  ax.axhline(0, color="k", lw=0.8)
  ax.set_xticks(x, names, rotation=30, ha="right")
  ax.set_ylabel("Δ test TPR (points, rule − baseline)")
  ax.set_title("Who paid: per-class TPR change, mean over seeds (bars: 95% bootstrap intervals)")
  ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return fig


def remove_stale(directory: str, written: set[str]) -> list[str]:
  """Removes this module's outputs in `directory` that are not in `written`; returns them.

  os.remove of one name is atomic: a reader sees the old file or none, never half of one.
  """
  stale = [n for n in OUTPUT_NAMES if n not in written
           and os.path.isfile(os.path.join(directory, n))]
  for name in stale:
    os.remove(os.path.join(directory, name))
  return stale


def write_all(directory: str, results: dict) -> list[str]:
  """Writes every figure of `results` into `directory`; returns the stale ones it removed."""
  written = set()

  def save(fig, name):
    _save(fig, os.path.join(directory, name))
    written.add(name)

  names = results["dataset"]["class_names"]
  many = len(names) > MANY_CLASSES
  if many:
    save(tpr_sorted(results), "tpr_sorted.png")
  else:
    save(tpr_bars(results), "tpr_bars.png")
  draw, prefix = (confused_pairs, "confused_pairs_") if many else (confusion, "confusion_")
  base_cm = np.sum([m["test"]["confusion"] for m in _finite(results["baseline"])], axis=0)
  save(draw(base_cm, names, "baseline (summed over seeds)"), prefix + "baseline.png")
  best = results["best_rule"]  # chosen in reporting.best_rule (criterion in report.md)
  if best["rule"] is not None:
    cm = np.sum([m["test"]["confusion"] for m in _finite(results["rounds"][-1]
                                                          + results.get("posthoc", []))
                 if m["rule"] == best["rule"]], axis=0)
    save(draw(cm, names, f"{best['rule']} (best rule: largest mean D within "
              f"{best['max_accuracy_drop']:g} pts of accuracy; summed over seeds)"),
         prefix + "best.png")
  save(training_curves(results), "training_curves.png")
  if "who_paid.png" in plot_names(results):
    save(who_paid(results), "who_paid.png")
  if results.get("selection"):
    save(front_plot(results["selection"]), "front.png")
  return remove_stale(directory, written)
