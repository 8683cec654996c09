"""Writes images as an image folder: to check a loader against another, and to look at what
the model sees.

  python -m lwi_jax.data.image_export --config=configs/cifar.py:smoke --out=/tmp/cifar_png
  python -m lwi_jax.data.image_export --config=configs/images.py:npz \
      --config.data.path=digits.npz --out=/tmp/digits --layout=class

The CLI writes a loaded dataset's train, validation and test splits (layout 'split':
out/train|val|test/<class>/<index>.png, so the folder loads back to the same three splits) or
all of them into out/<class>/ (layout 'class'). File names are the example's index, zero-padded
and counted across classes, so image_scan.py's order (path inside the class folder, then class)
gives the rows back in their original order.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np

from lwi_jax.data import image_convert
from lwi_jax.data.types import Split

FORMATS = ("png", "bmp", "webp")  # lossless; JPEG would change the pixels


def _folder_name(name: str) -> str:
  name = str(name)
  if not name or name.startswith(".") or os.sep in name or name in (".", ".."):
    raise ValueError(f"class name {name!r} cannot be a folder name")
  return name


def write_image_folder(out: str, parts: dict[str, Split], class_names, layout: str = "split",
                       fmt: str = "png", workers: int = 0) -> int:
  """Writes `parts` ({'train'|'val'|'test': Split of uint8 images}) under `out`.

  Args:
    out: the folder to write (created; existing files with the same names are replaced).
    parts: split name -> images and labels; layout 'class' writes them all into one pool,
      numbered in the order given.
    class_names: folder name of each label.
    layout: 'split' (out/<split>/<class>/) or 'class' (out/<class>/).
    fmt: one of FORMATS.
    workers: writer threads (0 = one per available core).

  Returns:
    The number of files written.
  """
  if fmt not in FORMATS:
    raise ValueError(f"format {fmt!r} is not one of {list(FORMATS)} (lossless only)")
  if layout not in ("split", "class"):
    raise ValueError(f"layout {layout!r} is not one of ['split', 'class']")
  folders = [_folder_name(n) for n in class_names]
  total = sum(len(p) for p in parts.values())
  width = max(5, len(str(max(total - 1, 0))))
  jobs, start = [], 0
  for split, part in parts.items():
    base = out if layout == "class" else os.path.join(out, split)
    for i, (image, label) in enumerate(zip(part.inputs, part.labels)):
      index = start + i if layout == "class" else i
      jobs.append((os.path.join(base, folders[int(label)], f"{index:0{width}d}.{fmt}"), image))
    start += len(part)
  for d in {os.path.dirname(p) for p, _ in jobs}:
    os.makedirs(d, exist_ok=True)

  def write(job):
    path, image = job
    image_convert.from_array(np.asarray(image)).save(path, format=fmt.upper(),
                                                     **({"lossless": True} if fmt == "webp"
                                                        else {}))

  with concurrent.futures.ThreadPoolExecutor(workers or len(os.sched_getaffinity(0))) as pool:
    list(pool.map(write, jobs, chunksize=64))
  return len(jobs)


def main(argv) -> None:
  del argv
  from absl import flags
  from lwi_jax import data as data_lib
  cfg = flags.FLAGS.config
  data = data_lib.load_dataset(cfg.data)
  n = write_image_folder(flags.FLAGS.out, {"train": data.train, "val": data.validation,
                                           "test": data.test},
                         data.class_names, flags.FLAGS.layout, flags.FLAGS.format)
  print(f"wrote {n} images of {list(data.class_names)} to {flags.FLAGS.out} "
        f"(layout {flags.FLAGS.layout!r})")


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "a study config (configs/*.py:preset)")
  flags.DEFINE_string("out", None, "the folder to write", required=True)
  flags.DEFINE_enum("layout", "split", ["split", "class"], "out/<split>/<class> or out/<class>")
  flags.DEFINE_enum("format", "png", list(FORMATS), "lossless image format")
  app.run(main)
