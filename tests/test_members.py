"""Parsing rule strings and (rule x seed) member lists."""

import numpy as np
import pytest

from lwi_jax.rules import members
from lwi_jax.rules import weighting


def test_valid_rule_names_cover_weighting_and_loss_rules():
  names = members.valid_rule_names()
  assert set(weighting.RULES) <= set(names)
  assert "focal" in names
  assert names == sorted(names)


@pytest.mark.parametrize("text, name, hparams", [
    ("uniform", "uniform", {}),
    ("inverse_tpr", "inverse_tpr", {"gamma": 1.0}),
    ("inverse_tpr:gamma=2", "inverse_tpr", {"gamma": 2.0}),
    ("  inverse_tpr:gamma = 0.5 ", "inverse_tpr", {"gamma": 0.5}),
    ("class_difficulty:tau=3", "class_difficulty", {"tau": 3.0}),
    ("effective_number", "effective_number", {"beta": 0.999}),
    ("effective_number:beta=0.99", "effective_number", {"beta": 0.99}),
    ("inverse_frequency", "inverse_frequency", {}),
    ("focal", "focal", {"gamma": 2.0}),
    ("focal:gamma=0", "focal", {"gamma": 0.0}),
    ("inverse_tpr:", "inverse_tpr", {"gamma": 1.0}),
])
def test_parse_rule(text, name, hparams):
  spec = members.parse_rule(text)
  assert spec.name == name
  assert spec.hparams == hparams


def test_rule_spec_labels():
  assert members.parse_rule("focal:gamma=1.5").label == "focal:gamma=1.5"
  assert members.parse_rule("inverse_tpr:gamma=2").label == "inverse_tpr:gamma=2"
  assert members.parse_rule("inverse_tpr").label == "inverse_tpr:gamma=1"
  assert members.parse_rule("uniform").label == "uniform"


def test_member_hparams_of_foundation_rules():
  scores = np.array([0.5, 0.8, 0.2, 0.9])
  counts = np.array([10, 20, 30, 40])
  focal = members.parse_rule("focal:gamma=1.5").member_hparams(scores, counts, 4)
  np.testing.assert_allclose(np.asarray(focal.class_weights), np.ones(4))
  np.testing.assert_allclose(float(focal.focal_gamma), 1.5)
  itpr = members.parse_rule("inverse_tpr:gamma=2").member_hparams(scores, counts, 4)
  raw = (scores.mean() / scores) ** 2
  np.testing.assert_allclose(np.asarray(itpr.class_weights), raw / raw.mean(), rtol=1e-5)
  assert float(itpr.focal_gamma) == 0.0
  uni = members.parse_rule("uniform").member_hparams(scores, counts, 4)
  np.testing.assert_allclose(np.asarray(uni.class_weights), np.ones(4))


@pytest.mark.parametrize("text", ["nonsense", "Uniform", "inverse-tpr", "focal_loss"])
def test_unknown_rule_lists_valid_rules(text):
  with pytest.raises(ValueError) as e:
    members.parse_rule(text)
  msg = str(e.value)
  assert repr(text.strip().partition(":")[0]) in msg
  for name in members.valid_rule_names():
    assert name in msg
  assert "config.rules" in msg


@pytest.mark.parametrize("text, needle", [
    ("inverse_tpr:gamma=-1", "gamma >= 0"),
    ("class_difficulty:tau=-0.5", "tau >= 0"),
    ("effective_number:beta=1", "beta < 1"),
    ("focal:gamma=-2", "gamma >= 0"),
    ("inverse_tpr:tau=1", "gamma"),          # unknown name: lists the valid one
    ("focal:tau=1", "gamma"),
    ("uniform:gamma=1", "none"),
    ("inverse_tpr:gamma", "key=value"),
    ("inverse_tpr:gamma=abc", "not a number"),
    ("inverse_tpr:gamma=nan", "gamma >= 0"),
    ("focal:gamma=nan", "gamma >= 0"),
    ("focal:gamma=inf", "gamma >= 0"),
])
def test_bad_hparams(text, needle):
  with pytest.raises(ValueError) as e:
    members.parse_rule(text)
  assert needle in str(e.value)
  assert "config.rules" in str(e.value)


@pytest.mark.parametrize("text", ["", "   ", None, 3])
def test_empty_or_non_string_rule(text):
  with pytest.raises(ValueError, match="valid rules"):
    members.parse_rule(text)


def test_parse_members_product_order():
  specs = members.parse_members(["uniform", "inverse_tpr:gamma=2", "focal"], [0, 5])
  assert [(m.rule.label, m.seed) for m in specs] == [
      ("uniform", 0), ("uniform", 5), ("inverse_tpr:gamma=2", 0), ("inverse_tpr:gamma=2", 5),
      ("focal:gamma=2", 0), ("focal:gamma=2", 5)]
  assert specs[2].label == "inverse_tpr:gamma=2@seed0"
  # Config tuples work as well as lists.
  assert len(members.parse_members(("uniform",), (0, 1, 2))) == 3


def test_empty_rules():
  with pytest.raises(ValueError, match="config.rules is empty") as e:
    members.parse_members([], [0])
  assert "inverse_tpr" in str(e.value)


def test_empty_seeds():
  with pytest.raises(ValueError, match="config.seeds is empty"):
    members.parse_members(["uniform"], [])


@pytest.mark.parametrize("seeds", [[0, 1, 0], [3, 3]])
def test_duplicate_seeds(seeds):
  with pytest.raises(ValueError, match="config.seeds has duplicates"):
    members.parse_members(["uniform"], seeds)


@pytest.mark.parametrize("seeds", [[-1], [1.5], ["0"], [True]])
def test_bad_seeds(seeds):
  with pytest.raises(ValueError, match="config.seeds"):
    members.parse_members(["uniform"], seeds)


def test_duplicate_rules_after_defaults():
  # 'inverse_tpr' and 'inverse_tpr:gamma=1' are the same member.
  with pytest.raises(ValueError, match="config.rules has duplicates"):
    members.parse_members(["inverse_tpr", "inverse_tpr:gamma=1"], [0])


def test_parse_members_validates_every_rule():
  with pytest.raises(ValueError, match="nonsense"):
    members.parse_members(["uniform", "nonsense"], [0])


# ------------------------------------------------------------------ one registry of rules


def test_one_registry_one_hparam_shape_every_rule_builds_member_hparams():
  assert members.valid_rule_names() == sorted(weighting.RULES)
  assert not hasattr(members, "TRAINING_RULES")
  scores, counts = np.array([0.5, 0.8, 0.2]), np.array([10, 20, 30])
  for name, rule in weighting.RULES.items():
    assert rule.name == name
    for hp in rule.hparams.values():
      assert isinstance(hp, weighting.HParam) and hp.ok(hp.default)
    h = members.parse_rule(name).member_hparams(scores, counts, 4, ("a", "b", "c"))
    assert h.class_weights.shape == (3,) and np.isfinite(np.asarray(h.class_weights)).all()
    if rule.static:
      np.testing.assert_allclose(np.asarray(h.class_weights),
                                 np.asarray(weighting.compute_weights(name, scores, counts)))
    else:
      with pytest.raises(ValueError, match="no static weight vector"):
        weighting.compute_weights(name, scores, counts)


def test_weighting_stays_below_train_and_members():
  import ast
  import inspect
  tree = ast.parse(inspect.getsource(weighting))
  imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
              for a in n.names} | {n.module for n in ast.walk(tree)
                                   if isinstance(n, ast.ImportFrom) and n.module}
  assert not imported & {"train", "members", "lwi_jax.train", "lwi_jax.members", "experiment",
                         "lwi_jax.rules.members", "lwi_jax.study", "lwi_jax.parallel"}


def test_readme_rule_table_is_the_registry():
  import os
  readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
  with open(readme, encoding="utf-8") as f:
    assert weighting.rules_table() in f.read()
