"""Tabular data with an MLP: the paper's third discipline. Bundled data, runs offline.

  python launch.py --config=configs/tabular.py             # satimage study: 13 rules x 5 seeds
  python launch.py --config=configs/tabular.py:letter      # letter recognition (26 classes)
  python launch.py --config=configs/tabular.py:csv --config.data.path=my.csv \
      --config.data.label_column=label                     # your own table

satimage (UCI Statlog Landsat Satellite, 6 classes, CC BY 4.0) and letter (UCI Letter
Recognition, 26 classes) ship with the package (lwi_jax/data/tabular_data/, ATTRIBUTION.md).
The csv preset reads any CSV with a header row: numeric and categorical columns are detected
(override with data.numeric_columns / data.categorical_columns), missing values imputed and
features standardised with training-split statistics only (lwi_jax/data/tabular.py).
Override any field: --config.train.epochs=5 --config.data.balance=False ...
"""

import ml_collections

from configs import common

PRESETS = ("satimage", "letter", "csv")


def get_config(preset: str = "satimage") -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    raise ValueError(f"configs/tabular.py preset {preset!r} is not one of {list(PRESETS)}")
  config = ml_collections.ConfigDict()
  config.workdir = f"runs/tabular_{preset}"

  config.data = ml_collections.ConfigDict()
  config.data.name = "satimage"  # 'satimage', 'letter' (bundled) or 'tabular' (data.path)
  # True: every class subsampled (seeded) to the smallest class's size, 626 rows for satimage;
  # False: every row of the file.
  config.data.balance = True
  config.data.validation_fraction = 0.1  # of the non-test rows of each class; weights come from it
  config.data.min_validation_per_class = 5  # fewer: refused after loading (TPR steps of 1/n)
  config.data.test_fraction = 0.2  # of each class
  config.data.split_seed = 0
  # tabular (your CSV); the bundled tables set their own file and label column
  config.data.path = ""
  config.data.label_column = "label"
  config.data.delimiter = ","
  config.data.encoding = "utf-8-sig"
  config.data.feature_columns = ()  # () = every column but the label and ignore_columns
  config.data.ignore_columns = ()  # e.g. an id column
  config.data.numeric_columns = ()  # forced numeric (a non-number in it is an error)
  config.data.categorical_columns = ()  # forced categorical (one-hot)
  config.data.missing_values = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
  config.data.max_categories = 50  # most frequent training categories one-hot; rest '<other>'

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  config.model.hidden_sizes = (256, 256)
  config.model.activation = "relu"  # relu, gelu, silu, elu, tanh
  config.model.dropout_rate = 0.1
  config.model.norm = "none"  # 'none', 'layer', 'batch'

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # 'adam' or 'sgd'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"  # 'cosine' or 'constant'
  config.optimizer.weight_decay = 0.0
  config.optimizer.momentum = 0.9  # sgd only

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 40
  config.train.batch_size = 128
  config.train.eval_batch_size = 1000
  config.train.augment = "none"
  common.add_member_execution_fields(config.train)

  common.add_study_fields(config, test="paired_t")
  # "Is retraining worth it?": the closed-form offsets b = -log(s/s̄) on every baseline member
  # (no retraining) and stacked on every rule, in the same table (lwi_jax/rules/posthoc.py).
  config.posthoc = ("logit_offsets:gamma=1",)

  # Members = rules x seeds, all in one ensemble. The uniform retrain is the control: its D
  # measures what retraining alone changes.
  config.rules = ("uniform", "inverse_tpr:gamma=0.5", "inverse_tpr:gamma=1",
                  "inverse_tpr:gamma=2", "class_difficulty:tau=1", "focal:gamma=2",
                  "drw:gamma=1,start=0.5", "oversample:gamma=1", "group_dro:eta=0.01",
                  "dynamic_difficulty:tau=1", "inverse_tpr:gamma=1,retrain=head",
                  "logit_tpr:gamma=1", "online_eg:eta=0.1,every=10")
  config.seeds = (0, 1, 2, 3, 4)

  if preset == "letter":
    config.data.name = "letter"
  if preset == "csv":
    config.data.name = "tabular"
    # Issue #25; only here, so the bundled presets' phase fingerprints stay as they were.
    config.data.decimal = "."  # or ',': '3,5' is 3.5 and '12.340,5' is 12340.5 (tabular_table.py)
    config.data.multiline_fields = False  # True: quoted fields may hold line breaks
    config.data.merge_label_variants = False  # True: 'A' and 'a ' become one class, else warned
  return config
