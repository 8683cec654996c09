"""Your own images with the residual CNN: a folder of class folders, arrays, or TFDS by name.

  python launch.py --config=configs/images.py:folder --config.data.root=/path/to/images
  python launch.py --config=configs/images.py:npz --config.data.path=/path/to/arrays.npz
  python launch.py --config=configs/images.py:tfds --config.data.tfds_name=mnist \
      --config.data.train_split='train[:90%]' --config.data.test_split=test

folder: root/<class>/*.png|jpg|bmp|gif|webp (test and validation carved per class, seeded) or
root/<split>/<class>/* with train, test and optionally val (lwi_jax/data/image_scan.py).
Decoded once in parallel and cached under data.cache_dir (lwi_jax/data/image_folder.py).
The CNN takes any size >= 8x8 and any channel count; pixels are normalised with the training
split's per-channel mean and std (model.input_norm). The training recipe (optimizer, schedule,
augmentation) is configs/cifar.py's; the network is the paper's residual CNN at 32/64/128.
For data whose mirror image is another class (digits, letters, text) set
--config.train.flip=none --config.train.eval_flip=False.

Override any field: --config.data.image_size=64 --config.data.channels=1 --config.train.epochs=8
"""

import ml_collections

from configs import common

PRESETS = ("folder", "npz", "tfds")


def _data(preset: str) -> ml_collections.ConfigDict:
  data = ml_collections.ConfigDict()
  data.name = {"folder": "image_folder", "npz": "npz", "tfds": "tfds_images"}[preset]
  data.validation_fraction = 0.1  # carved from train, stratified; weights come from it
  data.min_validation_per_class = 5  # fewer: refused after loading (TPR steps of 1/n)
  data.split_seed = 0
  data.train_per_class = 0  # 0 = all
  data.test_per_class = 0  # 0 = all
  if preset == "folder":
    data.root = ""  # the folder: root/<class>/* or root/<split>/<class>/*
    data.layout = "auto"  # 'auto' ('split' if root/train exists), 'class' or 'split'
    data.test_fraction = 0.2  # layout 'class' only: of each class, seeded by split_seed
    data.image_size = 0  # 0 = keep the files' size (all must agree); N = resize to N x N
    data.channels = 0  # 0 = auto (1 if all greyscale, else 3), 1, 3 or 4 (image_convert.py)
    data.skip_bad_images = False  # True: unreadable files skipped and counted, not an error
    data.cache_dir = "runs/image_cache"  # decoded arrays
    data.split_manifest = ""  # a workdir's split_manifest.json: reuse that split exactly; '' = carve
  if preset == "npz":
    data.path = ""  # x_train, y_train, x_test, y_test [, class_names]
  if preset == "tfds":
    data.tfds_name = "mnist"
    data.train_split = "train"  # slicing allowed: 'train[:90%]'
    data.test_split = "test"
    data.tfds_data_dir = ""  # '' = TFDS default (~/tensorflow_datasets)
    data.download = False  # True: prepare the dataset if it is not (network, TensorFlow)
    data.image_key = "image"
    data.label_key = "label"
  return data


def get_config(preset: str = "folder") -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    raise ValueError(f"configs/images.py preset {preset!r} is not one of {list(PRESETS)}")
  config = ml_collections.ConfigDict()
  config.workdir = f"runs/images_{preset}"
  config.data = _data(preset)

  config.model = ml_collections.ConfigDict()
  config.model.name = "resnet_cnn"
  config.model.widths = (32, 64, 128)
  config.model.dense_width = 256
  config.model.dropout_rate = 0.0
  config.model.conv_impl = "auto"  # see configs/cifar.py
  config.model.compute_dtype = "float32"
  config.model.bn_momentum = 0.9
  config.model.bn_epsilon = 1e-5
  config.model.input_norm = "train_stats"  # or 'fixed' (x / 127.5 - 1, the CIFAR-10 configs')

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "sgdw"
  config.optimizer.learning_rate = 0.2  # peak, for batch 256
  config.optimizer.schedule = "warmup_linear"
  config.optimizer.warmup_fraction = 0.2
  config.optimizer.initial_lr_fraction = 0.1
  config.optimizer.final_lr_fraction = 0.0
  config.optimizer.weight_decay = 5e-3
  config.optimizer.momentum = 0.9

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 16
  config.train.batch_size = 256
  config.train.eval_batch_size = 500
  config.train.augment = "flip_crop"  # 'none' or 'flip_crop'
  config.train.crop_pad = 2
  config.train.pad_mode = "reflect"
  config.train.flip = "alternating"  # 'random', 'alternating' or 'none' (digits, letters)
  config.train.label_smoothing = 0.2
  config.train.eval_flip = True  # False when train.flip='none'
  config.train.eval_translate = 0  # test-time shifted views, pixels (configs/cifar.py)
  common.add_member_execution_fields(config.train)

  common.add_study_fields(config, test="bootstrap")

  config.rules = ("uniform", "inverse_tpr:gamma=0.5", "inverse_tpr:gamma=1",
                  "effective_number:beta=0.999", "oversample:gamma=1", "group_dro:eta=0.01")
  config.seeds = (0, 1, 2)
  if preset == "tfds":
    config.train.flip = "none"  # the default dataset is mnist: mirrored digits are not digits
    config.train.eval_flip = False
  return config
