"""Issue 11, "Values the method cannot use are accepted": every probe reproduced on the names-CSV
source with a tiny CSV, now refused; and the data content hash behind the phase fingerprints
(the edited-CSV probe itself runs in test_untrusted_runs.py, on that file's tiny study)."""

import importlib.util
import os

import pytest

from lwi_jax import data as data_lib
from lwi_jax.study import checks
from lwi_jax.study import study as study_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_csv(path, per_class=30, classes=("aa", "bb")):
  """A tiny CSV whose text gives the class position away (so a few steps learn something).

  The texts depend on the position of a class in `classes`, not on its name: renaming a class
  changes only the label column.
  """
  rows = ["name,country"] + [f"{'pqrs'[k]}x{i} {'pqrs'[k] * 2},{c}"
                             for k, c in enumerate(classes) for i in range(per_class)]
  with open(path, "w") as f:
    f.write("\n".join(rows) + "\n")
  return str(path)


def csv_config(path, workdir="/nonexistent/never/written"):
  """configs/names.py:csv shrunk to a few-second study of a tiny CSV."""
  spec = importlib.util.spec_from_file_location("names_config",
                                                os.path.join(REPO, "configs", "names.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("csv")
  config.data.path = str(path)
  config.data.text_column, config.data.label_column = "name", "country"
  config.data.max_len = 8
  config.data.validation_fraction = 0.2
  config.model.embed_dim = 4
  config.model.conv_features = (4,)
  config.model.lstm_hidden = 4
  config.train.epochs = 1
  config.train.batch_size = 12
  config.train.eval_batch_size = 64
  config.rules = ("inverse_tpr:gamma=1",)
  config.workdir = workdir
  return config


@pytest.mark.parametrize("field, value, needle", [
    ("data.validation_fraction", 0.0, "0 < validation_fraction < 1"),  # every D was "+0.00"
    ("data.validation_fraction", float("nan"), "validation_fraction"),
    ("data.test_fraction", 0.0, "0 < test_fraction < 1"),
    ("data.max_len", -1, "integer >= 0"),
    ("optimizer.learning_rate", -1.0, "learning_rate > 0"),
    ("optimizer.learning_rate", float("nan"), "learning_rate > 0"),
    ("optimizer.learning_rate", float("inf"), "finite"),
    ("optimizer.weight_decay", -0.1, "weight_decay >= 0"),
    ("optimizer.momentum", 1.0, "0 <= momentum < 1"),
    ("train.epochs", 0, "integer >= 1"),
    ("train.batch_size", 0, "integer >= 1"),
    ("train.eval_batch_size", -3, "integer >= 1"),
    ("model.dropout_rate", 1.0, "dropout_rate"),
])
def test_bad_numeric_field_is_named_before_any_data_is_read(field, value, needle):
  config = csv_config("/nonexistent/never/read.csv")
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ValueError) as e:
    study_lib.Study(config)
  assert f"{field}=" in str(e.value) and needle in str(e.value)
  assert not os.path.exists("/nonexistent")


def test_fractions_must_leave_training_data():
  config = csv_config("/nonexistent/x.csv")
  config.data.validation_fraction, config.data.test_fraction = 0.5, 0.5
  with pytest.raises(ValueError, match="validation_fraction \\+ data.test_fraction = 1"):
    study_lib.Study(config)


@pytest.mark.parametrize("field, value", [("train_per_class", -1), ("test_per_class", -5)])
def test_negative_per_class_is_refused(field, value):
  # Python slicing used to drop rows silently (the official test set shrank to 9,990).
  spec = importlib.util.spec_from_file_location("cifar_config",
                                                os.path.join(REPO, "configs", "cifar.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("cpu")
  config.data.dir = "/nonexistent/never/read"
  config.data[field] = value
  with pytest.raises(ValueError, match=f"data.{field}={value} is invalid: it must be an integer "
                                       ">= 0"):
    study_lib.Study(config)


@pytest.mark.parametrize("workdir", ["", "   "])
def test_empty_workdir_is_refused(workdir):
  # It used to write results, checkpoints and report.md into the current directory.
  config = csv_config("/nonexistent/x.csv", workdir=workdir)
  with pytest.raises(ValueError, match="workdir=.* is empty"):
    study_lib.Study(config)


def test_too_few_validation_examples_are_named_by_class_after_loading(tmp_path):
  path = write_csv(tmp_path / "few.csv", per_class=12)  # 0.2 * 12 -> 2 validation per class
  config = csv_config(path, workdir=str(tmp_path / "w"))
  study = study_lib.Study(config)
  with pytest.raises(ValueError) as e:
    study.run()
  msg = str(e.value)
  assert "'aa' has 2" in msg and "'bb' has 2" in msg and "at least 5" in msg
  assert "data.validation_fraction" in msg and "min_validation_per_class" in msg
  assert not (tmp_path / "w" / "phases").exists()
  config.data.min_validation_per_class = 2  # the documented way to accept it
  checks.check_data(config, study.data)


def test_content_hash_sees_labels_class_names_and_inputs(tmp_path):
  cfg = csv_config(write_csv(tmp_path / "a.csv")).data
  d = data_lib.load_dataset(cfg)
  h = data_lib.content_hash(d)
  assert h == data_lib.content_hash(data_lib.load_dataset(cfg))  # deterministic
  flipped = data_lib.ClassificationData(d.train, d.validation, d.test, ("bb", "aa"), d.info)
  assert data_lib.content_hash(flipped) != h
  inputs = d.test.inputs.copy()
  inputs[0, 0] += 1
  changed = data_lib.ClassificationData(d.train, d.validation,
                                        data_lib.Split(inputs, d.test.labels), d.class_names)
  assert data_lib.content_hash(changed) != h
