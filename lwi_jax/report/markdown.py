"""report.md as one document, the console's closing table and the failure line: the setup,
each round's comparison table, per-class TPRs and McNemar's tests, the sentences on how to
read them. Rendered from the results dict (report/results.py); nothing here computes a
statistic.

The sections with a job of their own live beside it and are assembled here: who paid
(paid_markdown.py), the held-out decision and the front (decision_markdown.py), the scores
behind the weights (scores_markdown.py); the formats they share are in text_format.py.
"""

from __future__ import annotations

import math
import os

import numpy as np

from lwi_jax.report.decision_markdown import front_section
from lwi_jax.report.paid_markdown import confused_line, detail_section, who_paid_line
from lwi_jax.report.results import NON_FINITE, OK, mean_or_nan
from lwi_jax.report.scores_markdown import scores_section
from lwi_jax.report.text_format import (BEST_SHOWN, MANY_CLASSES, WORST_SHOWN, best_row, ci_text,
                                        json_compact, p_text, plot_names, seconds_text)

TEST_TEXT = {
    "bootstrap": "p and brackets come from a paired, stratified bootstrap over the test examples "
                 "(one resample of the shared test set per replicate, applied to every seed; "
                 "statistic = mean over seeds of the paired difference; percentile 95% interval; "
                 "it conditions on the trained seeds, see lwi_jax/report/bootstrap.py)",
    "paired_t": "p is the paired t-test of the per-seed differences (brackets: its 95% "
                "t-interval; it ignores the test set's own sampling noise)",
    "none": "no test was requested (brackets: paired t-interval where there are >= 2 seeds)"}


def report_markdown(results: dict) -> str:
  """report.md: the setup, each round's table with per-class TPRs and McNemar's tests, the
  scores behind the weights, and how to read it."""
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
    lines += comparison_table(base, rows, results.get("phase_seconds", {}).get("baseline"))
    partial = [f"`{row['rule']}`: {', '.join(row['excluded'])}" for row in rows
               if row["excluded"] and row["n"]]
    if partial:
      lines += ["", "† fewer seeds: non-finite members excluded (" + "; ".join(partial) + ")."]
    base_tpr = (np.mean([m["test"]["tpr"] for m in base], axis=0) if base
                else np.full(len(names), np.nan))
    lines += tpr_table(names, base_tpr, rows)
    lines.append("")
    lines += mcnemar_lines(rows)
  lines += detail_section(results)
  lines += front_section(results)
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
            "Plots: " + ", ".join(f"`plots/{n}`" for n in plot_names(results))
            + ". Per-member numbers: `summary.csv`, `results.json`.",
            ""]
  return "\n".join(lines)


def comparison_table(baseline: list[dict], rows: list[dict], baseline_seconds=None
                     ) -> list[str]:
  """The markdown table of one round: the baseline, then one row per rule. `train s`: the
  training seconds of the baseline's phase, and of each rule beyond it (0: post-hoc only)."""
  baseline = [m for m in baseline if m.get("status", OK) == OK]
  base_var = mean_or_nan([float(m["test"]["var_tpr"]) for m in baseline])
  base_acc = mean_or_nan([float(m["test"]["accuracy"]) for m in baseline])
  base_worst = mean_or_nan([float(m["test"]["worst_tpr"]) for m in baseline])
  lines = ["| rule | acc % | Δacc (pts) | p | Var(s)×10³ | D×10³ | p | p(Holm) | "
           "worst TPR % | Δworst (pts) | train s |", "|---" * 11 + "|"]
  if baseline:
    lines.append(f"| baseline | {base_acc * 100:.2f} | | | {base_var * 1e3:.2f} | | | | "
                 f"{base_worst * 100:.1f} | | {seconds_text(baseline_seconds)} |")
  else:
    lines.append("| baseline | excluded: every baseline member non-finite | | | | | | | | | |")
  for row in rows:
    if row.get("n", 1) == 0:
      lines.append(f"| {row['rule']} | excluded: every member non-finite or derived from one "
                   "| | | | | | | | | |")
      continue
    mark = " †" if row.get("excluded") else ""
    lines.append(
        f"| {row['rule']}{mark} | {row['accuracy_mean'] * 100:.2f} | "
        f"{ci_text(row['delta_accuracy'], 100)} | {p_text(row['delta_accuracy']['p_value'])} | "
        f"{row['var_tpr_mean'] * 1e3:.2f} | {ci_text(row['D'], 1e3)} | "
        f"{p_text(row['D']['p_value'])} | "
        f"{p_text(row['D']['p_holm'])} | {row['worst_tpr_mean'] * 100:.1f} | "
        f"{ci_text(row['delta_worst_tpr'], 100, 1)} | {seconds_text(row.get('train_seconds'))} |")
  return lines


def best_rule_sentence(results: dict) -> str:
  info = results["best_rule"]
  rows = results["comparisons"][-1] if results["comparisons"] else []
  best = best_row(results)
  finite = [r for r in rows if math.isfinite(r["D"]["mean"])]
  largest = max(finite, key=lambda r: r["D"]["mean"], default=None)
  text = (f"Best rule: `{best['rule']}` (D {best['D']['mean'] * 1e3:+.2f}×10⁻³, Δacc "
          f"{best['delta_accuracy']['mean'] * 100:+.2f} pts)" if best else "Best rule: none")
  text += f", chosen as {info['criterion']}"
  if best is None:
    text += (f"; no rule qualifies, so there is no "
             f"`plots/{plot_names(results)[1].replace('baseline', 'best')}`")
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
  # Post-hoc rows stacked on retrained rules stay in report.md unless they are the answer: the
  # console keeps the trained rules, the zero-retraining rows and the chosen/best row.
  stacked = {m["rule"] for m in results.get("posthoc", [])
             if m["posthoc"].get("source_rule") != "baseline"}
  chosen = (results.get("selection") or {}).get("chosen") or {}
  answers = {chosen.get("rule"), (results.get("best_rule") or {}).get("rule")}
  shown = [r for r in rows if r["rule"] not in stacked or r["rule"] in answers]
  lines += comparison_table(results["baseline"], shown,
                            results.get("phase_seconds", {}).get("baseline"))
  if len(shown) < len(rows):
    lines.append(f"({len(rows) - len(shown)} more post-hoc rows stacked on retrained rules: "
                 "report.md)")
  lines += ["", best_rule_sentence(results), significant_sentence(results)]
  lines += [line for line in (confused_line(results), who_paid_line(results)) if line]
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


def significant_sentence(results: dict) -> str:
  rows = results["comparisons"][-1]
  if results["test"] == "none" or (results["test"] == "paired_t"
                                   and len(results["config"]["seeds"]) < 2):
    return ("No significance test was requested (or fewer than 2 seeds): treat differences as "
            "anecdotal.")
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
        f"{m['baseline_only']}/{m['rule_only']}, p {p_text(m['p_value'])}" for m in r["mcnemar"])
        + " |")
  return lines + [""]


def tpr_table(names, base_tpr: np.ndarray, rows: list[dict]) -> list[str]:
  """Per-class TPR % of the baseline and every rule: one column per class up to MANY_CLASSES;
  above, one row per class for the baseline's worst and best classes only (every number is in
  summary.csv and results.json)."""
  series = [("baseline", base_tpr)] + [(row["rule"], np.asarray(row["tpr_mean"])) for row in rows]
  if len(names) <= MANY_CLASSES:
    lines = ["", "Per-class TPR % (mean over seeds):", "",
             "| rule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(f"{x * 100:.1f}" for x in tpr) + " |"
              for label, tpr in series]
    return lines
  order = np.argsort(np.nan_to_num(base_tpr, nan=np.inf), kind="stable")
  shown = list(order[:WORST_SHOWN]) + list(order[-BEST_SHOWN:])
  lines = ["", f"Per-class TPR % (mean over seeds) of the baseline's {WORST_SHOWN} worst and "
           f"{BEST_SHOWN} best of {len(names)} classes (all of them: `summary.csv`, "
           "`plots/tpr_sorted.png`):", "",
           "| class | " + " | ".join(label for label, _ in series) + " |",
           "|---|" + "---|" * len(series)]
  lines += [f"| {names[i]} | " + " | ".join(f"{tpr[i] * 100:.1f}" for _, tpr in series) + " |"
            for i in shown]
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

