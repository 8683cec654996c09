"""The correction a user takes away: recommendation.json and ready-to-paste snippets.

  python -m lwi_jax.report.recommend WORKDIR

recommendation.json (written with the study's other outputs) holds the dataset's content hash
and class names, the held-out choice of report/selection.py (rule, family, hyper-parameters),
its class-weight vector (mean over the seeds of the chosen members' weights, renormalised to
mean 1; every seed's vector is kept too), the selection and test evidence with intervals, and
the command that produced it. This module prints it with snippets for optax, PyTorch, Keras and
scikit-learn, each keyed by the class names, in the data's label order.

The project's loss is the weighted MEAN sum_i w[y_i] l_i / sum_i w[y_i] (lwi_jax/losses.py):
PyTorch's CrossEntropyLoss(weight=w) and scikit-learn's log_loss(sample_weight=w[y]) are that
mean; Keras' class_weight and scikit-learn's class_weight in a fit scale each example's loss
without dividing by the summed weight, which moves the loss scale (the learning rate's
meaning), not the optimum.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

import numpy as np

from lwi_jax.report import front
from lwi_jax.report.results import OK
from lwi_jax.report.text_format import p_text
from lwi_jax.rules import members as members_lib
from lwi_jax.rules import weighting
from lwi_jax.runtime import io_utils

FILE = "recommendation.json"


def build(results: dict) -> dict:
  """The recommendation dict of a study's results (None fields when nothing was chosen)."""
  sel = results.get("selection") or {}
  chosen = sel.get("chosen")
  ds = results["dataset"]
  rec = {"dataset": {"name": ds["name"], "content_hash": ds.get("content_hash"),
                     "class_names": list(ds["class_names"])},
         "command": shlex.join(["python", *sys.argv]),
         "workdir": results["config"]["workdir"],
         "selection_split": sel.get("split"), "independent": sel.get("independent"),
         "why": sel.get("why"), "criterion": sel.get("criterion"),
         "evenness": sel.get("evenness"), "rule": None}
  if not chosen:
    return rec
  members = [m for m in (results["rounds"][-1] if results["rounds"] else [])
             + results.get("posthoc", [])
             if m["rule"] == chosen["rule"] and m.get("status", OK) == OK]
  weights = np.asarray([m["initial_class_weights"] for m in members], np.float64)
  mean = weights.mean(0)
  rule_name = members[0].get("rule_name", chosen["rule"].partition(":")[0])
  rec.update({
      "rule": chosen["rule"], "family": chosen["family"], "rule_name": rule_name,
      "hparams": members[0].get("hparams", {}),
      # a static rule is all in its class weights; others also act through the loss, the
      # schedule or the sampler, which the weights alone do not carry
      "weights_are_complete": bool(weighting.RULES[rule_name].static)
      if rule_name in weighting.RULES else False,
      "class_weights": dict(zip(ds["class_names"], (mean / mean.mean()).tolist())),
      "class_weights_per_seed": {str(m["seed"]): list(map(float, m["initial_class_weights"]))
                                 for m in members},
      "selection": chosen["selection"], "test": chosen["test"]})
  if members[0].get("posthoc"):  # offsets at prediction time, on top of the source's training
    b = np.asarray([m["posthoc"]["offsets"] for m in members], np.float64).mean(0)
    rec.update({"weights_are_complete": False, "posthoc": members[0]["posthoc"]["method"],
                "logit_offsets": dict(zip(ds["class_names"], (b - b.mean()).tolist()))})
  rec["retrain"] = _retrain(members[0])
  if rec["retrain"] == "head":  # measured with the weights on the classifier head alone
    rec["weights_are_complete"] = False
  return rec


def _retrain(member: dict) -> str:
  """What training the chosen row measured: "full" retraining with the weights, "head" (only
  the classifier head, from the unweighted model, rules/members.py retrain=head) or "none" (a
  post-hoc row on the unweighted model: its weights are all 1)."""
  trained = member["posthoc"]["source_rule"] if member.get("posthoc") else member["rule"]
  if trained == "baseline":
    return "none"
  return "head" if members_lib.parse_rule(trained).head_only else "full"


def write(workdir: str, results: dict) -> dict:
  """Writes recommendation.json atomically; returns what it wrote."""
  rec = build(results)
  io_utils.atomic_write_json(os.path.join(workdir, FILE), rec)
  return rec


def _dict_literal(weights: dict) -> str:
  return "{" + ", ".join(f"{k!r}: {v:.6g}" for k, v in weights.items()) + "}"


def snippets(rec: dict) -> dict:
  """framework -> code using the recommendation's class weights, keyed by the class names."""
  w = rec["class_weights"]
  classes = repr(list(w))
  vec = "[" + ", ".join(f"{v:.6g}" for v in w.values()) + "]"
  weights = _dict_literal(w)
  return {
      "optax": ("import jax.numpy as jnp, optax\n"
                f"CLASSES = {classes}  # label index i = CLASSES[i]\n"
                f"CLASS_WEIGHTS = jnp.array({vec})\n"
                "def loss_fn(logits, labels):  # labels: int indices into CLASSES\n"
                "  w = CLASS_WEIGHTS[labels]\n"
                "  per = optax.softmax_cross_entropy_with_integer_labels(logits, labels)\n"
                "  return jnp.sum(w * per) / jnp.sum(w)"),
      "pytorch": (f"import torch\nCLASSES = {classes}  # label index i = CLASSES[i]\n"
                  f"loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor({vec}))"),
      "keras": (f"CLASSES = {classes}  # y holds indices into CLASSES\n"
                f"CLASS_WEIGHT = {weights}\n"
                "model.fit(x, y, class_weight={CLASSES.index(c): w "
                "for c, w in CLASS_WEIGHT.items()})"),
      "sklearn": (f"CLASS_WEIGHT = {weights}  # y holds these class names\n"
                  "from sklearn.linear_model import LogisticRegression\n"
                  "model = LogisticRegression(class_weight=CLASS_WEIGHT)"),
  }


def _effect(ev: dict, scale: float) -> str:
  g = ev["gain"]
  a = ev["delta_accuracy"]
  return (f"gain {g['mean'] * scale:+.2f} [{g['ci_low'] * scale:+.2f}, {g['ci_high'] * scale:+.2f}]"
          f" (p {p_text(g['p_value'])}), Δacc {a['mean'] * 100:+.2f} pts")


def render(rec: dict) -> str:
  """The printed recommendation: what was chosen, on what evidence, and the snippets."""
  ds = rec["dataset"]
  lines = [f"Recommendation for {ds['name']} (data {str(ds['content_hash'])[:12]}), classes "
           f"{ds['class_names']}", f"produced by: {rec['command']}"]
  if rec["rule"] is None:
    return "\n".join(lines + ["No rule qualified (" + str(rec["criterion"]) + "): keep the "
                              "unweighted loss."])
  scale = front.evenness_scale(rec["evenness"])
  lines += [f"chosen: {rec['rule']} (family {rec['family']}) on the {rec['selection_split']} "
            "split" + ("" if rec["independent"] else f" — NOT held out: {rec['why']}"),
            f"  selection split: {_effect(rec['selection'], scale)}",
            f"  test (confirmed once): {_effect(rec['test'], scale)}",
            "  class weights: " + _dict_literal(rec["class_weights"])]
  if rec.get("logit_offsets"):
    lines.append("  then predict argmax(logits + b), b (mean over seeds, centred) = "
                 + _dict_literal(rec["logit_offsets"]))
  if rec.get("retrain") == "head":
    lines.append("  measured with the weights on the classifier head alone (retrain=head: the "
                 "unweighted model's features, its head retrained for train.head_epochs)")
  elif rec.get("retrain") == "none":
    lines.append("  measured with no retraining: the offsets on the unweighted model")
  if not rec["weights_are_complete"]:
    lines.append(f"  note: {rec['rule_name']} also acts beyond its class weights (loss, "
                 "schedule or sampler); the snippets carry the weights only")
  for name, code in snippets(rec).items():
    lines += ["", f"# {name}", code]
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print("usage: python -m lwi_jax.report.recommend WORKDIR", file=sys.stderr)
    return 2
  path = os.path.join(argv[1], FILE)
  if not os.path.exists(path):
    print(f"{path} does not exist: run the study first (python launch.py --config=...)",
          file=sys.stderr)
    return 2
  with open(path) as f:
    print(render(json.load(f)))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
