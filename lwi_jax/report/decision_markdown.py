"""The held-out decision as text: the console's closing decision lines and report.md's
section on the accuracy-evenness front (report/selection.py and report/front.py make the
numbers).

It stands apart because the decision is the one text of the study that speaks of the
selection split; the console prints its lines after report.md is written.
"""

from __future__ import annotations

import os

from lwi_jax.report import front
from lwi_jax.report.text_format import ci_text, p_text


def _gain(s: dict, scale: float) -> str:
  return ci_text(s, scale) + f" (p {p_text(s['p_value'])})"


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
                 + (f"{ci_text(diff['delta_accuracy'], 100)} | {_gain(diff['gain'], scale)} | "
                    f"{_gain(held[p['rule']]['gain'], scale)} |" if diff else " | | |"))
  return lines + [""]

