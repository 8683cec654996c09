"""Every text a person reads about a study: report.md, the console's closing table, the
failure line. Rendered from the results dict (report/results.py); nothing here computes a
statistic.
"""

from __future__ import annotations

import math
import os

import numpy as np

from lwi_jax.report.results import NON_FINITE, OK, mean_or_nan

TEST_TEXT = {
    "bootstrap": "p and brackets come from a paired, stratified bootstrap over the test examples "
                 "(one resample of the shared test set per replicate, applied to every seed; "
                 "statistic = mean over seeds of the paired difference; percentile 95% interval; "
                 "it conditions on the trained seeds, see lwi_jax/report/bootstrap.py)",
    "paired_t": "p is the paired t-test of the per-seed differences (brackets: its 95% "
                "t-interval; it ignores the test set's own sampling noise)",
    "none": "no test was requested (brackets: paired t-interval where there are >= 2 seeds)"}

def _ci(s: dict, scale: float = 1.0, digits: int = 2) -> str:
  if not math.isfinite(s["ci_low"]):
    return f"{s['mean'] * scale:+.{digits}f}"
  return (f"{s['mean'] * scale:+.{digits}f} [{s['ci_low'] * scale:+.{digits}f}, "
          f"{s['ci_high'] * scale:+.{digits}f}]")


def _p(x: float) -> str:
  return "–" if x is None or not math.isfinite(x) else (f"{x:.3f}" if x >= 0.001 else "<0.001")


def report_markdown(results: dict) -> str:
  cfg = results["config"]
  ds = results["dataset"]
  names = ds["class_names"]
  seeds = cfg["seeds"]
  lines = [f"# Learnability-imbalance study: {ds['name']}", ""]
  lines += [f"- Data: {ds['name']} ({ds['info'].get('source', '')}), train {ds['sizes']['train']}, "
            f"validation {ds['sizes']['validation']} ("
            + ("weights are derived from it" if cfg.get("scores", {}).get("method", "validation")
               == "validation" else "weights come from cross-fitted training scores, below")
            + "), "
            f"test {ds['sizes']['test']} (all numbers below).",
            f"- Model: `{cfg['model']['name']}` {json_compact(cfg['model'])}; optimizer "
            f"{json_compact(cfg['optimizer'])}; {cfg['train']['epochs']} epochs, batch "
            f"{cfg['train']['batch_size']}, augmentation `{cfg['train']['augment']}`.",
            f"- Seeds: {list(seeds)} (each rule is paired with the baseline of the same seed: same "
            "initialisation and data order). Backend: " + results["backend"] + ".",
            f"- Wall time: {results['wall_seconds']:.0f} s.", ""]
  if ds["info"].get("balanced") is False:  # image sources say (lwi_jax/data/image_report.py)
    lines += [f"- The training classes are not balanced (largest / smallest = "
              f"{ds['info']['imbalance_ratio']:.1f}): class frequency differs beside "
              "learnability, and the count-driven rules (effective_number, oversample, drw) "
              "act on it.", ""]
  lines += non_finite_section(results)
  base = [m for m in results["baseline"] if m.get("status", OK) == OK]
  for r, rows in enumerate(results["comparisons"], start=1):
    lines += [f"## Round {r}: rules vs the unweighted baseline (test split, mean over "
              f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''})", ""]
    test = _effective_test(results, rows)
    lines += ["Var(s) = mean((s_i - s̄)²) of per-class TPRs, ×10³. D = Var(baseline) − Var(rule), "
              "×10³ (positive = more even TPRs). Δ are rule − baseline, in points; brackets are "
              f"95% confidence intervals. Statistics: `{test}`: {TEST_TEXT[test]}; "
              "p(Holm) corrected over the rules of the round.", ""]
    lines += comparison_table(base, rows)
    partial = [f"`{row['rule']}`: {', '.join(row['excluded'])}" for row in rows
               if row["excluded"] and row["n"]]
    if partial:
      lines += ["", "† fewer seeds: non-finite members excluded (" + "; ".join(partial) + ")."]
    lines += ["", "Per-class TPR % (mean over seeds):", "",
              "| rule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    base_tpr = (np.mean([m["test"]["tpr"] for m in base], axis=0) if base
                else np.full(len(names), np.nan))
    lines.append("| baseline | " + " | ".join(f"{x * 100:.1f}" for x in base_tpr) + " |")
    for row in rows:
      lines.append(f"| {row['rule']} | " + " | ".join(f"{x * 100:.1f}" for x in row["tpr_mean"])
                   + " |")
    lines.append("")
    lines += mcnemar_lines(rows)
  lines += scores_section(results)
  fit = [float(m["history"]["accuracy"][-1]) for ms in results["rounds"] for m in ms
         if m.get("status", OK) == OK]
  lines += ["## Reading this table", "",
            f"- {best_rule_sentence(results)}",
            f"- {significant_sentence(results)}",
            "- " + ("The bootstrap resamples test examples given the trained seeds; the paired "
                    "t-test (compare.test=paired_t) looks at the seeds' spread instead"
                    if results["test"] == "bootstrap" else
                    "The paired t-test assumes roughly normal per-seed differences")
            + "; a wide interval means the study cannot tell, not that the rule has no effect."]
  if fit:
    lines += [f"- Final training accuracy of the weighted members: {min(fit) * 100:.1f}–"
              f"{max(fit) * 100:.1f}%. Fixed loss weights lose their effect once a network fits "
              "its training set (Byrd & Lipton 2019); compare `drw`, weight decay and fewer "
              "epochs when this is near 100%."]
  lines += ["",
            "Plots: `plots/tpr_bars.png`, `plots/confusion_baseline.png`, "
            + ("`plots/confusion_best.png`, " if _best(results) else "")
            + "`plots/training_curves.png`. Per-member numbers: `summary.csv`, `results.json`.",
            ""]
  return "\n".join(lines)


def comparison_table(baseline: list[dict], rows: list[dict]) -> list[str]:
  """The markdown table of one round: the baseline, then one row per rule."""
  baseline = [m for m in baseline if m.get("status", OK) == OK]
  base_var = mean_or_nan([float(m["test"]["var_tpr"]) for m in baseline])
  base_acc = mean_or_nan([float(m["test"]["accuracy"]) for m in baseline])
  base_worst = mean_or_nan([float(m["test"]["worst_tpr"]) for m in baseline])
  lines = ["| rule | acc % | Δacc (pts) | p | Var(s)×10³ | D×10³ | p | p(Holm) | "
           "worst TPR % | Δworst (pts) |", "|---|---|---|---|---|---|---|---|---|---|"]
  if baseline:
    lines.append(f"| baseline | {base_acc * 100:.2f} | | | {base_var * 1e3:.2f} | | | | "
                 f"{base_worst * 100:.1f} | |")
  else:
    lines.append("| baseline | excluded: every baseline member non-finite | | | | | | | | |")
  for row in rows:
    if row.get("n", 1) == 0:
      lines.append(f"| {row['rule']} | excluded: every member non-finite or derived from one "
                   "| | | | | | | | |")
      continue
    mark = " †" if row.get("excluded") else ""
    lines.append(
        f"| {row['rule']}{mark} | {row['accuracy_mean'] * 100:.2f} | "
        f"{_ci(row['delta_accuracy'], 100)} | {_p(row['delta_accuracy']['p_value'])} | "
        f"{row['var_tpr_mean'] * 1e3:.2f} | {_ci(row['D'], 1e3)} | {_p(row['D']['p_value'])} | "
        f"{_p(row['D']['p_holm'])} | {row['worst_tpr_mean'] * 100:.1f} | "
        f"{_ci(row['delta_worst_tpr'], 100, 1)} |")
  return lines


def _best(results: dict) -> dict | None:
  """The comparison row of results["best_rule"] (last round), or None."""
  name = results.get("best_rule", {}).get("rule")
  rows = results["comparisons"][-1] if results["comparisons"] else []
  return next((r for r in rows if r["rule"] == name), None)


def best_rule_sentence(results: dict) -> str:
  info = results["best_rule"]
  rows = results["comparisons"][-1] if results["comparisons"] else []
  best = _best(results)
  finite = [r for r in rows if math.isfinite(r["D"]["mean"])]
  largest = max(finite, key=lambda r: r["D"]["mean"], default=None)
  text = (f"Best rule: `{best['rule']}` (D {best['D']['mean'] * 1e3:+.2f}×10⁻³, Δacc "
          f"{best['delta_accuracy']['mean'] * 100:+.2f} pts)" if best else "Best rule: none")
  text += f", chosen as {info['criterion']}"
  if best is None:
    text += "; no rule qualifies, so there is no `plots/confusion_best.png`"
  if largest is not None and largest is not best and largest["D"]["mean"] > 0:
    text += (f". The largest D overall, `{largest['rule']}` "
             f"({largest['D']['mean'] * 1e3:+.2f}×10⁻³), costs "
             f"{-largest['delta_accuracy']['mean'] * 100:.2f} points of accuracy")
  return text + "."


def console_summary(results: dict) -> str:
  """What the console shows at the end: the last round's table and how to read it."""
  rows = results["comparisons"][-1]
  lines = [f"Test split, mean over {len(results['config']['seeds'])} seed(s); Var and D ×10³, "
           f"Δ in points (rule − baseline); intervals and p: `{_effective_test(results, rows)}`:",
           ""]
  lines += comparison_table(results["baseline"], rows)
  lines += ["", best_rule_sentence(results), significant_sentence(results)]
  return "\n".join(lines)


def _effective_test(results: dict, rows: list[dict]) -> str:
  """The method behind a round's intervals (an old workdir without predictions: paired_t)."""
  if results["test"] == "bootstrap" and not all(r["D"].get("method") == "bootstrap"
                                                for r in rows):
    return "paired_t"
  return results["test"]


def non_finite_section(results: dict) -> list[str]:
  """report.md's warning block listing every excluded member (empty when all are finite)."""
  bad = results.get("non_finite_members", [])
  if not bad:
    return []
  lines = ["## FAILED: non-finite members (excluded from every comparison)", "",
           f"{len(bad)} member(s) cannot be trusted: their loss, parameters or weights became NaN "
           "or infinite, or their weights would have been derived from such a member. Their "
           "numbers are left out of every mean, D and test below. Lower the learning rate or "
           "the rule's hyper-parameters.", ""]
  for b in bad:
    why = (f"non-finite in epoch {b['epoch']}" if b["status"] == NON_FINITE
           else "its weights would come from a non-finite member")
    lines.append(f"- `{b['label']}` ({b['phase']}): {why}")
  return lines + [""]


def json_compact(d: dict) -> str:
  return ", ".join(f"{k}={v}" for k, v in d.items() if k != "name")


def significant_sentence(results: dict) -> str:
  rows = results["comparisons"][-1]
  if results["test"] == "none" or (results["test"] == "paired_t"
                                   and len(results["config"]["seeds"]) < 2):
    return "No significance test was requested (or fewer than 2 seeds): treat differences as anecdotal."
  good = [r["rule"] for r in rows
          if math.isfinite(r["D"]["p_holm"]) and r["D"]["p_holm"] < 0.05 and r["D"]["mean"] > 0
          and not (r["delta_accuracy"]["ci_high"] < 0)]
  if not good:
    return ("No rule lowered Var(s) significantly (Holm-corrected p < 0.05) without a "
            "significant accuracy loss.")
  return ("Rules that lowered Var(s) significantly (Holm p < 0.05) without a significant accuracy "
          "loss: " + ", ".join(f"`{g}`" for g in good) + ".")


def mcnemar_lines(rows: list[dict]) -> list[str]:
  """Markdown lines: McNemar's test of every rule vs its seed's baseline, per seed."""
  rows = [r for r in rows if r.get("mcnemar")]
  if not rows:
    return []
  lines = ["McNemar's exact test of each rule vs its seed's baseline on the shared test set "
           "(examples only the baseline / only the rule got right; p per seed):", "",
           "| rule | " + " | ".join(f"seed {s}" for s in rows[0]["seeds"]) + " |",
           "|---|" + "---|" * len(rows[0]["seeds"])]
  for r in rows:
    lines.append(f"| {r['rule']} | " + " | ".join(
        f"{m['baseline_only']}/{m['rule_only']}, p {_p(m['p_value'])}" for m in r["mcnemar"])
        + " |")
  return lines + [""]


def _percent(x: float) -> str:
  return "–" if not math.isfinite(x) else f"{x * 100:.1f}"


def scores_section(results: dict) -> list[str]:
  """Markdown: the scores behind the weights, with intervals, and each weight's interval."""
  sc = results.get("scores")
  if not sc:
    return []
  names = results["dataset"]["class_names"]
  conf = sc["config"]["confidence"]
  how = ("out-of-fold predictions of " + str(sc["config"]["folds"]) + " fold members per seed "
         "over the training pool" if sc["config"]["method"] == "crossfit"
         else "each seed's baseline on the validation split")
  lines = [f"## Scores behind the weights (method `{sc['config']['method']}`)", "",
           f"Per-class TPR s from {how}; brackets: {conf:.0%} Wilson intervals; n = examples "
           f"scored per class. Shrinkage: `{sc['config']['shrinkage']}`"
           + (" (the rules used the shrunk s in the last line of each seed)."
              if sc["config"]["shrinkage"] != "none" else "."), "",
           "| seed | n/class | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
  for rec in sc["seeds"]:
    n = np.asarray(rec["n"])
    lines.append(f"| {rec['seed']} | {int(n.min())}–{int(n.max())} | " + " | ".join(
        f"{_percent(s)} [{_percent(lo)}, {_percent(hi)}]" for s, lo, hi in
        zip(rec["raw"], rec["wilson_low"], rec["wilson_high"])) + " |")
    if sc["config"]["shrinkage"] != "none":
      lines.append(f"| {rec['seed']} shrunk | | " + " | ".join(_percent(s) for s in rec["tpr"])
                   + " |")
  rows = [m for m in results["rounds"][0] if m.get("weight_interval")] if results["rounds"] else []
  if rows:
    lines += ["", f"Round-1 weights with {conf:.0%} intervals (parametric bootstrap of the "
              "score counts through shrinkage and rule; sampling weights for `oversample`):", "",
              "| member | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m in rows:
      field = "sample_weights" if m.get("rule_name") == "oversample" else "class_weights"
      w = np.asarray(m["initial_class_weights" if field == "class_weights" else field])
      iv = m["weight_interval"][field]
      lines.append(f"| {m['label']} | " + " | ".join(
          f"{x:.2f} [{lo:.2f}, {hi:.2f}]" for x, lo, hi in zip(w, iv["low"], iv["high"])) + " |")
  lines.append("")
  return lines


def failure_line(results: dict) -> str | None:
  """One line saying why a finished study cannot be trusted, or None if it can."""
  bad = results.get("non_finite_members", [])
  if results.get("status", OK) == OK:
    return None
  diverged = [f"{b['label']} ({b['phase']}, epoch {b['epoch']})" for b in bad
              if b["status"] == NON_FINITE]
  return (f"FAILED: {len(diverged)} member(s) went non-finite (NaN/inf): "
          f"{', '.join(diverged[:5])}{' ...' if len(diverged) > 5 else ''}; they and "
          f"{len(bad) - len(diverged)} member(s) derived from them are excluded from the "
          f"comparisons. See {os.path.join(results['config']['workdir'], 'report.md')}; lower "
          "the learning rate or the rule's hyper-parameters")
