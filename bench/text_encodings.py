"""Which text encoding gives the best names baseline? (BUILD_NOTES "Text encoding" table.)

For each encoding (normalization/vocabulary) the unweighted baseline of configs/names.py is
trained for every seed as one ensemble, exactly as `launch.py` trains its baseline phase, and
scored on the TEST split: accuracy, Var(s) and the worst class's TPR, mean and sd over seeds.
Only the encoding changes between rows; everything else is the config's default.

  python -m bench.text_encodings --seeds 0,1,2 \
      --encodings strip_accents/latin,strip_accents/learned,nfkc_casefold/learned,nfkc/learned
  # 'default' = the config as it is (e.g. run from an older checkout for its own encoding)

Prints one markdown row per encoding and writes them as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from bench.run import load_config  # noqa: E402
from lwi_jax import data as data_lib  # noqa: E402
from lwi_jax import member  # noqa: E402
from lwi_jax.parallel import ensemble  # noqa: E402
from lwi_jax.study import trainer as trainer_lib  # noqa: E402


def measure(config, seeds: list[int]) -> dict:
  data = data_lib.load_dataset(config.data)
  for line in getattr(data_lib, "summary_lines", lambda d: [])(data):
    print(line, flush=True)
  trainer = trainer_lib.Trainer(config, data, log=lambda s: None)
  hparams = ensemble.stack([member.MemberHParams.create(
      np.ones(data.num_classes, np.float32))] * len(seeds))
  t0 = time.perf_counter()
  states, _, _ = trainer.fit("baseline", [f"seed{s}" for s in seeds], seeds, hparams)
  test = trainer.evaluate(states, "test")
  seconds = time.perf_counter() - t0
  out = {"max_len": int(data.info["max_len"]), "vocab_size": int(data.info["vocab_size"]),
         "truncated": int(data.info.get("truncated", -1)), "seconds": seconds,
         "tpr": [np.asarray(t["tpr"]).tolist() for t in test]}
  for key in ("accuracy", "var_tpr", "worst_tpr"):
    v = np.asarray([float(t[key]) for t in test])
    out[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                "values": v.tolist()}
  return out


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="names", help="a configs/ name with text data")
  p.add_argument("--encodings", default="strip_accents/latin,nfkc_casefold/learned")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--cache_dir", default="")
  p.add_argument("--out", default="")
  p.add_argument("--epochs", type=int, default=0, help="0 = the config's")
  p.add_argument("--split_seed", type=int, default=-1, help="-1 = the config's")
  args = p.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(",")]
  rows = {}
  print("| encoding | max_len | ids | test accuracy | Var(s) x 1e3 | worst-class TPR | s |")
  for enc in args.encodings.split(","):
    config = load_config(args.config)
    if args.cache_dir:
      config.data.cache_dir = args.cache_dir
    if args.epochs:
      config.train.epochs = args.epochs
    if args.split_seed >= 0:
      config.data.split_seed = args.split_seed
    if enc != "default":
      config.data.normalization, config.data.vocabulary = enc.split("/")
    r = measure(config, seeds)
    rows[enc] = r
    fmt = lambda k, scale=1.0: (f"{scale * r[k]['mean']:.4f} ± {scale * r[k]['sd']:.4f}")
    print(f"| {enc} | {r['max_len']} | {r['vocab_size']} | {fmt('accuracy')} | "
          f"{fmt('var_tpr', 1e3)} | {fmt('worst_tpr')} | {r['seconds']:.0f} |", flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"seeds": seeds, "rows": rows}, f, indent=1)
  return rows


if __name__ == "__main__":
  main()
