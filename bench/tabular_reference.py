"""Is the project's MLP a fair tabular baseline? It beside scikit-learn on the SAME split.

  pip install -e '.[bench]'            # scikit-learn (not a runtime dependency)
  python -m bench.tabular_reference [--preset satimage] [--seeds 0,1,2,3,4]

The data is the study's (configs/tabular.py: the preset's loader, balancing and split, split
seed 0); every method trains on the training split and is scored on the test split; one run per
seed (the project MLP: one ensemble of the baseline members, i.e. the study's baseline phase;
scikit-learn: random_state=seed). Methods: the project MLP with the config's sizes and epochs;
scikit-learn's MLPClassifier with its defaults (hidden (100,), relu, adam, 200 epochs, L2 1e-4)
and with the project's hidden sizes; HistGradientBoostingClassifier with its defaults.
Prints a markdown table: test accuracy (mean +- sd over seeds), per-class TPR (mean), seconds.
Reported as measured; nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.run import load_config  # noqa: E402
from lwi_jax import data as data_lib  # noqa: E402
from lwi_jax import member  # noqa: E402
from lwi_jax.parallel import ensemble  # noqa: E402
from lwi_jax.study import trainer as trainer_lib  # noqa: E402


def per_class_tpr(y, pred, classes: int) -> np.ndarray:
  return np.asarray([np.mean(pred[y == c] == c) for c in range(classes)])


def project_mlp(config, data, seeds) -> tuple[list[np.ndarray], list[float], float]:
  """Baseline members of the study (uniform weights), one ensemble; test predictions' TPRs."""
  trainer = trainer_lib.Trainer(config, data, log=lambda msg: None)
  hp = ensemble.stack([member.MemberHParams.create(np.ones(data.num_classes, np.float32))
                       for _ in seeds])
  t0 = time.perf_counter()
  states, _, _ = trainer.fit("baseline", [f"seed{s}" for s in seeds], list(seeds), hp)
  scores = trainer.evaluate(states, "test")
  return ([np.asarray(s["tpr"]) for s in scores], [float(s["accuracy"]) for s in scores],
          time.perf_counter() - t0)


def sklearn_methods(config, max_iter: int = 0):
  """max_iter > 0 caps every method's iterations (a smoke run); 0 = scikit-learn's defaults."""
  from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415
  from sklearn.neural_network import MLPClassifier  # noqa: PLC0415
  hidden = tuple(config.model.hidden_sizes)
  cap = {"max_iter": max_iter} if max_iter > 0 else {}
  return {
      "sklearn MLPClassifier (defaults, hidden (100,))":
          lambda s: MLPClassifier(random_state=s, **cap),
      f"sklearn MLPClassifier (hidden {hidden}, batch {config.train.batch_size})":
          lambda s: MLPClassifier(hidden, batch_size=config.train.batch_size, random_state=s,
                                  **cap),
      "sklearn HistGradientBoostingClassifier (defaults)":
          lambda s: HistGradientBoostingClassifier(random_state=s, **cap),
  }


def main(argv=None) -> str:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--preset", default="satimage")
  p.add_argument("--seeds", default="0,1,2,3,4")
  p.add_argument("--epochs", type=int, default=0,
                 help="0 = the config's epochs and scikit-learn's defaults; N > 0 caps every "
                      "method at N epochs/iterations (a smoke run, not a result)")
  args = p.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(",")]
  config = load_config("tabular", args.preset)
  if args.epochs > 0:
    config.train.epochs = args.epochs
  data = data_lib.load_dataset(config.data)
  c = data.num_classes
  rows = {}
  tprs, accs, seconds = project_mlp(config, data, seeds)
  y_test = data.test.labels
  rows[f"project MLP {tuple(config.model.hidden_sizes)}, {config.train.epochs} epochs "
       f"(one ensemble of {len(seeds)})"] = (tprs, accs, seconds)
  for name, make in sklearn_methods(config, args.epochs).items():
    t0 = time.perf_counter()
    tp, ac = [], []
    for s in seeds:
      pred = make(s).fit(data.train.inputs, data.train.labels).predict(data.test.inputs)
      tp.append(per_class_tpr(y_test, pred, c))
      ac.append(float(np.mean(pred == y_test)))
    rows[name] = (tp, ac, time.perf_counter() - t0)
  lines = [f"Data: {config.data.name} (balance={config.data.balance}), train {len(data.train)}, "
           f"test {len(data.test)}; seeds {seeds}; load {os.getloadavg()[0]:.1f} at the end.\n",
           "| method | test accuracy % (mean ± sd) | " + " | ".join(data.class_names)
           + " | seconds (all seeds) |", "|---|---|" + "---|" * c + "---|"]
  for name, (tp, ac, sec) in rows.items():
    mean_tpr = np.mean(tp, axis=0)
    lines.append(f"| {name} | {100 * np.mean(ac):.2f} ± {100 * np.std(ac, ddof=1):.2f} | "
                 + " | ".join(f"{100 * v:.1f}" for v in mean_tpr) + f" | {sec:.1f} |")
  text = "\n".join(lines)
  print(text)
  return text


if __name__ == "__main__":
  main()
