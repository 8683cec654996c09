"""Issue #25: the bootstrap works in O(classes) per replicate and gives the same numbers as the
confusion-matrix formulation (which needed O(classes^2) memory: tens of GB at 1,000 classes)."""

import numpy as np
import pytest

from lwi_jax import metrics
from lwi_jax.report import bootstrap


@pytest.mark.parametrize("num_classes, seed, pending", [(3, 0, None), (7, 1, None), (12, 2, 50)])
def test_per_class_counts_give_identical_scores_on_random_data(num_classes, seed, pending,
                                                                monkeypatch):
  if pending:  # several partial bincounts instead of one
    monkeypatch.setattr(bootstrap, "PENDING_CELLS", pending)
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, 150)
  labels[:num_classes - 1] = np.arange(num_classes - 1)  # every class but the last present
  labels[labels == num_classes - 1] = 0  # one class absent: empty rows and columns
  preds = np.where(rng.random((6, 150)) < 0.6, labels, rng.integers(0, num_classes, (6, 150)))
  observed, reps = bootstrap.resampled_confusions(preds, labels, num_classes, 64, seed=seed)
  obs_counts, rep_counts = bootstrap.resampled_counts(preds, labels, num_classes, 64, seed=seed)
  for matrices, counts in ((observed, obs_counts), (reps, rep_counts)):
    old = metrics.summarize_confusion(matrices, np)
    new = metrics.summarize_counts(*counts, np)
    for key in ("var_tpr", "accuracy", "worst_tpr", "macro_f1", "tpr", "precision", "f1"):
      np.testing.assert_array_equal(new[key], old[key], err_msg=key)


def test_compare_with_baseline_equals_the_confusion_matrix_formulation():
  rng = np.random.default_rng(5)
  labels = np.repeat(np.arange(5), 30)
  preds = np.where(rng.random((6, 150)) < 0.7, labels, rng.integers(0, 5, (6, 150)))
  out = bootstrap.compare_with_baseline(preds[:3], preds[3:], labels, 5, 200, seed=4)
  observed, reps = bootstrap.resampled_confusions(preds, labels, 5, 200, seed=4)
  obs, rep = metrics.summarize_confusion(observed, np), metrics.summarize_confusion(reps, np)
  for name, key, sign in metrics.PAIRED_DIFFERENCES:
    diff = lambda x: sign * (x[..., 3:] - x[..., :3]).mean(-1)
    assert out[name] == bootstrap.summary(diff(obs[key]), diff(rep[key])), name


def test_no_resampling_when_the_test_is_not_the_bootstrap():
  labels = np.repeat(np.arange(3), 10)
  out = bootstrap.compare_with_baseline(labels[None], labels[None], labels, 3, num_samples=0)
  assert set(out) == {"mcnemar"}


def test_memory_is_linear_in_classes():
  labels = np.arange(1000)  # 1,000 classes, one test example each
  _, reps = bootstrap.resampled_counts(np.stack([labels, labels]), labels, 1000, 100, seed=0)
  assert [a.shape for a in reps] == [(100, 2, 1000)] * 3 + [(100, 2)]  # not [B, M, C, C]
