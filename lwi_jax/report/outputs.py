"""What a study leaves in its workdir: results.json, summary.csv, report.md and plots, each
written atomically from the results dict.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from lwi_jax import metrics
from lwi_jax.report import markdown, recommend
from lwi_jax.report.results import OK
from lwi_jax.runtime import io_utils


def summary_csv(results: dict) -> str:
  """One row per member: its test scores and its paired difference to its seed's baseline."""
  names = results["dataset"]["class_names"]
  ok_base = [m for m in results["baseline"] if m.get("status", OK) == OK]
  base_var = {m["seed"]: float(m["test"]["var_tpr"]) for m in ok_base}
  base_acc = {m["seed"]: float(m["test"]["accuracy"]) for m in ok_base}
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(["round", "rule", "seed", "status", *metrics.SUMMARY_KEYS, "D_vs_baseline",
              "delta_accuracy", "final_train_accuracy", *[f"tpr_{n}" for n in names]])
  for members in [results["baseline"], *results["rounds"], results.get("posthoc", [])]:
    for m in members:
      t = m["test"]
      paired = m.get("status", OK) == OK and m["seed"] in base_var  # never a diverged number
      w.writerow([m["round"], m["rule"], m["seed"], m.get("status", OK),
                  *[f"{float(t[k]):.6f}" for k in metrics.SUMMARY_KEYS],
                  f"{base_var[m['seed']] - float(t['var_tpr']):.6f}" if paired else "nan",
                  f"{float(t['accuracy']) - base_acc[m['seed']]:.6f}" if paired else "nan",
                  f"{float(m['history']['accuracy'][-1]):.6f}",
                  *[f"{x:.6f}" for x in np.asarray(t["tpr"])]])
  return buf.getvalue()


def write_outputs(workdir: str, results: dict, log) -> None:
  """Writes every output file of `results` into `workdir` and logs the console summary."""
  io_utils.atomic_write_json(os.path.join(workdir, "results.json"), results)
  io_utils.atomic_write_text(os.path.join(workdir, "summary.csv"), summary_csv(results))
  io_utils.atomic_write_text(os.path.join(workdir, "report.md"), markdown.report_markdown(results))
  recommend.write(workdir, results)
  from lwi_jax.report import plots  # lazy: matplotlib import is slow
  stale = plots.write_all(os.path.join(workdir, "plots"), results)
  if stale:  # an earlier run's figure that this study does not have (e.g. no best rule)
    log("removed the earlier run's " + ", ".join(f"plots/{n}" for n in stale))
  log("\n" + markdown.console_summary(results) + "\n")
