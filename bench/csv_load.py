"""Loading a large tabular CSV: seconds and peak memory, pyarrow reader vs the strict reader.

  python -m bench.csv_load [--rows 1350000] [--rounds 2] [--before_repo DIR] [--keep] [--cases read,load]

Writes a synthetic table like issue #25's (default ~200 MB, 1.35 M rows: 12 numeric columns
with 2% missing '?', 3 categorical columns, one with quoted values holding the delimiter, a
6-class label) to a temporary file, then measures, each case in its own subprocess (peak
memory is per process: VmHWM, the RSS high-water mark), in interleaved rounds:
  - `read`:   tabular_table.read_table, the file into string columns (engine auto = pyarrow
              with the project's checks; engine strict = the csv-module reader);
  - `load`:   data.load_dataset with data.name='tabular': read, kinds, split, features, i.e.
              everything before training.
`--before_repo DIR` adds the same two cases run on another checkout's lwi_jax (e.g. the code
before pyarrow: `git archive <commit> lwi_jax | tar -x -C DIR`). Peak memory is reported as the
process's VmHWM and as the growth over the RSS after imports (what the load itself added); both
beside the file's size. Reported as measured; nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import ml_collections
from lwi_jax import data as data_lib
from lwi_jax.data import tabular_table
assert tabular_table.__file__.startswith(sys.argv[1]), tabular_table.__file__

def rss(field):
  for line in open("/proc/self/status"):
    if line.startswith(field):
      return int(line.split()[1]) * 1024

case, path, engine = sys.argv[2], sys.argv[3], sys.argv[4]
base = rss("VmRSS")
t = time.perf_counter()
if case == "read":
  kw = {} if engine == "before" else {"engine": engine}
  n = len(tabular_table.read_table(path, **kw))
else:
  cfg = ml_collections.ConfigDict(dict(
      name="tabular", path=path, label_column="label", delimiter=",", encoding="utf-8-sig",
      feature_columns=(), ignore_columns=(), numeric_columns=(), categorical_columns=(),
      missing_values=("", "?", "NA"), max_categories=50, balance=False,
      validation_fraction=0.1, test_fraction=0.2, split_seed=0))
  d = data_lib.load_dataset(cfg)
  n = len(d.train) + len(d.validation) + len(d.test)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": n, "rss_after_imports": base,
                  "peak": rss("VmHWM")}))
"""


def write_table(path: str, rows: int, seed: int = 0) -> int:
  """The synthetic table, written in blocks; returns its size in bytes."""
  rng = np.random.default_rng(seed)
  towns = np.asarray(['"Smith, J"', "Lyon", "Oslo", '"Rome, IT"', "Kyiv", "Lima", "Pune", "Graz"])
  colours = np.asarray(["red", "green", "blue", "amber", "violet"])
  sizes = np.asarray([f"s{i}" for i in range(12)])
  with open(path, "w") as f:
    f.write(",".join([f"x{j}" for j in range(12)] + ["town", "colour", "size", "label"]) + "\n")
    for start in range(0, rows, 100_000):
      n = min(100_000, rows - start)
      label = rng.integers(0, 6, n)
      cols = []
      for j in range(12):
        x = rng.normal(label * (j % 3) * 0.3, 1.0 + j, n)
        cells = np.char.mod("%.8g", x).astype(object)
        cells[rng.random(n) < 0.02] = "?"
        cols.append(cells)
      cols += [towns[rng.integers(0, towns.size, n)], colours[(label + rng.integers(0, 2, n)) % 5],
               sizes[rng.integers(0, sizes.size, n)], np.char.mod("class_%d", label)]
      block = np.stack([np.asarray(c, dtype=object) for c in cols], axis=1)
      f.write("\n".join(",".join(r) for r in block.tolist()) + "\n")
  return os.path.getsize(path)


def run_case(repo: str, case: str, path: str, engine: str) -> dict:
  out = subprocess.run([sys.executable, "-c", _CHILD, repo, case, path, engine], check=True,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": repo})
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> str:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--rows", type=int, default=1_350_000)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--before_repo", default="", help="another checkout's root (its lwi_jax/)")
  p.add_argument("--cases", default="read,load")
  p.add_argument("--dir", default=tempfile.gettempdir())
  p.add_argument("--keep", action="store_true", help="keep the generated file (and reuse a kept one)")
  args = p.parse_args(argv)
  path = os.path.join(args.dir, f"csv_load_{args.rows}.csv")
  t = time.perf_counter()
  size = (os.path.getsize(path) if args.keep and os.path.isfile(path)
          else write_table(path, args.rows))
  print(f"wrote {path}: {size / 1e6:.1f} MB, {args.rows} rows ({time.perf_counter() - t:.0f} s)",
        flush=True)
  variants = []
  for case in args.cases.split(","):
    variants += [(case, "auto", REPO)]
    if case == "read":
      variants += [(case, "strict", REPO)]
    if args.before_repo:
      variants += [(case, "before", os.path.abspath(args.before_repo))]
  results = {v: [] for v in variants}
  try:
    for r in range(args.rounds):
      for v in variants:
        results[v].append(run_case(v[2], v[0], path, v[1]))
        m = results[v][-1]
        print(f"round {r}: {v[0]} {v[1]}: {m['seconds']:.1f} s, peak {m['peak'] / 1e9:.2f} GB",
              flush=True)
  finally:
    if not args.keep:
      os.remove(path)
  lines = [f"File: {size / 1e6:.1f} MB, {args.rows} rows, 16 columns + label; {args.rounds} "
           "round(s), one subprocess per case and round.", "",
           "| case | reader | seconds (min / median) | peak RSS (VmHWM) | growth over imports |"
           " growth / file size |", "|---|---|---|---|---|---|"]
  for (case, engine, _), ms in results.items():
    secs = [m["seconds"] for m in ms]
    peak = max(m["peak"] for m in ms)
    growth = max(m["peak"] - m["rss_after_imports"] for m in ms)
    lines.append(f"| {case} | {engine} | {min(secs):.1f} / {statistics.median(secs):.1f} | "
                 f"{peak / 1e9:.2f} GB | {growth / 1e9:.2f} GB | {growth / size:.1f}x |")
  text = "\n".join(lines)
  print(text)
  return text


if __name__ == "__main__":
  main()
