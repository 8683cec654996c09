"""The numbers a study reports, assembled from its saved phases: members, paired comparisons,
the "best" rule, and the results dict every output (results.json, summary.csv, report.md,
plots, console) is rendered from.

Everything is derived from the saved phase results, so a resumed or reused run reports the same
numbers as an uninterrupted one.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from lwi_jax import metrics
from lwi_jax.report import bootstrap, front, selection, stats
from lwi_jax.report import costs as costs_lib

TESTS = ("bootstrap", "paired_t", "none")
IMBALANCE_KEYS = ("worst_k_tpr", "hmean_tpr", "var_tpr_noise_corrected")
TOP_CONFUSED = 5  # most-confused pairs of the baseline in report.md
# Member status. Anything but OK is excluded from every comparison: NON_FINITE (its loss,
# parameters or weights became NaN/inf), SOURCE_NON_FINITE (its weights would derive from such a
# member).
OK, NON_FINITE, SOURCE_NON_FINITE = "ok", "non_finite", "source_non_finite"


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


def mean_or_nan(values) -> float:
  """The mean, or NaN for no values (a rule whose members all diverged)."""
  return float(np.mean(values)) if len(values) else math.nan


def compare_rules(baseline: list[dict], members: list[dict], resampled: dict | None = None,
                  worst_k: int = 2) -> list[dict]:
  """Per rule: paired-by-seed differences to the baseline on the test split, with statistics.

  `resampled` (rule -> bootstrap.compare_with_baseline) replaces the t-based summaries.
  Beside metrics.SUMMARY_KEYS every row has the means of metrics.imbalance_scores (worst-k
  mean TPR with k = `worst_k`, harmonic-mean TPR, noise-corrected Var), from the confusions.
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
    for key in metrics.SUMMARY_KEYS:
      row[f"{key}_mean"] = mean_or_nan([float(x[key]) for x in t])
      row[f"baseline_{key}_mean"] = mean_or_nan([float(x[key]) for x in b])
    for prefix, scored in (("", t), ("baseline_", b)):
      extra = [metrics.imbalance_scores(np.asarray(x["confusion"]), worst_k, np)
               for x in scored if "confusion" in x]
      for key in IMBALANCE_KEYS:
        row[f"{prefix}{key}_mean"] = mean_or_nan([float(e[key]) for e in extra])
    for name, key, sign in metrics.PAIRED_DIFFERENCES:
      row[name] = stats.paired_summary([float(x[key]) - float(y[key]) if sign < 0
                                        else float(y[key]) - float(x[key])
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
  """compare.max_accuracy_drop in points, checked."""
  value = float(config.compare.max_accuracy_drop)
  if not math.isfinite(value) or value < 0:
    raise ValueError(f"compare.max_accuracy_drop={value} must be a number of accuracy points "
                     ">= 0 (e.g. 1.0)")
  return value


def best_rule(rows: list[dict], max_drop_points: float) -> dict | None:
  """The test-split "best" rule (`compare.selection="none"`, or a workdir without validation
  predictions): the largest mean D > 0 among the rules whose mean test accuracy is at most
  `max_drop_points` below the baseline's (ties: higher accuracy), never the uniform control;
  None when no rule qualifies. Otherwise the study's best rule is the held-out choice of
  report/selection.py.

  Why not simply the largest D: a rule can even out the TPRs by lowering all of them (the
  names default's class_difficulty: largest D for a 6-point accuracy loss); calling it best
  would reward destroying accuracy.
  """
  def drop(r):
    return -100.0 * r["delta_accuracy"]["mean"]
  ok = [r for r in rows if r["rule"] != selection.CONTROL
        and math.isfinite(r["D"]["mean"]) and r["D"]["mean"] > 0
        and math.isfinite(drop(r)) and drop(r) <= max_drop_points + 1e-9]
  return max(ok, key=lambda r: (r["D"]["mean"], r["accuracy_mean"]), default=None)


def best_rule_criterion(max_drop_points: float) -> str:
  return (f"the largest mean D > 0 among rules whose mean test accuracy is at most "
          f"{max_drop_points:g} point{'s' if max_drop_points != 1 else ''} below the baseline's "
          "(`compare.max_accuracy_drop`)")


def _finite_predictions(phase: dict, split: str) -> dict:
  """seed -> predictions [N] on `split` of the phase's finite members, grouped by rule."""
  out = {}
  for i, rule in enumerate(phase["rules"]):
    if phase.get("status", [OK] * len(phase["rules"]))[i] == OK:
      out.setdefault(rule, ([], []))
      out[rule][0].append(int(phase["seeds"][i]))
      out[rule][1].append(np.asarray(phase[f"{split}_predictions"][i]))
  return out


def selection_results(config, data, baseline_phase: dict, round_phase: dict, specs
                      ) -> dict | None:
  """The front of both splits and the held-out choice (report/selection.py) of the last round.

  None when `compare.selection="none"` or a phase lacks validation predictions (a workdir saved
  before they were): the study then reports only the test-split table.
  """
  cmp = config.compare
  phases_ = (baseline_phase, round_phase)
  if cmp.selection == "none" or any(p.get(f"{s}_predictions") is None for p in phases_
                                    for s in ("validation", "test")):
    return None
  evidence = {}
  for split in ("validation", "test"):
    base = _finite_predictions(baseline_phase, split).get("baseline")
    rules = {r: v for r, v in _finite_predictions(round_phase, split).items()
             if base and set(v[0]) <= set(base[0])}
    if not base or not rules:
      return None
    evidence[split] = front.split_evidence(
        base, rules, getattr(data, split).labels, data.num_classes, cmp.evenness,
        int(cmp.worst_k), int(cmp.bootstrap_samples), int(cmp.bootstrap_seed))
  families = {m.rule.label: m.rule.family_label for m in specs}
  posthoc_rows = list(zip(round_phase["rules"][len(specs):], round_phase.get("posthoc", [])))
  # Post-hoc offsets fitted on the validation split would make a "held-out" choice on it
  # circular: under an independent selection they are compared, never chosen.
  fitted_there = ({r for r, info in posthoc_rows if info["fit_split"] == "validation"}
                  if selection.independence(config)[0] else set())
  # Members that read the validation split while training (online_eg, dynamic_difficulty), and
  # post-hoc rows stacked on them, saw the selection split: compared, never chosen there.
  saw = {m.rule.label for m in specs if m.rule.trains_on_validation}
  saw |= {r for r, info in posthoc_rows if info["source_rule"] in saw}
  return selection.protocol(evidence["validation"], evidence["test"], config, families,
                            _controls(round_phase, specs) | fitted_there | saw)


def _controls(round_phase: dict, specs) -> set[str]:
  """Rules that train the unweighted loss: `uniform`, and static rules whose weights came out
  flat for every seed (inverse_tpr:gamma=0 of a grid) - never a "choice"."""
  flat = {}
  for spec, w in zip(specs, round_phase["initial_class_weights"]):
    w = np.asarray(w, np.float64)
    same = bool(spec.rule.static and np.allclose(w, w.mean(), rtol=0, atol=1e-6))
    flat[spec.rule.label] = flat.get(spec.rule.label, True) and same
  return {selection.CONTROL} | {r for r, f in flat.items() if f}


def _with_posthoc(phase: dict, posthoc: dict) -> dict:
  """The last round's phase with the post-hoc rows appended (what the statistics resample)."""
  merged = dict(phase, status=phase.get("status", [OK] * len(phase["labels"])),
                posthoc=posthoc["posthoc"])
  for key in ("labels", "seeds", "rules", "status", "test_predictions",
              "validation_predictions"):
    merged[key] = [*merged[key], *posthoc[key]]
  merged["initial_class_weights"] = np.concatenate([phase["initial_class_weights"],
                                                    np.asarray(posthoc["initial_class_weights"])])
  return merged


def _posthoc_records(posthoc: dict, round_index: int) -> list[dict]:
  recs = _member_records({**posthoc, **{k: np.asarray(posthoc[k]) for k in (
      "initial_class_weights", "final_class_weights", "sample_weights")},
      # per member: a row copies its source's history, whose length is its phase's epochs
      "history": {k: [np.asarray(h[k]) for h in posthoc["history"]]
                  for k in posthoc["history"][0]}}, round_index)
  for rec, info in zip(recs, posthoc["posthoc"]):
    rec["posthoc"] = info
    rec["rule_name"] = info["method"].partition(":")[0]
  return recs


def confused_pairs(baseline: list[dict], members: list[dict], top: int = TOP_CONFUSED) -> dict:
  """The baseline's most-confused (true, predicted) pairs on test, mean count over its finite
  seeds and share of the true class's examples, and the same cells of every rule."""
  def mean_cm(ms):
    ms = [m for m in ms if m.get("status", OK) == OK]
    return np.mean([np.asarray(m["test"]["confusion"], np.float64) for m in ms], 0) if ms else None
  base = mean_cm(baseline)
  if base is None:
    return {"pairs": [], "rules": {}}
  off = base.copy()
  np.fill_diagonal(off, -1)
  flat = np.argsort(-off.ravel(), kind="stable")[:top]
  cells = [(int(i), int(j)) for i, j in zip(*np.unravel_index(flat, off.shape)) if off[i, j] > 0]
  support = np.maximum(base.sum(1), 1)

  def at(cm):
    return {"count": [float(cm[i, j]) for i, j in cells],
            "share": [float(cm[i, j] / support[i]) for i, j in cells]}
  rules = {}
  for rule in dict.fromkeys(m["rule"] for m in members):
    cm = mean_cm([m for m in members if m["rule"] == rule])
    if cm is not None:
      rules[rule] = at(cm)
  return {"pairs": [{"true": i, "predicted": j} for i, j in cells], "baseline": at(base),
          "rules": rules}


def assemble_results(config, data, baseline_phase: dict, round_phases: list[dict], specs,
                     wall_seconds: float, posthoc: dict | None = None) -> dict:
  """The results dict of a study (what results.json holds) from its decoded phases.

  Args:
    config: the study's config.
    data: the loaded ClassificationData.
    baseline_phase: the decoded baseline phase.
    round_phases: the decoded round phases, in order.
    specs: the MemberSpecs of the rounds' members, in order.
    wall_seconds: the study's wall time (run_control.PhaseClock).
    posthoc: the post-hoc rows (rules/posthoc.posthoc_phase), or None: they join the last
      round's members, comparisons, front and selection.

  Returns:
    status, members (`posthoc`: the post-hoc members, each with its offsets), per-round
    comparisons with their statistics and costs, the "best" rule.
  """
  baseline = _member_records(baseline_phase, 0)
  rounds = [_member_records(p, r + 1, specs) for r, p in enumerate(round_phases)]
  seconds = {**costs_lib.phase_seconds(baseline_phase, "baseline"),
             **{n: sec for r, p in enumerate(round_phases)
                for n, sec in costs_lib.phase_seconds(p, f"round{r + 1}").items()}}
  costs = costs_lib.rule_costs(round_phases, posthoc)
  # The post-hoc members keep a list of their own (results["posthoc"]: the rounds hold trained
  # members only) and join the last round's comparison, front and selection.
  extra = _posthoc_records(posthoc, len(round_phases)) if posthoc and round_phases else []
  if extra:
    round_phases = [*round_phases[:-1], _with_posthoc(round_phases[-1], posthoc)]
  cmp = config.compare
  resampled = bootstrap.compare_rounds(  # resampling only when it is the study's test
      baseline_phase, round_phases, data.test.labels, data.num_classes,
      int(cmp.bootstrap_samples) if cmp.test == "bootstrap" else 0, int(cmp.bootstrap_seed))
  if resampled is None or cmp.test != "bootstrap":  # keep McNemar; the test is the t-test
    resampled = [{rule: {"mcnemar": r["mcnemar"]} for rule, r in rs.items()}
                 for rs in resampled] if resampled else [None] * len(rounds)
  comparisons = [compare_rules(baseline, members + (extra if r == len(rounds) - 1 else []), rs,
                               int(cmp.worst_k))
                 for r, (members, rs) in enumerate(zip(rounds, resampled))]
  for rows, cost in zip(comparisons, costs):
    for row in rows:
      row["train_seconds"] = cost.get(row["rule"], math.nan)
  tolerance = max_accuracy_drop(config)
  chosen = (selection_results(config, data, baseline_phase, round_phases[-1], specs)
            if round_phases else None)
  if chosen is not None:  # the held-out choice is the study's best rule
    best = chosen["chosen"]
    criterion = chosen["criterion"] + ", confirmed on test"
  else:
    best = best_rule(comparisons[-1], tolerance) if comparisons else None
    criterion = best_rule_criterion(tolerance)
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
                    "criterion": criterion},
      "wall_seconds": wall_seconds,
      "phase_seconds": seconds,
      "posthoc": extra,
      "confused_pairs": (confused_pairs(baseline, rounds[-1] + extra) if rounds
                         else {"pairs": []}),
      # the front and the held-out choice; absent (not null) when there is none to make
      **({"selection": chosen} if chosen is not None else {}),
  }
