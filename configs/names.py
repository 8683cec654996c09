"""Name -> country (GB, US, ES, DE, IT) with the ConvLSTM: the embedded default, no download.

  python launch.py --config=configs/names.py              # a few minutes on 2 CPU cores
  python launch.py --config=configs/names.py:study        # the full study: 14 rules x 3 seeds
  python launch.py --config=configs/names.py:csv --config.data.path=my.csv \
      --config.data.text_column=text --config.data.label_column=label   # your own CSV

The names are built once from the `names-dataset` package (~15 s, ~1.8 GB of memory) and cached
(data.cache_dir, else $LWI_JAX_CACHE_DIR, else ~/.cache/lwi_jax); see lwi_jax/data/names.py.
The 'csv' preset reads a labelled CSV instead, with the same encoding and split rules
(lwi_jax/data/csv_source.py). Override any field: --config.train.epochs=5 ...
"""

import ml_collections

from configs import common


def get_config(preset: str = "names") -> ml_collections.ConfigDict:
  if preset not in ("names", "study", "csv"):
    raise ValueError(f"configs/names.py preset {preset!r} is not one of "
                     "['names', 'study', 'csv']")
  config = ml_collections.ConfigDict()
  config.workdir = f"runs/{preset}"

  config.data = ml_collections.ConfigDict()
  config.data.name = "names"  # 'names' (names-dataset package) or 'csv' (data.path)
  # names: what is built (and cached), see lwi_jax/data/names.py
  config.data.countries = ("GB", "US", "ES", "DE", "IT")  # ISO alpha-2 codes, one class each
  config.data.per_class = 5000  # distinct "first last" strings per country
  config.data.top_k = 1000  # best-ranked first / last names each country draws from
  config.data.zipf_exponent = 1.0  # name of rank r is drawn with weight r^-exponent
  config.data.build_seed = 0
  config.data.cache_dir = ""  # '' = $LWI_JAX_CACHE_DIR, else ~/.cache/lwi_jax
  # csv: a labelled text file with a header row
  config.data.path = ""
  config.data.text_column = "text"
  config.data.label_column = "label"
  config.data.delimiter = ","
  config.data.encoding = "utf-8-sig"  # plain UTF-8, with or without a byte-order mark
  # both: encoding (lwi_jax/data/text_encoding.py) and split (grouped_split.py)
  config.data.normalization = "nfkc"  # or "none", "nfkc_casefold", "strip_accents"
  config.data.vocabulary = "learned"  # 'learned' (training split), 'latin' (fixed a-z), 'bytes'
  config.data.min_char_count = 2  # 'learned': rarer characters of the training split -> OOV
  config.data.max_len = 0  # symbols kept; 0 = the max_len_percentile of the training lengths
  config.data.max_len_percentile = 99.5
  config.data.conflicts = "keep"  # identical inputs with different labels: keep, drop, majority
  config.data.validation_fraction = 0.1  # weights come from validation TPRs
  config.data.min_validation_per_class = 5  # fewer: refused after loading (TPR steps of 1/n)
  config.data.test_fraction = 0.2
  config.data.split_seed = 0

  # Sizes, batch and epochs are chosen so that the baseline, the four retrained members and the
  # head-only one take ~66 s on 2 cores (baseline ~84.9% test accuracy with the default encoding,
  # BUILD_NOTES "Text encoding"); on a GPU, make them larger.
  config.model = ml_collections.ConfigDict()
  config.model.name = "conv_lstm"
  config.model.embed_dim = 32
  config.model.conv_features = (64,)  # one 1-D convolution per entry
  config.model.kernel_size = 3
  config.model.lstm_hidden = 64
  config.model.dropout_rate = 0.3

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # 'adam' or 'sgd'
  config.optimizer.learning_rate = 5e-3
  config.optimizer.schedule = "cosine"  # 'cosine' or 'constant'
  config.optimizer.weight_decay = 0.0
  config.optimizer.momentum = 0.9  # sgd only

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 6
  config.train.batch_size = 256
  config.train.eval_batch_size = 1000
  config.train.augment = "none"  # token ids: no augmentation
  common.add_member_execution_fields(config.train)

  common.add_study_fields(config, test="bootstrap")
  # "Is retraining worth it?": the closed-form offsets b = -log(s/s̄) on every baseline member
  # (no retraining) and stacked on every rule, in the same table (lwi_jax/rules/posthoc.py).
  config.posthoc = ("logit_offsets:gamma=1",)

  # Members = rules x seeds. A rule is "name" or "name:hparam=value,...". No "uniform": the
  # baseline already is the unweighted member of each seed (a uniform retrain repeats it).
  # Beside full retraining with weights, the cheap competitors: the same weights on the
  # classifier head only (retrain=head, train.head_epochs from the baseline) and the same
  # scores as logit offsets in the loss (logit_tpr): is retraining worth it?
  # (focal loss and the other families: the :study preset; the main job's console stays
  # within 60 lines)
  config.rules = ("inverse_tpr:gamma=1", "class_difficulty:tau=1",
                  "inverse_tpr:gamma=1,retrain=head", "logit_tpr:gamma=1")
  config.seeds = (0,)

  if preset == "study":
    # Algorithm 1 over every rule family, paired across 3 seeds with statistics. The uniform
    # retrain is the control: its D measures what ensemble-size numerics alone change.
    config.rules = ("uniform", "inverse_tpr:gamma=0.5", "inverse_tpr:gamma=1",
                    "inverse_tpr:gamma=2", "class_difficulty:tau=1",
                    "effective_number:beta=0.999", "focal:gamma=2", "drw:gamma=1,start=0.5",
                    "oversample:gamma=1", "group_dro:eta=0.01", "dynamic_difficulty:tau=1",
                    "inverse_tpr:gamma=1,retrain=head", "logit_tpr:gamma=1",
                    "online_eg:eta=0.1,every=10")
    config.seeds = (0, 1, 2)
    config.workdir = "runs/names_study"
  if preset == "csv":
    config.data.name = "csv"
  return config
