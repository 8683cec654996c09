"""The image-folder source on the real CIFAR-10, once: equivalence with the python pickles and
decoding speed, side by side in one process.

  python -m bench.image_folder_speed [--out=/tmp/cifar_png] [--skip-study] [--cifar-dir=DIR]

1. Loads the python version (pickles) and times it.
2. Writes all 60,000 images as PNGs in both layouts (image_export.write_image_folder):
   out/split/{train,test}/<class>/ and out/class/<class>/.
3. Loads the split layout through the image folder source twice: the first run decodes every
   PNG (images/s; the files were just written, so they come from the page cache, not the
   disk), the second reads the cache. Both times are printed beside the pickle load time.
4. Checks the decoded arrays equal the pickles' (split layout: train and test; class layout:
   the pool equals train followed by test).
5. Runs configs/cifar.py:smoke on the python source and on the PNG folder (same split, same
   model, same seeds) and compares their results.json: every number must be identical; the
   only fields allowed to differ are listed in ALLOWED_DIFFERENCES.
Timings are single runs on whatever machine this is (say in BUILD_NOTES whether its cores were
shared); they are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from bench.run import load_config  # noqa: E402
from lwi_jax.data import cifar10, image_export, image_folder, image_scan  # noqa: E402
from lwi_jax.study import study as study_lib  # noqa: E402

CIFAR10_DIR = os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar-10-batches-py")
# Where the two runs may differ: the data source's description, the timings, the workdir.
ALLOWED_DIFFERENCES = ("config.data", "config.workdir", "dataset.info", "dataset.name",
                       "wall_seconds")
TIMING_KEYS = ("seconds", "wall_seconds")  # per-epoch timings in every member's history


def folder_cfg(root: str, cache_dir: str, smoke_data):
  """configs/images.py:folder's data fields, with the :smoke split sizes of configs/cifar.py."""
  cfg = load_config("images", "folder").data
  cfg.root, cfg.cache_dir, cfg.layout = root, cache_dir, "split"
  for field in ("validation_fraction", "min_validation_per_class", "split_seed",
                "train_per_class", "test_per_class"):
    cfg[field] = smoke_data[field]
  return cfg


def diff(a, b, path="") -> list[str]:
  """Paths where two JSON values differ (numbers compared exactly)."""
  if any(path == p or path.startswith(p + ".") for p in ALLOWED_DIFFERENCES) \
      or path.rsplit(".", 1)[-1] in TIMING_KEYS:
    return []
  if isinstance(a, dict) and isinstance(b, dict):
    return [d for k in sorted(set(a) | set(b))
            for d in (diff(a.get(k), b.get(k), f"{path}.{k}".lstrip(".")) if k in a and k in b
                      else [f"{path}.{k} only in one"])]
  if isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      return [f"{path}: lengths {len(a)} vs {len(b)}"]
    return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
  return [] if a == b else [f"{path}: {a!r:.60} vs {b!r:.60}"]


def main(argv=None) -> dict:
  """Runs the benchmark; returns what it printed as numbers and flags (for the smoke test)."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="")
  parser.add_argument("--skip-study", action="store_true")
  parser.add_argument("--cifar-dir", default=CIFAR10_DIR)
  args = parser.parse_args(argv)
  out = args.out or tempfile.mkdtemp(prefix="cifar_png_")
  t = time.perf_counter()
  train, test, names = cifar10.load_python_version(args.cifar_dir)
  t_pickle = time.perf_counter() - t
  t = time.perf_counter()
  n = image_export.write_image_folder(os.path.join(out, "split"), {"train": train, "test": test},
                                      names, "split")
  image_export.write_image_folder(os.path.join(out, "class"), {"train": train, "test": test},
                                  names, "class")
  t_write = time.perf_counter() - t
  smoke = load_config("cifar", "smoke")
  cache = os.path.join(out, "cache")
  shutil.rmtree(cache, ignore_errors=True)
  cfg = folder_cfg(os.path.join(out, "split"), cache, smoke.data)
  times = []
  for _ in range(2):
    t = time.perf_counter()
    scan = image_scan.scan(cfg.root, "split")
    arrays, _, reused = image_folder.decoded(cfg, scan, cfg.root)
    times.append((time.perf_counter() - t, reused))
  x, code = arrays["images"], arrays["split"]
  same_split = (np.array_equal(x[code == 0], train.inputs) and np.array_equal(
      x[code == 1], test.inputs) and np.array_equal(arrays["labels"],
                                                    np.concatenate([train.labels, test.labels])))
  class_cfg = folder_cfg(os.path.join(out, "class"), cache, smoke.data)
  class_arrays, _, _ = image_folder.decoded(
      class_cfg, image_scan.scan(class_cfg.root, "class"), class_cfg.root)
  same_class = (np.array_equal(class_arrays["images"], np.concatenate([train.inputs,
                                                                       test.inputs]))
                and np.array_equal(class_arrays["labels"],
                                   np.concatenate([train.labels, test.labels])))
  (t_first, r1), (t_cached, r2) = times
  print(f"pickles: {t_pickle:.2f} s for {n:,} images")
  print(f"write {2 * n} PNGs (both layouts): {t_write:.1f} s ({2 * n / t_write:.0f} images/s)")
  print(f"image folder, first run (cache reused: {r1}): {t_first:.2f} s "
        f"({n / t_first:.0f} images/s)")
  print(f"image folder, cached run (cache reused: {r2}): {t_cached:.2f} s "
        f"({n / t_cached:.0f} images/s); cached / pickles = {t_cached / t_pickle:.2f}x")
  print(f"arrays identical to the pickles: split layout {same_split}, class layout {same_class}")
  summary = {"images": n, "cache_reused": [r1, r2], "same_split": same_split,
             "same_class": same_class, "seconds": {"pickles": t_pickle, "first": t_first,
                                                   "cached": t_cached}}
  if args.skip_study:
    return summary
  results = []
  for name in ("python", "folder"):
    config = load_config("cifar", "smoke")
    config.workdir = os.path.join(out, f"smoke_{name}")
    shutil.rmtree(config.workdir, ignore_errors=True)
    if name == "folder":
      config.data = folder_cfg(os.path.join(out, "split"), cache, smoke.data)
    else:
      config.data.dir = args.cifar_dir
    config.lock()
    study_lib.run(config, log=lambda line: None)
    with open(os.path.join(config.workdir, "results.json")) as f:
      results.append(json.load(f))
  differences = diff(*results)
  print(f":smoke results.json, python source vs PNG folder: {len(differences)} difference(s) "
        f"outside {list(ALLOWED_DIFFERENCES)}")
  for d in differences[:20]:
    print("  " + d)
  return dict(summary, differences=differences)


if __name__ == "__main__":
  main()
