"""What a tabular source did to the user's rows, as console lines (kept in `info` for results.json).

Every transformation is counted: rows read from the file, rows dropped for a missing label,
label spellings merged, and the rows data.balance keeps of each class; then the warnings.
"""

from __future__ import annotations

SHOWN_CLASSES = 30  # per-class counts on the console; results.json keeps every class


def summary_lines(info: dict) -> list[str]:
  """Console lines for a tabular source; [] for other sources."""
  if "rows_used_per_class" not in info:
    return []
  used = info["rows_used_per_class"]
  lines = [f"table: {info['rows_read']} data rows read, {info['dropped_missing_label']} dropped "
           f"for a missing label, {sum(used.values())} used"
           + (f" (data.balance: {info['balanced_per_class']} per class)"
              if info["balanced_per_class"] else "")]
  if info["merged_label_variants"]:
    lines.append(f"  label spellings merged (data.merge_label_variants): "
                 f"{info['merged_label_variants']}")
  if any(used[name] < n for name, n in info["rows_per_class"].items()):  # balancing cut some
    shown = list(info["rows_per_class"].items())
    many = len(shown) > SHOWN_CLASSES
    if many:  # the classes balancing cut most
      shown = sorted(shown, key=lambda kv: used[kv[0]] - kv[1])[:SHOWN_CLASSES]
    lines.append("  rows used / labelled per class: "
                 + ", ".join(f"{name} {used[name]}/{n}" for name, n in shown)
                 + (f" (the {SHOWN_CLASSES} most cut of {len(used)} classes; all of them in "
                    "results.json)" if many else ""))
  return lines + [f"WARNING: {w}" for w in info["warnings"]]
