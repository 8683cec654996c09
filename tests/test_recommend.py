"""recommendation.json and its snippets: the exported weights reproduce the project's loss, and a
study with a grid ends its console with the decision."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from lwi_jax import losses
from lwi_jax.report import recommend

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["oak", "ash", "elm"]  # not sorted: label order is the data's, not alphabetical


def _gain(mean):
  return {"mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01, "p_value": 0.01}


def _results():
  evidence = {"gain": _gain(0.02), "delta_accuracy": _gain(-0.001)}
  members = [{"rule": "inverse_tpr:gamma=1", "seed": s, "status": "ok", "rule_name": "inverse_tpr",
              "hparams": {"gamma": 1.0}, "initial_class_weights": w}
             for s, w in ((0, [0.5, 1.0, 1.5]), (1, [0.7, 1.0, 1.3]))]
  return {"dataset": {"name": "trees", "content_hash": "abc123", "class_names": CLASSES},
          "config": {"workdir": "runs/trees"}, "rounds": [members],
          "selection": {"split": "validation", "independent": True, "why": "crossfit",
                        "criterion": "c", "evenness": "var",
                        "chosen": {"rule": "inverse_tpr:gamma=1",
                                   "family": "inverse_tpr:gamma=0:2:1",
                                   "selection": evidence, "test": evidence}}}


def test_recommendation_holds_the_choice_and_mean_weights():
  rec = recommend.build(_results())
  assert rec["rule"] == "inverse_tpr:gamma=1" and rec["family"] == "inverse_tpr:gamma=0:2:1"
  assert rec["dataset"]["content_hash"] == "abc123" and rec["weights_are_complete"]
  assert list(rec["class_weights"]) == CLASSES  # the data's label order
  np.testing.assert_allclose(list(rec["class_weights"].values()), [0.6, 1.0, 1.4])
  text = recommend.render(json.loads(json.dumps(rec)))
  for framework in ("# optax", "# pytorch", "# keras", "# sklearn"):
    assert framework in text
  assert "CrossEntropyLoss(weight=" in text and "class_weight=CLASS_WEIGHT" in text


def _snippet_vector(code):
  return np.array(json.loads(re.search(r"\((\[[^\]]*\])\)", code).group(1)))


def test_exported_weights_reproduce_the_projects_weighted_loss():
  """Trains a small model with the snippet's weights; its weighted loss on its own logits equals
  lwi_jax.losses.weighted_cross_entropy with the exported vector."""
  have = [m for m in ("sklearn", "torch") if importlib.util.find_spec(m)]
  if not have:
    pytest.skip("neither scikit-learn nor torch is installed (pip install scikit-learn)")
  rec = recommend.build(_results())
  code = recommend.snippets(rec)
  vector = _snippet_vector(code["optax"])
  rng = np.random.default_rng(0)
  y_idx = rng.integers(0, 3, 300)
  x = rng.normal(size=(300, 4)) + y_idx[:, None] * 0.7
  if "sklearn" in have:
    from sklearn.metrics import log_loss
    scope = {}
    exec(code["sklearn"], scope)  # the snippet as a user pastes it
    y = np.array(CLASSES)[y_idx]  # the data's labels are the class names
    model = scope["model"].fit(x, y)
    order = [list(model.classes_).index(c) for c in CLASSES]  # sklearn sorts the names
    logits = model.decision_function(x)[:, order]
    weights = np.array([scope["CLASS_WEIGHT"][c] for c in y])
    theirs = log_loss(y, model.predict_proba(x), sample_weight=weights, labels=model.classes_)
  else:
    import torch
    scope = {}
    exec(code["pytorch"], scope)
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y_idx)
    for _ in range(20):
      opt.zero_grad()
      scope["loss_fn"](lin(xt), yt).backward()
      opt.step()
    logits = lin(xt).detach().numpy()
    theirs = float(scope["loss_fn"](lin(xt), yt))
  ours = float(losses.weighted_cross_entropy(logits.astype(np.float32), y_idx, vector))
  np.testing.assert_allclose(theirs, ours, rtol=1e-5)
  scope = {}
  exec(code["optax"], scope)
  np.testing.assert_allclose(float(scope["loss_fn"](logits.astype(np.float32), y_idx)), ours,
                             rtol=1e-5)


def test_launch_with_a_grid_ends_with_the_decision(tmp_path):
  workdir = tmp_path / "run"
  args = ["--config=configs/tabular.py", "--config.model.hidden_sizes=(8,)",
          "--config.train.epochs=1", "--config.rules=('uniform','inverse_tpr:gamma=0.5|1')",
          "--config.seeds=(0,)", "--config.scores.method=crossfit", "--config.scores.folds=3",
          "--config.compare.bootstrap_samples=200", "--config.compare.test=none",
          f"--config.workdir={workdir}"]
  proc = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  tail = proc.stdout.strip().splitlines()
  end = tail[next(i for i, line in enumerate(tail) if line.startswith("outputs:")) + 1:]
  assert 2 <= len(end) <= 5 and end[0].startswith("Decision on the validation split (held out)")
  assert end[-1].strip().startswith(f"Recommendation: {workdir}/recommendation.json")
  assert "weights inverse_tpr:gamma=0.5|1: a grid of 2 rules" in proc.stdout
  with open(workdir / "recommendation.json") as f:
    rec = json.load(f)
  with open(workdir / "results.json") as f:
    results = json.load(f)
  sel = results["selection"]
  assert sel["independent"] and rec["independent"]
  trained = {"uniform", "inverse_tpr:gamma=0.5", "inverse_tpr:gamma=1"}
  posthoc = {f"{r}+logit_offsets:gamma=1" for r in trained | {"baseline"}}  # the preset's arm
  assert {p["rule"] for p in sel["front"]["test"]} == {"baseline"} | trained | posthoc
  assert rec["rule"] == (sel["chosen"] or {}).get("rule") != "uniform"
  assert rec["dataset"]["content_hash"] == results["dataset"]["content_hash"]
  assert (workdir / "plots" / "front.png").stat().st_size > 0
  assert "## The accuracy-evenness front" in (workdir / "report.md").read_text()
  shown = subprocess.run([sys.executable, "-m", "lwi_jax.report.recommend", str(workdir)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
  assert shown.returncode == 0 and "Recommendation for satimage" in shown.stdout


@pytest.mark.parametrize("rule, posthoc, retrain", [
    ("inverse_tpr:gamma=1", None, "full"),
    ("inverse_tpr:gamma=1,retrain=head", None, "head"),
    ("inverse_tpr:gamma=1,retrain=head+logit_offsets:gamma=1",
     "inverse_tpr:gamma=1,retrain=head", "head"),
    ("baseline+logit_offsets:gamma=1", "baseline", "none")])
def test_the_recommendation_says_what_training_its_row_measured(rule, posthoc, retrain):
  """Weights measured on the classifier head alone (or offsets on the unweighted model) are not
  a recipe for full retraining: the file and the printout say which it was."""
  results = _results()
  for m in results["rounds"][0]:
    m["rule"] = rule
    if posthoc:
      m["posthoc"] = {"source_rule": posthoc, "method": "logit_offsets:gamma=1",
                      "offsets": [0.1, 0.0, -0.1]}
  results["selection"]["chosen"]["rule"] = rule
  rec = recommend.build(results)
  assert rec["retrain"] == retrain
  assert rec["weights_are_complete"] == (retrain == "full")
  text = recommend.render(rec)
  assert ("classifier head alone" in text) == (retrain == "head")
  assert ("no retraining" in text) == (retrain == "none")
