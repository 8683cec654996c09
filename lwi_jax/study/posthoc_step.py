"""The post-hoc step of the study: per-class logit offsets (rules/posthoc.py) fitted on the
saved logits of finished members, with no training.

Apart from study.py because it reads the phases' saved logits rather than training anything:
it runs after the last round, on every baseline member (fitted on the scores' split: validation,
or out-of-fold under crossfit) and every last-round member (on its validation logits).
"""

from __future__ import annotations

from lwi_jax.report import results as results_lib
from lwi_jax.rules import posthoc as posthoc_lib
from lwi_jax.runtime import console


def posthoc_rows(arms, baseline: dict, rounds: list[dict], logits: dict, data, config,
                 log: console.Printer) -> dict | None:
  """The post-hoc phase (rows shaped like a phase, offsets per member); None without arms.

  `logits`: phase name -> saved {split: [E, N, C]}: "baseline", "crossfit" (with
  scores.method='crossfit') and "members<r>", the last round's members in round order.
  """
  if not arms:
    return None
  crossfit = config.scores.method == "crossfit"
  base_logits, last_logits = logits["baseline"], logits[f"members{len(rounds)}"]
  sources = (posthoc_lib.member_sources(
      baseline, base_logits, "out_of_fold" if crossfit else "validation",
      logits["crossfit"]["out_of_fold"] if crossfit else base_logits["validation"])
      + posthoc_lib.member_sources(rounds[-1], last_logits, "validation",
                                   last_logits["validation"]))
  out = posthoc_lib.posthoc_phase(
      arms, sources, {"validation": data.validation.labels, "test": data.test.labels,
                      "out_of_fold": data.train.labels},
      data.num_classes, results_lib.max_accuracy_drop(config))
  log(f"post-hoc: {', '.join(s.label for s in arms)} on {len(sources)} members (the baseline "
      f"and every rule), fitted on {'out-of-fold (baseline) and ' * crossfit}validation logits "
      f"in {sum(p['fit_seconds'] for p in out['posthoc']):.1f}s")
  return out
