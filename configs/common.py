"""Fields every study config shares, so that each config file states what is particular to its
discipline (data, model, optimizer, rules), as flax examples' configs build on configs/default.py.

  from configs import common
  common.add_member_execution_fields(config.train)
  common.add_study_fields(config, test="bootstrap")

The configs are loaded from the repository root (launch.py's directory), where `configs` is
importable.
"""

import ml_collections


def add_member_execution_fields(train: ml_collections.ConfigDict) -> None:
  """How the member axis runs: strategy, devices, processes (lwi_jax/parallel/ensemble.py,
  sharding.py)."""
  train.ensemble_strategy = "auto"  # 'auto', 'vmap', 'sequential', 'unrolled'
  train.ensemble_chunk = 0  # members in flight at once (vmap/unrolled); 0 = all
  train.shard_ensemble = False  # split the members over devices (lwi_jax/parallel/sharding.py)
  train.num_devices = 0  # devices in the ensemble mesh; 0 = all visible devices
  train.distributed = False  # several processes/hosts (README "Distributed"); implies shard
  train.coordinator_address = ""  # host:port of process 0; '' = auto (SLURM, TPU, $JAX_...)
  train.num_processes = 0  # 0 = auto-detect
  train.process_id = -1  # -1 = auto-detect
  train.heartbeat_timeout_seconds = 60  # a silent process is declared dead after this
  train.init_timeout_seconds = 300  # wait this long for every process to connect
  train.eval_every_epoch = True  # validation accuracy per epoch in the history
  # epochs of head-only retraining (rule option retrain=head): from the seed's trained baseline,
  # only the classifier head trains (lwi_jax/study/study.py, phase head<r>)
  train.head_epochs = 2


def add_study_fields(config: ml_collections.ConfigDict, test: str = "bootstrap") -> None:
  """Rounds, the comparison with the baseline (statistics, "best rule") and the scores behind
  the weights (lwi_jax/rules/scores.py)."""
  config.rounds = 1  # > 1: iterate reweighting with the newest validation TPRs
  # Post-hoc arms (lwi_jax/rules/posthoc.py): per-class logit offsets fitted on saved logits, on
  # every baseline member (row `baseline+<arm>`, no retraining) and every rule (`<rule>+<arm>`):
  # 'logit_offsets:gamma=g' (b = -g log(s/s̄)), 'tpr_parity' (fitted). () = none, no logits saved.
  config.posthoc = ()
  config.compare = ml_collections.ConfigDict()
  config.compare.test = test  # 'bootstrap', 'paired_t' (>= 2 seeds) or 'none'
  config.compare.bootstrap_samples = 2000  # replicates of the paired, stratified bootstrap
  config.compare.bootstrap_seed = 0
  # "Best rule" (report.md, plots/confusion_best.png): the largest mean D among rules that
  # cost at most this many points of mean test accuracy.
  config.compare.max_accuracy_drop = 1.0
  # The accuracy-evenness front and the held-out choice (lwi_jax/report/front.py, selection.py):
  # evenness 'var' (-Var(s)), 'worst' (worst-class TPR) or 'worst_k' (mean of the worst_k
  # classes); selection 'validation' (choose on the validation split, confirm on test; held
  # out only with scores.method='crossfit') or 'none' (the test-split best rule).
  config.compare.evenness = "var"
  config.compare.worst_k = 2
  config.compare.selection = "validation"
  config.compare.selection_alpha = 0.05  # the chosen rule's gain must be significant there

  # Where the scores s behind the weights come from (lwi_jax/rules/scores.py): the baseline on the
  # validation split, or out-of-fold over the training pool from `folds` fold members per seed.
  config.scores = ml_collections.ConfigDict()
  config.scores.method = "validation"  # 'validation' or 'crossfit'
  config.scores.folds = 5  # crossfit: fold members per seed (one more ensemble of seeds x folds)
  config.scores.shrinkage = "none"  # 'none', 'add_kappa' or 'empirical_bayes' (toward mean s)
  config.scores.kappa = 10.0  # add_kappa: pseudo-examples per class at the mean TPR
  config.scores.confidence = 0.95  # Wilson intervals of s, bootstrap intervals of the weights
  config.scores.weight_bootstrap = 500  # parametric bootstrap draws for the weight intervals
