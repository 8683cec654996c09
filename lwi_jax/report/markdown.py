"""Every text a person reads about a study: report.md, the console's closing table and
decision, the failure line. Rendered from the results dict (report/results.py); nothing here
computes a statistic.

It runs over 350 lines because report.md is one document: its sections (the tables, who paid,
the confused pairs, the post-hoc offsets, the front) share the interval and p-value
formatting, and splitting them would make a module that imports this one back.
"""

from __future__ import annotations

import math
import os

import numpy as np

from lwi_jax.report import front
from lwi_jax.report.results import NON_FINITE, OK, mean_or_nan

# Above this many classes per-class columns and C x C images are unreadable (a 200-class
# confusion PNG was 9558 x 8643 px): the report lists the worst and best classes, the plots show
# sorted TPR curves and the most-confused pairs (plots.py).
MANY_CLASSES = 30
WORST_SHOWN, BEST_SHOWN = 10, 5

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


def p_text(x: float) -> str:
  """A p-value as the report prints it ("<0.001" below 0.001, "–" when undefined)."""
  return _p(x)


def _p(x: float) -> str:
  return "–" if x is None or not math.isfinite(x) else (f"{x:.3f}" if x >= 0.001 else "<0.001")


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
                 f"{base_worst * 100:.1f} | | {_seconds(baseline_seconds)} |")
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
        f"{_ci(row['delta_accuracy'], 100)} | {_p(row['delta_accuracy']['p_value'])} | "
        f"{row['var_tpr_mean'] * 1e3:.2f} | {_ci(row['D'], 1e3)} | {_p(row['D']['p_value'])} | "
        f"{_p(row['D']['p_holm'])} | {row['worst_tpr_mean'] * 100:.1f} | "
        f"{_ci(row['delta_worst_tpr'], 100, 1)} | {_seconds(row.get('train_seconds'))} |")
  return lines


def _seconds(x) -> str:
  return "–" if x is None or not math.isfinite(x) else f"{x:.0f}"


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
  lines += comparison_table(results["baseline"], rows,
                            results.get("phase_seconds", {}).get("baseline"))
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


def json_compact(d: dict) -> str:
  return ", ".join(f"{k}={v}" for k, v in d.items() if k != "name")


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
        f"{m['baseline_only']}/{m['rule_only']}, p {_p(m['p_value'])}" for m in r["mcnemar"])
        + " |")
  return lines + [""]


def _percent(x: float) -> str:
  return "–" if not math.isfinite(x) else f"{x * 100:.1f}"


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


def plot_names(results: dict) -> list[str]:
  """The figures plots.write_all draws for `results`, in its order."""
  many = len(results["dataset"]["class_names"]) > MANY_CLASSES
  prefix = "confused_pairs_" if many else "confusion_"
  paid = not many and any(r.get("n", 1) for r in (results["comparisons"] or [[]])[-1])
  return (["tpr_sorted.png" if many else "tpr_bars.png", prefix + "baseline.png"]
          + ([prefix + "best.png"] if _best(results) else [])
          + ["training_curves.png"] + (["who_paid.png"] if paid else []))


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
  best = _best(results)
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
    lines.append(f"| baseline | {_percent(r0['baseline_worst_k_tpr_mean'])} | "
                 f"{_percent(r0['baseline_hmean_tpr_mean'])} | "
                 f"{r0['baseline_var_tpr_noise_corrected_mean'] * 1e3:.2f} | "
                 f"{_seconds(base_s)} |")
  for r in rows:
    lines.append(f"| {r['rule']} | {_percent(r.get('worst_k_tpr_mean', math.nan))} | "
                 f"{_percent(r.get('hmean_tpr_mean', math.nan))} | "
                 f"{r.get('var_tpr_noise_corrected_mean', math.nan) * 1e3:.2f} | "
                 f"{_seconds(r.get('train_seconds'))} |")
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
        f"{_percent(s)} [{_percent(lo)}, {_percent(hi)}]" for s, lo, hi in
        zip(pick(rec["raw"]), pick(rec["wilson_low"]), pick(rec["wilson_high"]))) + " |")
    if sc["config"]["shrinkage"] != "none":
      lines.append(f"| {rec['seed']} shrunk | | " + " | ".join(_percent(s) for s in pick(rec["tpr"]))
                   + " |")
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


def _gain(s: dict, scale: float) -> str:
  return _ci(s, scale) + f" (p {_p(s['p_value'])})"


def _level(s: dict, scale: float) -> str:
  return f"{s['mean'] * scale:.2f} [{s['ci_low'] * scale:.2f}, {s['ci_high'] * scale:.2f}]"


def decision_lines(results: dict, workdir: str) -> list[str]:
  """The console's last lines (<= 4): the held-out choice, its confirmed effect, the naive
  pick's optimism, where the recommendation is."""
  sel = results.get("selection")
  if not sel:
    return []
  scale = front.evenness_scale(sel["evenness"])
  unit = "D×10³" if sel["evenness"] == "var" else f"{sel['evenness']} gain (pts)"
  where = (f"the {sel['split']} split (held out)" if sel["independent"]
           else f"the {sel['split']} split (NOT held out: {sel['why']})")
  c, n = sel["chosen"], sel["naive"]
  if c is None:
    lines = [f"Decision on {where}: no rule qualifies (no significant gain within the "
             "accuracy tolerance there; criterion in report.md): keep the unweighted loss."]
  else:
    family = f" (family `{c['family']}`)" if c["family"] != c["rule"] else ""
    lines = [f"Decision on {where}: `{c['rule']}`{family}.",
             f"  {unit}: selection {_gain(c['selection']['gain'], scale)}; confirmed on test "
             f"{_gain(c['test']['gain'], scale)}, Δacc "
             f"{c['test']['delta_accuracy']['mean'] * 100:+.2f} pts."]
  if n is not None:
    lines.append(f"  Best on test would be `{n['rule']}`: test "
                 f"{n['test']['gain']['mean'] * scale:+.2f} vs "
                 f"{n['selection']['gain']['mean'] * scale:+.2f} on the selection split "
                 f"(optimism {n['optimism'] * scale:+.2f}).")
  lines.append(f"  Recommendation: {os.path.join(workdir, 'recommendation.json')} "
               f"(python -m lwi_jax.report.recommend {workdir})")
  return lines


def front_section(results: dict) -> list[str]:
  """report.md: the held-out choice, the naive pick, and the test split's front as a table."""
  sel = results.get("selection")
  if not sel:
    return []
  scale = front.evenness_scale(sel["evenness"])
  label = front.EVENNESS_TEXT[sel["evenness"]].format(k=sel["worst_k"])
  lines = ["## The accuracy-evenness front and the held-out choice", "",
           f"Evenness: `{sel['evenness']}` ({label}, higher = more even). The choice is made on "
           f"the {sel['split']} split by {sel['criterion']}, then confirmed once on test. "
           + ("It is held out: " if sel["independent"] else "**It is not held out**: ")
           + sel["why"] + ".", ""]
  lines += decision_lines(results, results["config"]["workdir"])[:-1]
  lines += ["", "Front on the test split (✓ = not dominated in accuracy and evenness; "
            "brackets: 95% bootstrap intervals over test examples; plot `plots/front.png`):", "",
            f"| family | point | on front | acc % | {label} | Δacc (pts) | gain | gain on the "
            "selection split |", "|---|---|---|---|---|---|---|---|"]
  rows, held = sel["evidence"]["test"]["rules"], sel["evidence"]["selection"]["rules"]
  for p in sel["front"]["test"]:  # a grid's members are contiguous: one family after another
    a, e, diff = p["accuracy"], p["evenness"], rows.get(p["rule"])
    lines.append(f"| {sel.get('families', {}).get(p['rule'], '')} | {p['rule']} | "
                 f"{'✓' if p['on_front'] else ''} | {_level(a, 100)} | {_level(e, scale)} | "
                 + (f"{_ci(diff['delta_accuracy'], 100)} | {_gain(diff['gain'], scale)} | "
                    f"{_gain(held[p['rule']]['gain'], scale)} |" if diff else " | | |"))
  return lines + [""]
