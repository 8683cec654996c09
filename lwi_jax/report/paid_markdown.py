"""Who paid for a rule: report.md's detail section (more evenness measures and costs, each
class's TPR change, the baseline's most-confused pairs, the post-hoc offsets) and the
console's who-paid and most-confused lines.

It stands apart because it is the per-class story behind the comparison table, and its
`delta_tpr` is what plots.py draws as who_paid.png.
"""

from __future__ import annotations

import math

import numpy as np

from lwi_jax.report.results import OK
from lwi_jax.report.text_format import MANY_CLASSES, best_row, percent_text, seconds_text


def delta_tpr(results: dict, row: dict):
  """(mean [C], low [C] or None, high [C] or None): a row's per-class test TPR change against
  its seeds' baselines, with the bootstrap's intervals when the study has them."""
  d = row.get("delta_tpr")
  if d:
    return np.asarray(d["mean"]), np.asarray(d["ci_low"]), np.asarray(d["ci_high"])
  seeds = row.get("seeds")
  base = [m["test"]["tpr"] for m in results["baseline"] if m.get("status", OK) == OK
          and (seeds is None or m.get("seed") in seeds)]
  base = np.mean(base, 0) if base else np.nan
  return np.asarray(row["tpr_mean"]) - base, None, None


def _paid_text(names, mean, low, high, shown: int) -> str:
  """'GB −1.2 [−2.0, −0.4]' per class; above `shown` classes the 3 largest losses and gains."""
  order = np.argsort(mean, kind="stable")
  idx = order if len(names) <= shown else np.concatenate([order[:3], order[-3:]])
  return ", ".join(f"{names[i]} {mean[i] * 100:+.1f}"
                   + (f" [{low[i] * 100:+.1f}, {high[i] * 100:+.1f}]" if low is not None else "")
                   for i in (sorted(idx) if len(names) <= shown else idx))


def who_paid_line(results: dict) -> str | None:
  """Console: the best rule's per-class TPR changes (who gained, who paid)."""
  best = best_row(results)
  if best is None:
    return None
  mean, low, high = delta_tpr(results, best)
  return (f"Who paid for `{best['rule']}` (test ΔTPR, pts): "
          + _paid_text(results["dataset"]["class_names"], mean, low, high, 10) + ".")


def _pair_names(results: dict) -> list[str]:
  names = results["dataset"]["class_names"]
  return [f"{names[p['true']]}→{names[p['predicted']]}"
          for p in results.get("confused_pairs", {}).get("pairs", [])]


def confused_line(results: dict) -> str | None:
  """Console: the baseline's most-confused pairs (share of the true class's test examples)."""
  cp = results.get("confused_pairs", {})
  if not cp.get("pairs"):
    return None
  shares = cp["baseline"]["share"]
  return ("Most confused (baseline, test, share of the true class): "
          + ", ".join(f"{n} {x * 100:.1f}%" for n, x in zip(_pair_names(results), shares))
          + "; per rule, who paid and the post-hoc offsets: report.md.")


def detail_section(results: dict) -> list[str]:
  """report.md, last round: more evenness measures and costs, who paid, the most-confused
  pairs, the post-hoc offsets."""
  if not results["comparisons"]:
    return []
  rows = [r for r in results["comparisons"][-1] if r.get("n", 1)]
  names = results["dataset"]["class_names"]
  k = int(results["config"].get("compare", {}).get("worst_k", 2))
  base_s = results.get("phase_seconds", {}).get("baseline")
  lines = ["## Is retraining worth it? Evenness measures, cost, who paid", "",
           "Test split, means over seeds.", "",
           f"- worst-{k}: mean TPR of the {k} worst classes (`compare.worst_k`);",
           "- harmonic-mean TPR: C / Σ 1/s_c (0 when a class has TPR 0);",
           "- noise-corrected Var = Var(s) − mean_c s_c(1 − s_c)/n_c: Var(s) less the binomial "
           "noise of TPRs measured on n_c test examples;",
           "- train s: training seconds (the phase's epoch wall times, compilation included) of "
           "the baseline, and of each rule beyond the baseline (its members' share of the "
           "retraining phase);",
           "- post-hoc rows (`+`) train nothing (the fit takes milliseconds): `baseline+…` costs "
           "0, `rule+…` what the rule cost.", "",
           f"| rule | worst-{k} TPR % | harmonic-mean TPR % | noise-corrected Var×10³ | "
           "train s |", "|---|---|---|---|---|"]
  if rows:
    r0 = rows[0]
    lines.append(f"| baseline | {percent_text(r0['baseline_worst_k_tpr_mean'])} | "
                 f"{percent_text(r0['baseline_hmean_tpr_mean'])} | "
                 f"{r0['baseline_var_tpr_noise_corrected_mean'] * 1e3:.2f} | "
                 f"{seconds_text(base_s)} |")
  for r in rows:
    lines.append(f"| {r['rule']} | {percent_text(r.get('worst_k_tpr_mean', math.nan))} | "
                 f"{percent_text(r.get('hmean_tpr_mean', math.nan))} | "
                 f"{r.get('var_tpr_noise_corrected_mean', math.nan) * 1e3:.2f} | "
                 f"{seconds_text(r.get('train_seconds'))} |")
  lines += ["", "Who paid: per-class test TPR change, rule − baseline, points"
            + (" [95% bootstrap interval]" if any(r.get("delta_tpr") for r in rows) else "")
            + (f" (above {MANY_CLASSES} classes: the 3 largest losses and gains)"
               if len(names) > MANY_CLASSES else "") + "; plot `plots/who_paid.png`"
            * (len(names) <= MANY_CLASSES) + ":", ""]
  if len(names) <= MANY_CLASSES:
    lines += ["| rule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in rows:
      mean, low, high = delta_tpr(results, r)
      lines.append(f"| {r['rule']} | " + " | ".join(
          f"{mean[i] * 100:+.1f}" + (f" [{low[i] * 100:+.1f}, {high[i] * 100:+.1f}]"
                                     if low is not None else "") for i in range(len(names)))
          + " |")
  else:
    lines += [f"- `{r['rule']}`: " + _paid_text(names, *delta_tpr(results, r), 0) for r in rows]
  cp = results.get("confused_pairs", {})
  if cp.get("pairs"):
    pairs = _pair_names(results)
    lines += ["", "Most-confused pairs of the baseline (test, true → predicted): mean count over "
              "seeds (share of the true class's examples); rules: share (change in points):", "",
              "| rule | " + " | ".join(pairs) + " |", "|---|" + "---|" * len(pairs),
              "| baseline | " + " | ".join(f"{c:.1f} ({x * 100:.1f}%)" for c, x in zip(
                  cp["baseline"]["count"], cp["baseline"]["share"])) + " |"]
    for rule, v in cp["rules"].items():
      lines.append(f"| {rule} | " + " | ".join(
          f"{x * 100:.1f}% ({(x - b) * 100:+.1f})"
          for x, b in zip(v["share"], cp["baseline"]["share"])) + " |")
  lines += posthoc_lines(results)
  return lines + [""]


def posthoc_lines(results: dict) -> list[str]:
  """The post-hoc members' offsets b (argmax(logits + b)), each fitted on its split."""
  members = results.get("posthoc", [])
  if not members:
    return []
  names = results["dataset"]["class_names"]
  many = len(names) > MANY_CLASSES
  lines = ["", "Post-hoc offsets b per member (prediction argmax(logits + b); fitted on the "
           "split named; `logit_offsets:gamma=g`: b = −g·log(s/s̄), `tpr_parity`: fitted towards "
           "equal TPRs within `compare.max_accuracy_drop`; lwi_jax/rules/posthoc.py):", "",
           "| member | fitted on | " + ("offsets (min, median, max)" if many
                                       else " | ".join(names)) + " |",
           "|---|---|" + ("---|" if many else "---|" * len(names))]
  for m in members:
    b = np.asarray(m["posthoc"]["offsets"], np.float64)
    vals = (f"{b.min():+.2f}, {np.median(b):+.2f}, {b.max():+.2f}" if many
            else " | ".join(f"{x:+.2f}" for x in b))
    lines.append(f"| {m['label']} | {m['posthoc']['fit_split']} | {vals} |")
  return lines

