"""The UCI handwritten digits that scikit-learn ships (1,797 8x8 greyscale images, 10 classes;
offline, inside the package) written as an image folder, for a real run of configs/images.py
on images that are neither CIFAR-10 nor made here.

  python -m bench.digits_folder --out=/tmp/digits_png
  python launch.py --config=configs/images.py:folder --config.data.root=/tmp/digits_png \
      --config.train.flip=none --config.train.eval_flip=False ...   (BUILD_NOTES.md, #24)

Pixels are 0..16 ink counts; they are written as round(v * 255 / 16), the only change. The
folder is the class layout (<digit>/<index>.png): the loader carves test and validation.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from lwi_jax.data import image_export  # noqa: E402
from lwi_jax.data.types import Split  # noqa: E402


def main(argv=None) -> int:
  """Writes the folder; returns the number of images written."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  from sklearn.datasets import load_digits  # the bench extra (pyproject.toml)
  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  n = image_export.write_image_folder(args.out, {"all": Split(images, labels)},
                                      [str(c) for c in range(10)], layout="class")
  print(f"wrote {n} digits to {args.out}; per class {np.bincount(labels).tolist()}")
  return n


if __name__ == "__main__":
  main()
