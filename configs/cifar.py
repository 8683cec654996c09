"""CIFAR-10 with airbench's network shape (conv_groups) and the fast recipe.

  python launch.py --config=configs/cifar.py                 # full size (GPU/TPU)
  python launch.py --config=configs/cifar.py:cpu             # full 45k/5k split, 15-19 min a
                                                             # member on 2 CPU cores (measured:
                                                             # 57-70 s a member-epoch by host)
  python launch.py --config=configs/cifar.py:smoke           # seconds: tiny model and data (tests)

The network is airbench's shape with the fields that won the ablation at both sizes (BUILD_NOTES.md,
"Item 2 on the CPU: airbench's shape"): identity-initialised convolutions, BatchNorm without a
trained scale and momentum 0.6, a fixed 2x2 patch-whitening first layer. The paper's residual CNN
is still there, with its own values of these fields: --config.model.name=resnet_cnn
--config.model.widths="(64,128,256)" --config.model.identity_init=False
--config.model.bn_scale=True --config.model.bn_momentum=0.9 --config.model.whiten_patch=0

All presets train with the fast recipe (BUILD_NOTES.md, "CIFAR-10 recipe"): SGD with Nesterov
momentum and decoupled weight decay, a warm-up + linear-decay learning rate, label smoothing,
alternating flips + 2-pixel reflect translation, test-time mirror images.

Override any field: --config.train.epochs=5 --config.data.dir=/path/to/cifar-10-batches-py
"""

import ml_collections

from configs import common

PRESETS = ("full", "cpu", "smoke")


def get_config(preset: str = "full") -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    raise ValueError(f"configs/cifar.py preset {preset!r} is not one of {list(PRESETS)}")
  config = ml_collections.ConfigDict()
  config.workdir = f"runs/cifar_{preset}"

  config.data = ml_collections.ConfigDict()
  config.data.name = "cifar10"
  config.data.source = "python"  # 'python' (a cifar-10-batches-py directory) or 'tfds'
  config.data.dir = "../shared/data/cifar10/cifar-10-batches-py"
  config.data.tfds_data_dir = ""  # '' = TFDS default (~/tensorflow_datasets)
  config.data.download = True  # tfds only: download and prepare if not prepared
  config.data.validation_fraction = 0.1  # carved from train, stratified; weights come from it
  config.data.min_validation_per_class = 5  # fewer: refused after loading (TPR steps of 1/n)
  config.data.split_seed = 0
  config.data.train_per_class = 0  # 0 = all; the pool validation is carved from
  config.data.test_per_class = 0  # 0 = all

  config.model = ml_collections.ConfigDict()
  # 'conv_groups' (airbench's shape: one width per group) or 'resnet_cnn' (the paper's network)
  config.model.name = "conv_groups"
  config.model.widths = (64, 256, 256)
  config.model.dense_width = 256  # resnet_cnn only
  config.model.dropout_rate = 0.0  # the short recipe underfits rather than overfits
  # 'auto' (cpu on CPU, XLA conv elsewhere), 'xla', 'cpu', 'matmul' (see resnet_cnn.py)
  config.model.conv_impl = "auto"
  # 'float32', or 'bfloat16' = mixed precision for GPU/TPU (float32 parameters, BatchNorm
  # statistics and loss); on CPU bfloat16 convolutions are not faster
  config.model.compute_dtype = "float32"
  # flax convention: running = m * running + (1 - m) * batch; airbench's 0.6 (measured: +0.6 val
  # at full size with identity_init and bn_scale=False, BUILD_NOTES "The GPU check run")
  config.model.bn_momentum = 0.6
  config.model.bn_epsilon = 1e-5
  # Patch-whitening first layer (lwi_jax/models/whitening.py): 0 = none, else the patch size
  # (airbench: 2); fixed, fitted to the training images; eps relative to the mean eigenvalue
  config.model.whiten_patch = 2
  config.model.whiten_eps = 5e-4
  # airbench's identity-initialised convolutions (each starts as an implicit residual) and
  # BatchNorm without a trained scale (False); lwi_jax/models/resnet_cnn.py
  config.model.identity_init = True
  config.model.bn_scale = False
  # after every BatchNorm and the whitening layer: 'relu', 'gelu' (airbench's), ...
  # (lwi_jax/models/activations.py)
  config.model.activation = "relu"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "sgdw"  # 'adam', 'sgd' (L2 through momentum), 'sgdw' (decoupled)
  config.optimizer.learning_rate = 0.2  # peak, for batch 256 (linear in the batch size)
  config.optimizer.schedule = "warmup_linear"  # 'cosine', 'constant', 'warmup_linear'
  config.optimizer.warmup_fraction = 0.2  # warmup_linear: steps to the peak
  config.optimizer.initial_lr_fraction = 0.1  # warmup_linear: lr at step 0 / peak
  config.optimizer.final_lr_fraction = 0.0  # warmup_linear: lr at the last step / peak
  config.optimizer.weight_decay = 5e-3  # sgdw: decoupled, x lr per step
  config.optimizer.momentum = 0.9  # sgd, sgdw (Nesterov)
  # BatchNorm biases' learning rate / the network's (airbench's bias_scaler: 64); their weight
  # decay per step stays the network's (lwi_jax/optim.py, scale_norm_biases)
  config.optimizer.norm_bias_lr_scale = 1.0
  # Lookahead (lwi_jax/optim.py): every k steps the weights jump to a running average of
  # themselves, averaging harder towards the end; 0 = off
  config.optimizer.lookahead_every = 0
  config.optimizer.lookahead_decay = 0.987  # per step: airbench's 0.95 at batch 1024, at 256
  config.optimizer.lookahead_start = 0.3  # fraction of the steps before any averaging
  config.optimizer.lookahead_power = 3.0  # rho = decay**every * (step / steps)**power

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 16
  config.train.batch_size = 256
  config.train.eval_batch_size = 500
  config.train.augment = "flip_crop"  # 'none' or 'flip_crop'
  config.train.crop_pad = 2  # translation in pixels (4: the classic recipe)
  config.train.pad_mode = "reflect"  # 'zeros' or 'reflect'
  config.train.flip = "alternating"  # 'random' or 'alternating' (airbench)
  config.train.label_smoothing = 0.2
  config.train.eval_flip = True  # test-time augmentation: logits of image + mirror image
  # + the image shifted by this many pixels up-left and down-right (airbench: 1), half the
  # weight; each shift is one more pass (two with the mirror) at every evaluation
  config.train.eval_translate = 0
  # Named by the console when this preset starts on a CPU-only host (changes nothing it runs)
  config.train.cpu_preset = "configs/cifar.py:cpu" if preset == "full" else ""
  common.add_member_execution_fields(config.train)

  common.add_study_fields(config, test="bootstrap")
  # "Is retraining worth it?": the closed-form offsets b = -log(s/s̄) on every baseline member
  # (no retraining) and stacked on every rule, in the same table (lwi_jax/rules/posthoc.py).
  config.posthoc = ("logit_offsets:gamma=1",)

  # Members = rules x seeds. A rule is "name" or "name:hparam=value,...".
  config.rules = ("uniform", "inverse_tpr:gamma=0.5", "inverse_tpr:gamma=1",
                  "inverse_tpr:gamma=2", "class_difficulty:tau=1", "effective_number:beta=0.999",
                  "focal:gamma=2", "drw:gamma=1,start=0.5", "oversample:gamma=1",
                  "group_dro:eta=0.01", "dynamic_difficulty:tau=1")
  config.seeds = (0, 1, 2)

  if preset == "cpu":  # the full 45,000 / 5,000 / 10,000 split, a narrower network
    config.model.widths = (32, 128, 128)
    # measured on 2 cores (BUILD_NOTES.md, "Item 2 on the CPU"): 16 epochs 88.2% test (2 seeds)
    # in 15-19 min a member by host. The best member found for a 25-minute budget ("ninth
    # session"): --config.model.widths="(32,192,192)" --config.model.activation=gelu
    # --config.train.epochs=20, 89.7% test (4 seeds) in 24.4-26.3 min (~37 min on the slower
    # host of "fourteenth session"); with
    # --config.train.eval_translate=1 (the same members) 89.99% (4 seeds: "twelfth session")
    config.train.epochs = 16
    config.rules = ("uniform", "inverse_tpr:gamma=0.5", "inverse_tpr:gamma=1",
                    "oversample:gamma=1", "group_dro:eta=0.01",
                    "inverse_tpr:gamma=1,retrain=head", "logit_tpr:gamma=1")
    config.seeds = (0, 1)
  if preset == "smoke":  # seconds: a test of the whole pipeline, not a result
    config.data.train_per_class = 20
    config.data.test_per_class = 20
    config.data.min_validation_per_class = 2  # 2 of the 20 per class: a pipeline test only
    config.model.widths = (4, 8, 8)
    config.model.dense_width = 16
    config.train.epochs = 2
    config.train.batch_size = 32
    config.train.eval_batch_size = 100
    config.rules = ("uniform", "inverse_tpr:gamma=1")
    config.seeds = (0,)
  return config
