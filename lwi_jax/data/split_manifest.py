"""Which example went to which split, as a file a later run can reuse (`data.split_manifest`).

A source that can name its examples (image_folder: each file's path inside data.root) puts a
manifest on the loaded data (`ClassificationData.split_manifest`); the study writes it to
`<workdir>/split_manifest.json` (the data room never sees the workdir). Its content:
  format, version     this module's FORMAT / VERSION
  source, layout      e.g. 'image_folder', 'class'; a manifest is reused only by the same pair
  class_names         sorted; a manifest of other classes is refused
  rule                how the split was made (fractions, per-class caps, split_seed), or, when
                      it was itself reused, the rule of the manifest it came from
  splits              {'train' | 'validation' | 'test': [[path, class name], ...]} in load order
Reusing one (`select`) takes exactly the listed files in the listed order, so the arrays, and
with them the data content hash and every phase fingerprint, equal the run that wrote it.
Every listed file must be present (else one error naming the first missing one and the count).
Files present but not listed are ignored and counted (`unlisted`): the manifest defines the
study's data, so adding images to the folder does not change a reproduced study; the count is
printed and kept in results.json so it is never silent.
"""

from __future__ import annotations

import json

import numpy as np

from lwi_jax.data.errors import DataError

FORMAT = "lwi_jax split manifest"
VERSION = 1
SPLITS = ("train", "validation", "test")
FIELD = "data.split_manifest"


def build(source: str, root: str, layout: str, class_names, files: dict, rule: dict) -> dict:
  """The manifest of `files[split] = [(path, class name), ...]` (JSON-able)."""
  return {"format": FORMAT, "version": VERSION, "source": source, "root": root,
          "layout": layout, "class_names": list(class_names), "rule": dict(rule),
          "splits": {s: [[str(p), str(c)] for p, c in files[s]] for s in SPLITS}}


def to_text(manifest: dict) -> str:
  """JSON with one example per line (a 60,000-image split stays readable and diffable)."""
  head = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in manifest.items() if k != "splits"]
  body = [f"  {json.dumps(s)}: [" + ",".join(f"\n   {json.dumps(e)}" for e in manifest["splits"][s])
          + "\n  ]" for s in SPLITS]
  return "{\n" + ",\n".join(head + [' "splits": {\n' + ",\n".join(body) + "\n }"]) + "\n}\n"


def read(path: str) -> dict:
  """The manifest at `path`; DataError (one line, naming the field) when it is not one."""
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f"{FIELD}={path!r} cannot be read as JSON ({type(e).__name__}: "
                    f"{str(e)[:200]})") from e
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    raise DataError(f"{FIELD}={path!r} is not a split manifest (a split_manifest.json that a "
                    "study wrote to its workdir)")
  if manifest.get("version") != VERSION or not isinstance(manifest.get("splits"), dict) or \
      set(manifest["splits"]) != set(SPLITS):
    raise DataError(f"{FIELD}={path!r}: version {manifest.get('version')!r} with splits "
                    f"{sorted(manifest.get('splits') or [])}; this code reads version {VERSION}"
                    f" with splits {list(SPLITS)}")
  return manifest


def select(manifest: dict, path: str, source: str, layout: str, class_names,
           paths: np.ndarray, labels: np.ndarray) -> tuple[dict, list[str]]:
  """({split: row indices into `paths`, in the manifest's order}, unlisted paths).

  Args:
    manifest: from `read`.
    path: where it was read from (for the messages).
    source, layout, class_names: what the folder being loaded is; must equal the manifest's.
    paths, labels: every loaded example's name and class index.

  Raises:
    DataError: another source, layout or class list; a listed file missing; a file listed
      twice or under another class than its folder's.
  """
  mine = (source, layout, list(class_names))
  theirs = (manifest.get("source"), manifest.get("layout"), manifest.get("class_names"))
  if mine != theirs:
    raise DataError(f"{FIELD}={path!r} was made for source {theirs[0]!r}, layout {theirs[1]!r}, "
                    f"classes {theirs[2]}; this data is source {source!r}, layout {layout!r}, "
                    f"classes {list(class_names)}")
  row = {str(p): i for i, p in enumerate(paths)}
  index, missing, seen = {}, [], set()
  for split in SPLITS:
    rows = []
    for p, c in manifest["splits"][split]:
      if p in seen:
        raise DataError(f"{FIELD}={path!r} lists {p!r} twice")
      seen.add(p)
      if p not in row:
        missing.append(p)
        continue
      if class_names[labels[row[p]]] != c:
        raise DataError(f"{FIELD}={path!r} lists {p!r} as class {c!r}; the folder has it as "
                        f"{class_names[labels[row[p]]]!r}")
      rows.append(row[p])
    index[split] = np.asarray(rows, np.int64)
  if missing:
    raise DataError(f"{FIELD}={path!r}: {len(missing)} listed file(s) not found (or not "
                    f"readable) in the data, first {missing[0]!r}; restore them or carve a new "
                    f"split ({FIELD}='')")
  if not all(len(index[s]) for s in SPLITS if s != "validation"):
    raise DataError(f"{FIELD}={path!r} lists an empty train or test split")
  return index, [str(p) for p in paths if str(p) not in seen]
