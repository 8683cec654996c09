"""Which files of an image folder are which split's examples of which class (no decoding).

Two layouts (`data.layout`; 'auto' picks 'split' when the root has a `train` folder):
  class   root/<class>/...            torchvision's ImageFolder; test and validation are carved
                                      from it, stratified and seeded (image_folder.py)
  split   root/<split>/<class>/...    TFDS's ImageFolder; splits `train`, `test` and optionally
                                      one of `val`, `valid`, `validation`
Inside a class folder images are found recursively (nested folders belong to the class, as in
ImageFolder). Skipped and counted, never silently: hidden files and folders (a leading '.'),
files whose extension is not an image format Pillow decodes here, files directly in the root
(or in a split folder) outside any class folder, top-level folders that are not a split
(layout 'split'), and class folders without a single image (not a class).
A split's examples are ordered by their path inside the class folder, then by class, so a
folder written with globally numbered file names (image_export.py) loads back in its original
order: the CIFAR-10 equivalence check needs exactly that.
"""

from __future__ import annotations

import dataclasses
import os

from lwi_jax.data.errors import DataError

LAYOUTS = ("auto", "class", "split")
VALIDATION_NAMES = ("val", "valid", "validation")
SPLIT_NAMES = ("train", "test") + VALIDATION_NAMES
_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
               ".webp": "WEBP"}


def image_extensions() -> tuple[str, ...]:
  """The extensions read here: WebP only where this Pillow has its decoder."""
  from PIL import features
  return tuple(e for e, fmt in _EXTENSIONS.items() if fmt != "WEBP" or features.check("webp"))


@dataclasses.dataclass
class Scan:
  """files[split] = [(path relative to the root, class name)], in load order."""

  layout: str
  files: dict[str, list[tuple[str, str]]]
  class_names: tuple[str, ...]
  skipped: dict[str, list[str]]  # reason -> relative paths (or folder names)
  stats: dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns), read while scanning

  def stat_entries(self) -> list:
    """(split, path, size, mtime_ns) of every example file: what the cache key is made of."""
    return [(split, rel) + self.stats[rel] for split, files in self.files.items()
            for rel, _ in files]


def _hidden(name: str) -> bool:
  return name.startswith(".")


def _class_files(root: str, rel_dir: str, exts: tuple[str, ...], skipped: dict,
                 stats: dict) -> list[str]:
  """Image files under root/rel_dir (recursively), relative to the root; the rest counted.

  Paths are built by string concatenation and stat'ed through scandir: on 60,000 files
  os.walk + os.path.relpath cost seconds, more than loading the cached arrays.
  """
  found, todo = [], [rel_dir]
  while todo:
    rel = todo.pop()
    subdirs = []
    for entry in os.scandir(os.path.join(root, rel)):
      path = f"{rel}/{entry.name}"
      if _hidden(entry.name):
        skipped["hidden"].append(path + ("/" if entry.is_dir() else ""))
      elif entry.is_dir():
        subdirs.append(path)
      elif os.path.splitext(entry.name)[1].lower() not in exts:
        skipped["not_an_image"].append(path)
      else:
        st = entry.stat()
        stats[path] = (st.st_size, st.st_mtime_ns)
        found.append(path)
    todo += sorted(subdirs, reverse=True)
  return found


def _scan_classes(root: str, rel_dir: str, exts, skipped, stats) -> dict[str, list[str]]:
  """{class name: its image files} for the class folders of root/rel_dir."""
  classes = {}
  for entry in sorted(os.scandir(os.path.join(root, rel_dir)), key=lambda e: e.name):
    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
    if _hidden(entry.name):
      skipped["hidden"].append(rel + ("/" if entry.is_dir() else ""))
    elif not entry.is_dir():
      skipped["outside_class_folders"].append(rel)
    else:
      files = _class_files(root, rel, exts, skipped, stats)
      if files:
        classes[entry.name] = files
      else:
        skipped["empty_class_folders"].append(rel + "/")
  return classes


def _ordered(classes: dict[str, list[str]], root_rel: str) -> list[tuple[str, str]]:
  """(path, class) sorted by the path inside the class folder, then the class."""
  prefix = len(root_rel) + 1 if root_rel else 0
  items = [(p[prefix + len(c) + 1:], c, p) for c, paths in classes.items() for p in paths]
  return [(p, c) for _, c, p in sorted(items)]


def _split_folders(root: str) -> dict[str, str]:
  """{'train'|'test'|'validation': folder name} of a split-layout root."""
  found = {}
  for entry in os.scandir(root):
    key = entry.name.lower()
    if entry.is_dir() and key in SPLIT_NAMES:
      split = "validation" if key in VALIDATION_NAMES else key
      if split in found:
        raise DataError(f"data.root={root!r} has two {split} folders: {found[split]!r} and "
                        f"{entry.name!r} (keep one of {list(VALIDATION_NAMES)})")
      found[split] = entry.name
  return found


def resolve_layout(root: str, layout: str) -> str:
  if layout not in LAYOUTS:
    raise ValueError(f"data.layout={layout!r} is not one of {list(LAYOUTS)}")
  if layout != "auto":
    return layout
  return "split" if "train" in _split_folders(root) else "class"


def scan(root: str, layout: str) -> Scan:
  """Finds every example of an image folder; DataError for a layout it cannot use.

  Args:
    root: the folder (data.root).
    layout: data.layout, one of LAYOUTS.

  Returns:
    A Scan: files per split ('pool' for the class layout; 'train', 'test' and maybe
    'validation' for the split layout), the sorted class names, what was skipped and why.
  """
  if not root or not os.path.isdir(root):
    raise DataError(f"data.root={root!r} is not a directory (expected root/<class>/*.png or "
                    "root/<split>/<class>/*.png)")
  layout = resolve_layout(root, layout)
  exts = image_extensions()
  skipped = {k: [] for k in ("hidden", "not_an_image", "outside_class_folders",
                             "empty_class_folders", "not_a_split_folder")}
  stats = {}
  if layout == "class":
    classes = _scan_classes(root, "", exts, skipped, stats)
    if not classes:
      raise DataError(f"data.root={root!r}: no class folder with an image in it (formats read "
                      f"here: {', '.join(exts)})")
    return Scan(layout, {"pool": _ordered(classes, "")}, tuple(sorted(classes)), skipped, stats)
  folders = _split_folders(root)
  for split in ("train", "test"):
    if split not in folders:
      raise DataError(f"data.root={root!r} (layout 'split') has no {split!r} folder; found "
                      f"{sorted(e.name for e in os.scandir(root) if e.is_dir())}")
  for entry in sorted(os.scandir(root), key=lambda e: e.name):
    if entry.name not in folders.values():
      reason = "hidden" if _hidden(entry.name) else (
          "not_a_split_folder" if entry.is_dir() else "outside_class_folders")
      skipped[reason].append(entry.name + ("/" if entry.is_dir() else ""))
  per_split = {s: _scan_classes(root, folders[s], exts, skipped, stats)
               for s in ("train", "test", "validation") if s in folders}  # not scandir's order
  names = tuple(sorted(per_split["train"]))
  for split, classes in per_split.items():
    missing = sorted(set(names) - set(classes)) if split == "test" else []
    extra = sorted(set(classes) - set(names))
    if extra:
      raise DataError(f"data.root={root!r}: classes in {folders[split]!r} without a training "
                      f"image: {extra} (the model cannot learn them; add training images or "
                      "remove the folders)")
    if missing:
      raise DataError(f"data.root={root!r}: classes without a test image: {missing} (their TPR "
                      f"would be undefined; add test images or use data.layout='class', which "
                      "carves the test split from every class)")
  files = {s: _ordered(c, folders[s]) for s, c in per_split.items()}
  return Scan(layout, files, names, skipped, stats)
