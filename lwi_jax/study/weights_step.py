"""Step 3 of the study: every member's `MemberHParams` from its seed's scores, stacked, with
one console line per member (or per grid family: a 27-member grid would be 27 lines).

Apart from study.py because it is the one step that turns scores into the explicit inputs of
training, and the one that must refuse to derive anything from a diverged member's scores.
"""

from __future__ import annotations

import numpy as np

from lwi_jax.member import MemberHParams
from lwi_jax.parallel import ensemble
from lwi_jax.runtime import console


def format_vector(v, shown: int = 30) -> str:
  """Every value up to `shown` classes; above, their range (a 1,000-class line is unreadable)."""
  v = np.asarray(v)
  if v.size > shown:
    return (f"[{v.size} classes: min {v.min():.3f}, median {np.median(v):.3f}, "
            f"max {v.max():.3f}]")
  return "[" + " ".join(f"{x:.3f}" for x in v) + "]"


def member_hparams(specs, sources: dict, data, epochs: int, num_seeds: int,
                   log: console.Printer) -> MemberHParams:
  """The stacked MemberHParams [E] of `specs` (rules/members.MemberSpec), each from
  `sources[spec.label]` (study.ScoreSource: the seed's scores and whether they are finite),
  for a phase of `epochs` epochs (a rule's schedule, e.g. drw's start, follows it)."""
  counts = data.class_counts
  hps = []
  for m in specs:
    src = sources[m.label]
    if src.finite:
      hps.append(m.rule.member_hparams(src.tpr, counts, epochs, data.class_names))
      continue
    # Scores of a diverged member are argmaxes of NaN logits: derive nothing from them.
    log(f"weights {m.label}: not derived, its source {src.scored_by} is non-finite; trained "
        "with uniform weights only to keep the ensemble, and excluded")
    hps.append(MemberHParams.uniform(len(counts)))
  grids = {}  # a grid's members: one console line per family (results.json: each member)
  for m, h in zip(specs, hps):
    if m.rule.family:
      grids.setdefault(m.rule.family, set()).add(m.rule.label)
    else:
      log(f"weights {m.label:<44s} {format_vector(h.class_weights)}"
          + (f"  sampling {format_vector(h.sample_weights)}" if bool(h.oversample) else "")
          + (f"  logit offsets {format_vector(h.logit_offsets)}"
             if np.any(np.asarray(h.logit_offsets) != 0) else ""))
  for family, rules in grids.items():
    log(f"weights {family}: a grid of {len(rules)} rules x {num_seeds} seed(s), each "
        "member's weights in results.json")
  return ensemble.stack(hps)
