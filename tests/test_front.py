"""Grids of a rule family, the accuracy-evenness front, and the honesty of the held-out choice."""

import ml_collections
import numpy as np
import pytest

from configs import common
from lwi_jax.report import front, selection
from lwi_jax.rules import members


# ------------------------------------------------------------------------------ grids


def test_a_range_grid_expands_into_ordinary_members_of_one_family():
  specs = members.parse_members(["uniform", "inverse_tpr:gamma=0:3:0.25"], [0, 1, 2])
  rules = list(dict.fromkeys(s.rule.label for s in specs))
  assert rules == ["uniform"] + [f"inverse_tpr:gamma={g:g}" for g in np.arange(13) * 0.25]
  assert len(specs) == 14 * 3
  grid = [s.rule for s in specs if s.rule.name == "inverse_tpr"]
  assert {r.family for r in grid} == {"inverse_tpr:gamma=0:3:0.25"}
  assert specs[0].rule.family == "" and specs[0].rule.family_label == "uniform"
  # an expanded member is the same rule as one written by hand (same weights, same label)
  one = members.parse_rule("inverse_tpr:gamma=0.75")
  assert grid[3 * 3].label == one.label and grid[9].hparams == one.hparams


def test_list_and_product_grids():
  specs = members.expand_rule("drw:gamma=0.5|2,start=0.25|0.5")
  assert [s.label for s in specs] == ["drw:gamma=0.5,start=0.25", "drw:gamma=0.5,start=0.5",
                                      "drw:gamma=2,start=0.25", "drw:gamma=2,start=0.5"]
  assert [s.label for s in members.expand_rule("inverse_tpr:gamma=0:0.3:0.1")] == [
      "inverse_tpr:gamma=0", "inverse_tpr:gamma=0.1", "inverse_tpr:gamma=0.2",
      "inverse_tpr:gamma=0.3"]  # stop included, no 0.30000000000000004


@pytest.mark.parametrize("text,message", [
    ("inverse_tpr:gamma=3:0:0.5", "start:stop:step"), ("inverse_tpr:gamma=0:3:0", "step > 0"),
    ("inverse_tpr:gamma=0:3", "start:stop:step"), ("inverse_tpr:gamma=0:1000:1", "at most"),
    ("inverse_tpr:gamma=1|x", "not a number"), ("inverse_tpr:gamma=-1|1", "gamma")])
def test_bad_grids_name_the_field(text, message):
  with pytest.raises(ValueError, match=message):
    members.parse_members([text], [0])


def test_a_grid_point_written_twice_is_a_duplicate():
  with pytest.raises(ValueError, match="duplicates"):
    members.parse_members(["inverse_tpr:gamma=1", "inverse_tpr:gamma=0:2:1"], [0])


# ------------------------------------------------------------------------------ the front


def test_non_dominated_set_of_a_hand_made_point_set():
  acc = [0.80, 0.85, 0.78, 0.84, 0.70, 0.86]
  even = [0.50, 0.40, 0.55, 0.30, 0.56, 0.20]
  # 3 (0.84, 0.30) is dominated by 1 (0.85, 0.40); every other point trades one for the other
  np.testing.assert_array_equal(front.non_dominated(acc, even),
                                [True, True, True, False, True, True])


def test_ties_and_duplicates_stay_on_the_front_and_nan_never_is():
  acc = [0.8, 0.8, 0.8, 0.7, np.nan]
  even = [0.5, 0.5, 0.4, 0.5, 0.9]
  # 0 and 1 are the same point: neither dominates the other. 2 ties 0 on accuracy but is less
  # even (dominated); 3 ties on evenness with less accuracy (dominated); NaN is never on it.
  np.testing.assert_array_equal(front.non_dominated(acc, even), [True, True, False, False, False])


def test_evenness_measures():
  cm = np.diag([9, 5, 1]) + np.array([[0, 1, 0], [3, 0, 2], [4, 5, 0]])  # TPRs .9 .5 .1
  tpr = np.array([0.9, 0.5, 0.1])
  np.testing.assert_allclose(front.evenness(cm, "var"), -np.var(tpr))
  np.testing.assert_allclose(front.evenness(cm, "worst"), 0.1)
  np.testing.assert_allclose(front.evenness(cm, "worst_k", 2), 0.3)


# ------------------------------------------------------------------ the protocol's honesty

C, N_PER_CLASS = 3, 200
LABELS = np.repeat(np.arange(C), N_PER_CLASS)
BASE_TPR = np.array([0.85, 0.7, 0.55])


def _predict(rng, tpr):
  """A classifier's predictions: right with probability tpr[class], else another class."""
  right = rng.random(LABELS.size) < tpr[LABELS]
  wrong = (LABELS + rng.integers(1, C, LABELS.size)) % C
  return np.where(right, LABELS, wrong)


def _config(alpha):
  config = ml_collections.ConfigDict()
  common.add_study_fields(config)
  config.scores.method = "crossfit"
  config.compare.selection_alpha = alpha
  config.compare.max_accuracy_drop = 100.0  # evenness alone decides; accuracy is not planted
  return config


def _study(rng, rule_tprs, config, samples=200):
  """One simulated study: 1 seed, a baseline and rules, on a selection and a test split."""
  evidence = []
  for split in range(2):
    base = ([0], _predict(rng, BASE_TPR)[None])
    rules = {f"r{i}": ([0], _predict(rng, t)[None]) for i, t in enumerate(rule_tprs)}
    evidence.append(front.split_evidence(base, rules, LABELS, C, "var", 2, samples,
                                         int(rng.integers(1 << 30))))
  return selection.protocol(evidence[0], evidence[1], config, {})


def test_held_out_choice_has_nominal_coverage_and_best_on_test_is_biased():
  rng = np.random.default_rng(0)
  # No true effect: every rule's classifiers are the baseline's distribution. alpha ~1 makes
  # the protocol always choose (the largest selection gain), so every study counts.
  config = _config(0.999)
  covered, chosen_gain, naive_gain = [], [], []
  for _ in range(250):
    out = _study(rng, [BASE_TPR] * 5, config)
    if out["chosen"] is not None:
      g = out["chosen"]["test"]["gain"]
      covered.append(g["ci_low"] <= 0 <= g["ci_high"])
      chosen_gain.append(g["mean"])
    naive = max(out["evidence"]["test"]["rules"].values(), key=lambda r: r["gain"]["mean"])
    naive_gain.append(naive["gain"]["mean"])
  n = len(covered)
  assert n > 150  # positive selection gains: chosen in most studies
  mc = 3 * np.sqrt(0.95 * 0.05 / n)  # 3 Monte-Carlo standard errors
  assert abs(np.mean(covered) - 0.95) < mc + 0.01, (np.mean(covered), n)
  se = np.std(chosen_gain) / np.sqrt(n)
  assert abs(np.mean(chosen_gain)) < 3 * se  # the confirmed effect is unbiased
  # the best of 5 on test reports a gain where there is none, far beyond its Monte-Carlo error
  assert np.mean(naive_gain) > 10 * np.std(naive_gain) / np.sqrt(len(naive_gain))
  assert np.mean(naive_gain) > 3 * abs(np.mean(chosen_gain))


def test_a_planted_effect_is_found_and_the_control_never_chosen():
  rng = np.random.default_rng(1)
  config = _config(0.05)
  planted = np.array([0.72, 0.7, 0.68])  # same mean TPR, even
  found = 0
  for _ in range(20):
    out = _study(rng, [BASE_TPR, planted, BASE_TPR], config)
    found += (out["chosen"] or {}).get("rule") == "r1"
  assert found >= 17, found
  ev = front.split_evidence(([0], _predict(rng, BASE_TPR)[None]),
                            {"uniform": ([0], _predict(rng, planted)[None])}, LABELS, C, "var",
                            2, 200, 0)
  assert ev["rules"]["uniform"]["gain"]["p_value"] < 0.05
  assert selection.choose(ev, 100.0, 0.05) is None  # significant, but the control


# ------------------------------------------------------------------ the protocol's config


@pytest.mark.parametrize("field,value", [
    ("evenness", "gini"), ("worst_k", 0), ("selection", "test"), ("selection_alpha", 1.0)])
def test_bad_compare_fields_are_named(field, value):
  config = _config(0.05)
  config.compare[field] = value
  with pytest.raises(ValueError, match=f"compare.{field}"):
    front.validate(config.compare)


def test_selection_says_when_the_split_also_gave_the_scores():
  config = _config(0.05)
  assert selection.independence(config)[0]
  config.rounds = 2
  assert not selection.independence(config)[0]  # round 2's weights come from validation TPRs
  config.rounds, config.scores.method = 1, "validation"
  independent, why = selection.independence(config)
  assert not independent and "scores.method='crossfit'" in why


def test_a_workdir_without_validation_predictions_falls_back_to_the_test_table():
  from lwi_jax.report import results as results_lib
  phase = {"rules": ["baseline"], "seeds": [0], "test_predictions": [LABELS]}
  assert results_lib.selection_results(_config(0.05), None, phase, phase, []) is None


def test_a_rule_that_trained_on_the_validation_split_is_never_chosen_there():
  """online_eg reads validation batches while it trains, dynamic_difficulty its TPRs at every
  epoch: a choice on that split would not be held out for them, whatever scores.method."""
  from lwi_jax.report import results as results_lib
  rng = np.random.default_rng(1)
  config = _config(0.05)
  config.compare.bootstrap_samples, config.compare.bootstrap_seed = 200, 0
  rules = ["inverse_tpr:gamma=1", "online_eg:eta=0.1,every=10", "dynamic_difficulty:tau=1"]
  specs = members.parse_members(rules, [0])
  tprs = [np.array([0.8, 0.7, 0.6]), np.array([0.72] * 3), np.array([0.71] * 3)]

  def phase(rule_list, tpr_list):
    preds = {s: [_predict(rng, t) for t in tpr_list] for s in ("validation", "test")}
    return {"rules": rule_list, "seeds": [0] * len(rule_list),
            "status": ["ok"] * len(rule_list), "validation_predictions": preds["validation"],
            "test_predictions": preds["test"],
            # not flat: a static rule with flat weights is the unweighted control
            "initial_class_weights": [np.arange(1.0, C + 1)] * len(rule_list)}
  split = type("Split", (), {"labels": LABELS})
  data = type("Data", (), {"validation": split, "test": split, "num_classes": C})
  out = results_lib.selection_results(config, data, phase(["baseline"], [np.array([0.9, 0.7, 0.5])]),
                                      phase([s.rule.label for s in specs], tprs), specs)
  gains = {r: row["gain"]["mean"] for r, row in out["evidence"]["selection"]["rules"].items()}
  assert gains["online_eg:eta=0.1,every=10"] > gains["inverse_tpr:gamma=1"] > 0  # planted
  assert out["evidence"]["selection"]["rules"]["inverse_tpr:gamma=1"]["gain"]["p_value"] < 0.05
  assert out["chosen"]["rule"] == "inverse_tpr:gamma=1"
