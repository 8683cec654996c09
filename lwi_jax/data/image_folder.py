"""Your own images (`data.name='image_folder'`): decoded in parallel, cached, split, reported.

Finding the files is image_scan.py; turning a picture into an array is image_convert.py. Here:
  decoding  Pillow in a thread pool (its decoders release the GIL; threads, not processes,
            because a fork after JAX started is unsafe), a progress bar on a terminal only.
            An unreadable or truncated file is a DataError naming it, or, with
            data.skip_bad_images, skipped and counted.
  memory    before decoding, the arrays' size (files x H x W x C) is compared with the memory
            available (MemAvailable); more is refused with both numbers and the remedy.
  cache     the decoded arrays are stored under data.cache_dir, keyed by the folder's content:
            every example file's relative path, size and modification time (ns), plus the
            decoding options. Stat, not a hash of the bytes: a second run then costs one
            directory walk instead of reading every file again, and an edited image has a new
            mtime (an edit that keeps size and mtime to the nanosecond is the case it misses).
            Files are written atomically; the data content hash (content_hash.py) of what is
            loaded then makes the phases follow any edit.
  splits    layout 'class': the test split (data.test_fraction) and then the validation split
            (data.validation_fraction) carved per class, seeded by data.split_seed; layout
            'split': the folders' splits, validation carved from train unless a val folder
            exists. Which file went where is the data's split manifest (split_manifest.py;
            the study writes it to the workdir); data.split_manifest=<that file> reuses it
            exactly instead of carving one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os

import numpy as np

from lwi_jax.data import image_convert, image_report, image_scan, split_manifest, splits
from lwi_jax.data.errors import DataError
from lwi_jax.data.types import ClassificationData, Split
from lwi_jax.runtime import console, io_utils

CACHE_VERSION = 1  # bump when decoding changes what a file becomes
SPLIT_CODES = {"pool": 0, "train": 0, "test": 1, "validation": 2}
_CHUNK = 64  # files per pool task: few enough tasks for a light queue, a smooth bar


def available_memory_bytes() -> int:
  """MemAvailable from /proc/meminfo (Linux), else physical memory."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(root: str, paths: list[str], channels: int, image_size: int) -> int:
  """Estimated bytes of the decoded arrays; DataError when they exceed available memory.

  Without data.image_size the first file's size stands for all (they must agree anyway).
  channels=0 is counted as 3, the most auto can give.
  """
  from PIL import Image
  if image_size:
    h = w = image_size
  else:
    try:
      with Image.open(os.path.join(root, paths[0])) as im:
        w, h = im.size
    except Exception:  # noqa: BLE001 - the decoder reports the bad file properly
      return 0
  need = len(paths) * h * w * (channels or 3)
  have = available_memory_bytes()
  if need > have:
    raise DataError(f"{len(paths)} images of {h}x{w}x{channels or 3} need {need / 2**30:.1f} "
                    f"GiB as arrays, more than the {have / 2**30:.1f} GiB available; set a "
                    "smaller data.image_size (or data.channels=1), or use fewer images")
  return need


def _decode_one(path: str, channels: int, image_size: int):
  from PIL import Image
  try:
    with Image.open(path) as im:
      return image_convert.to_array(im, channels, image_size), None
  except Exception as e:  # noqa: BLE001 - any failure of an untrusted file is "unreadable"
    return None, f"{type(e).__name__}: {str(e)[:200]}"


def decode_files(root: str, paths: list[str], channels: int, image_size: int,
                 workers: int = 0, progress: bool | None = None) -> tuple[list, list]:
  """(arrays, errors) in the order of `paths`; errors[i] is None or why file i failed."""
  workers = workers or len(os.sched_getaffinity(0))
  chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
  task = lambda chunk: [_decode_one(os.path.join(root, p), channels, image_size) for p in chunk]
  show = console.interactive() if progress is None else progress
  bar = None
  if show:
    from tqdm import tqdm  # lazy, as console.py: only interactive runs draw bars
    bar = tqdm(total=len(paths), desc="decoding images", unit="img", leave=False,
               mininterval=0.5)
  out = []
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for chunk_out in pool.map(task, chunks):
      out += chunk_out
      if bar is not None:
        bar.update(len(chunk_out))
  if bar is not None:
    bar.close()
  return [a for a, _ in out], [e for _, e in out]


def _cache_key(cfg, scan: image_scan.Scan, root: str) -> str:
  h = hashlib.sha256()
  h.update(json.dumps([CACHE_VERSION, scan.layout, int(cfg.channels), int(cfg.image_size),
                       bool(cfg.skip_bad_images), list(scan.class_names)]).encode())
  h.update(json.dumps(scan.stat_entries()).encode())
  return h.hexdigest()[:24]


def _decode_scan(cfg, scan: image_scan.Scan, root: str) -> dict:
  """Arrays, labels, split codes and bad files of every scanned example (what is cached)."""
  entries = [(s, rel, c) for s, files in scan.files.items() for rel, c in files]
  paths = [rel for _, rel, _ in entries]
  check_memory(root, paths, int(cfg.channels), int(cfg.image_size))
  arrays, errors = decode_files(root, paths, int(cfg.channels), int(cfg.image_size))
  bad = [(p, e) for p, e in zip(paths, errors) if e is not None]
  if bad and not cfg.skip_bad_images:
    raise DataError(f"{os.path.join(root, bad[0][0])}: not a readable image ({bad[0][1]})"
                    + (f"; {len(bad) - 1} more unreadable file(s)" if len(bad) > 1 else "")
                    + "; fix or remove it, or set data.skip_bad_images=True to skip and count")
  keep = [i for i, e in enumerate(errors) if e is None]
  if not keep:
    raise DataError(f"data.root={root!r}: no image could be decoded")
  arrays = [arrays[i] for i in keep]
  if int(cfg.channels) == 0:
    arrays = image_convert.unify_channels(arrays)
  shapes = {}
  for i, a in zip(keep, arrays):
    shapes.setdefault(a.shape[:2], []).append(paths[i])
  if len(shapes) > 1:
    listed = "; ".join(f"{h}x{w}: {len(p)} file(s), e.g. {p[0]}"
                       for (h, w), p in sorted(shapes.items(), key=lambda kv: -len(kv[1]))[:3])
    raise DataError(f"data.root={root!r}: images differ in size ({listed}); set "
                    "data.image_size=N to resize every image to N x N")
  class_index = {c: i for i, c in enumerate(scan.class_names)}
  return {"images": np.stack(arrays),
          "labels": np.asarray([class_index[entries[i][2]] for i in keep], np.int32),
          "split": np.asarray([SPLIT_CODES[entries[i][0]] for i in keep], np.int8),
          "paths": np.asarray([paths[i] for i in keep]),
          "bad": json.dumps(bad)}


def _cache_dir(cfg) -> str:
  return os.path.abspath(os.path.expanduser(cfg.cache_dir))


def decoded(cfg, scan: image_scan.Scan, root: str) -> tuple[dict, str, bool]:
  """(arrays dict, cache folder, reused?) for a scanned folder: from the cache when the key
  matches, else decoded and stored. One .npy per array (np.load reads them straight into
  memory, an .npz goes through zipfile); each written atomically and `complete` last, so a
  crash never leaves a cache that looks whole."""
  folder = os.path.join(_cache_dir(cfg), _cache_key(cfg, scan, root))
  names = ("images", "labels", "split", "paths")
  if os.path.exists(os.path.join(folder, "complete")):
    arrays = {k: np.load(os.path.join(folder, f"{k}.npy"), allow_pickle=False) for k in names}
    with open(os.path.join(folder, "complete")) as f:
      arrays["bad"] = f.read()
    return arrays, folder, True
  arrays = _decode_scan(cfg, scan, root)
  for k in names:
    buf = io.BytesIO()
    np.save(buf, arrays[k], allow_pickle=False)
    io_utils.atomic_write_bytes(os.path.join(folder, f"{k}.npy"), buf.getvalue())
  io_utils.atomic_write_text(os.path.join(folder, "complete"), arrays["bad"])
  return arrays, folder, False


def _subset(split: Split, per_class: int, seed: int) -> Split:
  return split.take(splits.per_class_subset(split.labels, per_class, seed)) if per_class \
      else split


def _carve(cfg, arrays: dict, names: tuple[str, ...], layout: str) -> dict[str, np.ndarray]:
  """Row indices of the decoded examples per split, by the layout's rule (module docstring)."""
  y, code = arrays["labels"], arrays["split"]
  whole = Split(np.arange(len(y)), y)  # rows stand in for images: the indices are the split
  if layout == "class":
    keep, test = splits.stratified_split(y, float(cfg.test_fraction), int(cfg.split_seed))
    pool, test_split = whole.take(keep), whole.take(test)
  else:
    pool, test_split = whole.take(np.flatnonzero(code == 0)), whole.take(np.flatnonzero(code == 1))
  if layout == "split" and (code == 2).any():
    data = ClassificationData(
        train=_subset(pool, cfg.train_per_class, cfg.split_seed),
        validation=whole.take(np.flatnonzero(code == 2)),
        test=_subset(test_split, cfg.test_per_class, cfg.split_seed + 1), class_names=names)
  else:
    data = splits.with_validation_split(pool, test_split, names, cfg)
  return {s: getattr(data, s).inputs for s in split_manifest.SPLITS}


def _rule(cfg, arrays: dict, layout: str) -> dict:
  """How `_carve` split the data: the fields it read (the manifest's `rule`)."""
  rule = {"split_seed": int(cfg.split_seed), "train_per_class": int(cfg.train_per_class),
          "test_per_class": int(cfg.test_per_class)}
  if layout == "class":
    rule["test_fraction"] = float(cfg.test_fraction)
  if layout == "class" or not (arrays["split"] == 2).any():
    rule["validation_fraction"] = float(cfg.validation_fraction)
  else:
    rule["validation"] = "the folder's validation split"
  return rule


def _split(cfg, arrays: dict, scan: image_scan.Scan) -> tuple[dict, dict, dict]:
  """(row indices per split, rule, facts for info): carved, or read from data.split_manifest."""
  given = cfg.get("split_manifest", "")  # '' (or absent, in configs made before it) = carve
  if not given:
    return _carve(cfg, arrays, scan.class_names, scan.layout), _rule(cfg, arrays, scan.layout), {}
  given = os.path.abspath(os.path.expanduser(given))
  manifest = split_manifest.read(given)
  index, unlisted = split_manifest.select(manifest, given, "image_folder", scan.layout,
                                          scan.class_names, arrays["paths"], arrays["labels"])
  return index, manifest["rule"], {"split_manifest_reused": given, "unlisted": len(unlisted),
                                   "unlisted_examples": unlisted[:5]}


def load_image_folder(cfg) -> ClassificationData:
  """`data.root` as train / validation / test splits (module docstring; configs/images.py).

  Args:
    cfg: config.data with root, layout, channels, image_size, skip_bad_images, cache_dir,
      test_fraction, validation_fraction, split_seed, train_per_class, test_per_class and
      optionally split_manifest.

  Returns:
    uint8 NHWC images and their labels; `info` holds per-class counts, what was skipped and
    why, the cache path and the training split's pixel statistics; `split_manifest` lists
    which file went to which split.
  """
  image_convert.check_options(int(cfg.channels), int(cfg.image_size))
  root = os.path.abspath(os.path.expanduser(cfg.root))
  scan = image_scan.scan(root, cfg.layout)
  arrays, folder, reused = decoded(cfg, scan, root)
  index, rule, split_info = _split(cfg, arrays, scan)
  x, y = arrays["images"], arrays["labels"]
  data = ClassificationData(class_names=scan.class_names,
                            **{s: Split(x[i], y[i]) for s, i in index.items()})
  manifest = split_manifest.build(
      "image_folder", root, scan.layout, scan.class_names,
      {s: [(arrays["paths"][j], scan.class_names[y[j]]) for j in i] for s, i in index.items()},
      rule)
  bad = json.loads(arrays["bad"])
  skipped = {k: len(v) for k, v in scan.skipped.items() if v}
  if bad:
    skipped["unreadable"] = len(bad)
  info = {"source": "image_folder", "root": root, "layout": scan.layout,
          "image_shape": list(data.train.inputs.shape[1:]), "cache": folder,
          "cache_reused": reused, "skipped": skipped,
          "skipped_examples": {k: v[:5] for k, v in scan.skipped.items() if v},
          "unreadable": [p for p, _ in bad][:20], **split_info}
  return dataclasses.replace(image_report.with_image_info(data, info), split_manifest=manifest)
