"""What a study leaves in its workdir: results.json, summary.csv, report.md, plots, TensorBoard.

Everything is derived from the saved phase results, so a resumed or reused run writes the same
files as an uninterrupted one. All files are written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re

import jax
import numpy as np

from lwi_jax import bootstrap, io_utils, scores, stats

TESTS = ("bootstrap", "paired_t", "none")
TEST_TEXT = {
    "bootstrap": "p and brackets come from a paired, stratified bootstrap over the test examples "
                 "(one resample of the shared test set per replicate, applied to every seed; "
                 "statistic = mean over seeds of the paired difference; percentile 95% interval; "
                 "it conditions on the trained seeds, see lwi_jax/bootstrap.py)",
    "paired_t": "p is the paired t-test of the per-seed differences (brackets: its 95% "
                "t-interval; it ignores the test set's own sampling noise)",
    "none": "no test was requested (brackets: paired t-interval where there are >= 2 seeds)"}
# Member status. Anything but OK is excluded from every comparison: NON_FINITE (its loss,
# parameters or weights became NaN/inf), SOURCE_NON_FINITE (its weights would derive from such a
# member).
OK, NON_FINITE, SOURCE_NON_FINITE = "ok", "non_finite", "source_non_finite"
SUMMARY_KEYS = ("accuracy", "macro_f1", "var_tpr", "worst_tpr")
# config.compare.max_accuracy_drop: the "best" rule may cost at most this many points of mean
# test accuracy (see best_rule).
DEFAULT_MAX_ACCURACY_DROP = 1.0


def arrays_from_json(phase: dict) -> dict:
  """Turns the numeric lists of a saved phase back into numpy arrays."""
  out = dict(phase)
  num = io_utils.decode_non_finite
  for key in ("validation", "test"):
    out[key] = [{k: np.asarray(num(v)) for k, v in s.items()} for s in phase[key]]
  out["history"] = {k: np.asarray(num(v), np.float64) for k, v in phase["history"].items()}
  for key in ("initial_class_weights", "final_class_weights", "sample_weights"):
    out[key] = np.asarray(num(phase[key]), np.float64)
  return out


class TensorBoard:
  """One tensorboardX writer per member, under <dir>/<member label>."""

  def __init__(self, directory: str, labels: list[str]):
    from tensorboardX import SummaryWriter  # lazy: only training needs it
    self._writers = [SummaryWriter(os.path.join(directory, re.sub(r"[^\w.=@-]+", "_", label)))
                     for label in labels]

  def write(self, step: int, scalars: dict[str, np.ndarray]) -> None:
    for i, w in enumerate(self._writers):
      for name, values in scalars.items():
        value = float(values[i])
        if math.isfinite(value):
          w.add_scalar(f"train/{name}", value, step)
      w.flush()

  def close(self) -> None:
    for w in self._writers:
      w.close()


def _member_records(phase: dict, round_index: int, specs=None) -> list[dict]:
  records = []
  for i, label in enumerate(phase["labels"]):
    rec = {"round": round_index, "label": label, "rule": phase["rules"][i],
           "seed": int(phase["seeds"][i]),
           "status": phase.get("status", [OK] * len(phase["labels"]))[i],
           "non_finite_epoch": phase.get("non_finite_epoch", [None] * len(phase["labels"]))[i],
           "initial_class_weights": phase["initial_class_weights"][i],
           "final_class_weights": phase["final_class_weights"][i],
           "sample_weights": phase["sample_weights"][i],
           "validation": phase["validation"][i], "test": phase["test"][i],
           "history": {k: v[i] for k, v in phase["history"].items()}}
    if specs is not None:
      rec["rule_name"] = specs[i].rule.name
      rec["hparams"] = specs[i].rule.hparams
      rec["scores_used"] = phase["scores_used"][i]
    records.append(rec)
  return records


def _mean(values) -> float:
  return float(np.mean(values)) if len(values) else math.nan


def compare_rules(baseline: list[dict], members: list[dict], resampled: dict | None = None
                  ) -> list[dict]:
  """Per rule: paired-by-seed differences to the baseline on the test split, with statistics.

  `resampled` (rule -> bootstrap.compare_with_baseline) replaces the t-based summaries.
  Only pairs whose rule member and baseline are both finite ("ok") count; the others are
  listed in the row's `excluded` (a rule with none left has n = 0 and NaN statistics), and a
  row with exclusions keeps the t-based summaries of its finite pairs (the bootstrap resampled
  every member).
  """
  base = {m["seed"]: m["test"] for m in baseline if m.get("status", OK) == OK}
  rows = []
  for rule in dict.fromkeys(m["rule"] for m in members):
    every = [m for m in members if m["rule"] == rule]
    ms = [m for m in every if m.get("status", OK) == OK and m["seed"] in base]
    b = [base[m["seed"]] for m in ms]
    t = [m["test"] for m in ms]
    row = {"round": every[0]["round"], "rule": rule, "seeds": [m["seed"] for m in ms],
           "n": len(ms), "excluded": [m["label"] for m in every
                                      if not (m.get("status", OK) == OK and m["seed"] in base)]}
    for key in SUMMARY_KEYS:
      row[f"{key}_mean"] = _mean([float(x[key]) for x in t])
      row[f"baseline_{key}_mean"] = _mean([float(x[key]) for x in b])
    row["D"] = stats.paired_summary([float(x["var_tpr"]) - float(y["var_tpr"])
                                     for x, y in zip(b, t)])
    for key in ("accuracy", "macro_f1", "worst_tpr"):
      row[f"delta_{key}"] = stats.paired_summary([float(y[key]) - float(x[key])
                                                  for x, y in zip(b, t)])
    num_classes = len(every[0]["test"]["tpr"])
    row["tpr_mean"] = (np.mean([x["tpr"] for x in t], axis=0) if t
                       else np.full(num_classes, np.nan))
    row["tpr_sd"] = np.std([x["tpr"] for x in t], axis=0) if t else np.full(num_classes, np.nan)
    if resampled is not None and not row["excluded"]:
      row.update(resampled[rule])
    rows.append(row)
  holm = stats.holm([r["D"]["p_value"] for r in rows])
  for r, p in zip(rows, holm):
    r["D"]["p_holm"] = float(p)
  return rows


def max_accuracy_drop(config) -> float:
  """compare.max_accuracy_drop in points (configs written before the field get the default)."""
  value = float(config.compare.get("max_accuracy_drop", DEFAULT_MAX_ACCURACY_DROP))
  if not math.isfinite(value) or value < 0:
    raise ValueError(f"compare.max_accuracy_drop={value} must be a number of accuracy points "
                     ">= 0 (e.g. 1.0)")
  return value


def best_rule(rows: list[dict], max_drop_points: float) -> dict | None:
  """The rule a reader may call "best": the largest mean D > 0 among the rules whose mean test
  accuracy is at most `max_drop_points` below the baseline's (ties: higher accuracy); None when
  no rule qualifies.

  Why not simply the largest D: a rule can even out the TPRs by lowering all of them (the
  names default's class_difficulty: largest D for a 6-point accuracy loss); calling it best
  would reward destroying accuracy.
  """
  def drop(r):
    return -100.0 * r["delta_accuracy"]["mean"]
  ok = [r for r in rows if math.isfinite(r["D"]["mean"]) and r["D"]["mean"] > 0
        and math.isfinite(drop(r)) and drop(r) <= max_drop_points + 1e-9]
  return max(ok, key=lambda r: (r["D"]["mean"], r["accuracy_mean"]), default=None)


def best_rule_criterion(max_drop_points: float) -> str:
  return (f"the largest mean D > 0 among rules whose mean test accuracy is at most "
          f"{max_drop_points:g} point{'s' if max_drop_points != 1 else ''} below the baseline's "
          "(`compare.max_accuracy_drop`)")


def assemble_results(config, data, baseline_phase: dict, round_phases: list[dict], specs,
                     wall_seconds: float) -> dict:
  baseline = _member_records(baseline_phase, 0)
  rounds = [_member_records(p, r + 1, specs) for r, p in enumerate(round_phases)]
  cmp = config.compare
  resampled = bootstrap.compare_rounds(
      baseline_phase, round_phases, data.test.labels, data.num_classes,
      int(cmp.get("bootstrap_samples", 2000)), int(cmp.get("bootstrap_seed", 0)))
  if resampled is None or cmp.test != "bootstrap":  # keep McNemar; the test is the t-test
    resampled = [{rule: {"mcnemar": r["mcnemar"]} for rule, r in rs.items()}
                 for rs in resampled] if resampled else [None] * len(rounds)
  comparisons = [compare_rules(baseline, members, rs) for members, rs in zip(rounds, resampled)]
  tolerance = max_accuracy_drop(config)
  best = best_rule(comparisons[-1], tolerance) if comparisons else None
  excluded = [{"phase": "baseline" if m["round"] == 0 else f"round{m['round']}",
               "label": m["label"], "status": m["status"], "epoch": m["non_finite_epoch"]}
              for ms in [baseline, *rounds] for m in ms if m.get("status", OK) != OK]
  return {
      # "ok", or "non_finite": some member diverged and the comparisons exclude it.
      "status": NON_FINITE if excluded else OK,
      "non_finite_members": excluded,
      "config": config.to_dict(),
      "dataset": {"name": config.data.name, "class_names": list(data.class_names),
                  "sizes": {"train": len(data.train), "validation": len(data.validation),
                            "test": len(data.test)},
                  "train_class_counts": data.class_counts, "info": data.info},
      "backend": jax.default_backend(),
      "test": config.compare.test,
      "baseline": baseline,
      "rounds": rounds,
      "comparisons": comparisons,
      "best_rule": {"rule": best["rule"] if best else None, "max_accuracy_drop": tolerance,
                    "criterion": best_rule_criterion(tolerance)},
      "wall_seconds": wall_seconds,
  }


def summary_csv(results: dict) -> str:
  names = results["dataset"]["class_names"]
  ok_base = [m for m in results["baseline"] if m.get("status", OK) == OK]
  base_var = {m["seed"]: float(m["test"]["var_tpr"]) for m in ok_base}
  base_acc = {m["seed"]: float(m["test"]["accuracy"]) for m in ok_base}
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(["round", "rule", "seed", "status", *SUMMARY_KEYS, "D_vs_baseline", "delta_accuracy",
              "final_train_accuracy", *[f"tpr_{n}" for n in names]])
  for members in [results["baseline"], *results["rounds"]]:
    for m in members:
      t = m["test"]
      paired = m.get("status", OK) == OK and m["seed"] in base_var  # never a diverged number
      w.writerow([m["round"], m["rule"], m["seed"], m.get("status", OK),
                  *[f"{float(t[k]):.6f}" for k in SUMMARY_KEYS],
                  f"{base_var[m['seed']] - float(t['var_tpr']):.6f}" if paired else "nan",
                  f"{float(t['accuracy']) - base_acc[m['seed']]:.6f}" if paired else "nan",
                  f"{float(m['history']['accuracy'][-1]):.6f}",
                  *[f"{x:.6f}" for x in np.asarray(t["tpr"])]])
  return buf.getvalue()


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
    lines += bootstrap.mcnemar_lines(rows)
  lines += scores.report_section(results)
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
  base_var = _mean([float(m["test"]["var_tpr"]) for m in baseline])
  base_acc = _mean([float(m["test"]["accuracy"]) for m in baseline])
  base_worst = _mean([float(m["test"]["worst_tpr"]) for m in baseline])
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


def write_outputs(workdir: str, results: dict, log) -> None:
  io_utils.atomic_write_json(os.path.join(workdir, "results.json"), results)
  io_utils.atomic_write_text(os.path.join(workdir, "summary.csv"), summary_csv(results))
  report = report_markdown(results)
  io_utils.atomic_write_text(os.path.join(workdir, "report.md"), report)
  from lwi_jax import plots  # lazy: matplotlib import is slow
  plots.write_all(os.path.join(workdir, "plots"), results)
  log("\n" + console_summary(results) + "\n")
