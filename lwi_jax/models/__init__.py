"""Models by name, built from `config.model`. Every model maps (inputs, train) -> logits [B, C]."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lwi_jax.models.conv_groups import ConvGroupsCNN
from lwi_jax.models.conv_lstm import ConvLSTM
from lwi_jax.models import activations
from lwi_jax.models import cnn_base
from lwi_jax.models import mlp as mlp_lib
from lwi_jax.models import whitening
from lwi_jax.models.cnn_base import CONV_IMPLS
from lwi_jax.models.resnet_cnn import ResidualCNN


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def resolve_compute_dtype(name: str):
  """model.compute_dtype: 'float32', or 'bfloat16' = mixed precision (float32 parameters,
  BatchNorm statistics and loss; meant for GPU/TPU, where bfloat16 convolutions are fast)."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"model.compute_dtype={name!r} is not one of {list(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


def _image_cnn_options(cfg) -> dict:
  """The image CNNs' recipe fields of config.model, validated (also before any data is loaded)."""
  momentum, eps = float(cfg.get("bn_momentum", 0.9)), float(cfg.get("bn_epsilon", 1e-5))
  if not 0.0 <= momentum < 1.0:
    raise ValueError(f"model.bn_momentum={momentum} must be in [0, 1)")
  if eps <= 0.0:
    raise ValueError(f"model.bn_epsilon={eps} must be > 0")
  options = dict(identity_init=cfg.get("identity_init", False), bn_scale=cfg.get("bn_scale", True))
  for key, value in options.items():
    if not isinstance(value, bool):
      raise ValueError(f"model.{key}={value!r} must be True or False")
  activation = cfg.get("activation", cnn_base.ImageCNN.activation)
  activations.get(activation)  # a clear error naming model.activation before any data loads
  return dict(conv_impl=resolve_conv_impl(cfg.get("conv_impl", "auto")), activation=activation,
              compute_dtype=resolve_compute_dtype(cfg.get("compute_dtype", "float32")),
              bn_momentum=momentum, bn_epsilon=eps, **options)


INPUT_NORMS = ("fixed", "train_stats")


def _input_norm(cfg, data_info: dict) -> dict:
  """model.input_norm: 'fixed' (x / 127.5 - 1, the CIFAR-10 configs, which predate the field)
  or 'train_stats' (per-channel mean and std of the training split, from the image source)."""
  norm = cfg.get("input_norm", "fixed")
  if norm not in INPUT_NORMS:
    raise ValueError(f"model.input_norm={norm!r} is not one of {list(INPUT_NORMS)}")
  if norm == "fixed":
    return {}
  if "pixel_mean" not in data_info:
    raise ValueError("model.input_norm='train_stats' needs the training split's pixel "
                     "statistics, which the image sources give (data.name in ['image_folder', "
                     "'npz', 'tfds_images']); use 'fixed' with this data")
  return dict(pixel_mean=tuple(data_info["pixel_mean"]), pixel_std=tuple(data_info["pixel_std"]))


def _whitening(cfg, train_inputs, norm: dict) -> dict:
  """model.whiten_patch: 0 = no whitening layer, else its patch size (whitening.py), fitted to
  the training images in the model's own input normalisation."""
  size = int(cfg.get("whiten_patch", 0))
  if not size:
    return {}
  if train_inputs is None or np.ndim(train_inputs) != 4:
    raise ValueError(f"model.whiten_patch={size} is fitted to the training images: "
                     "create_model needs train_inputs [N, H, W, C] (0 = no whitening layer)")
  kernel, bias = whitening.fit(train_inputs, size, float(cfg.get("whiten_eps", whitening.EPS)),
                               norm.get("pixel_mean"), norm.get("pixel_std"))
  return dict(whiten_patch=size, whiten_kernel=kernel, whiten_bias=bias)


def _resnet_cnn(cfg, num_classes: int, data_info: dict, train_inputs) -> nn.Module:
  norm = _input_norm(cfg, data_info)
  return ResidualCNN(num_classes=num_classes, widths=tuple(cfg.widths),
                     dense_width=cfg.dense_width, dropout_rate=cfg.dropout_rate,
                     **_image_cnn_options(cfg), **norm, **_whitening(cfg, train_inputs, norm))


def _conv_groups(cfg, num_classes: int, data_info: dict, train_inputs) -> nn.Module:
  """airbench's shape (conv_groups.py): the residual CNN's image fields, one width per group."""
  norm = _input_norm(cfg, data_info)
  return ConvGroupsCNN(num_classes=num_classes, widths=tuple(cfg.widths),
                       **_image_cnn_options(cfg), **norm, **_whitening(cfg, train_inputs, norm))


def resolve_conv_impl(name: str) -> str:
  """'auto' picks the CPU path on CPU (see resnet_cnn) and XLA's convolutions elsewhere."""
  if name == "auto":
    return "cpu" if jax.default_backend() == "cpu" else "xla"
  if name not in CONV_IMPLS:
    raise ValueError(f"model.conv_impl={name!r} is not one of {['auto', *CONV_IMPLS]}")
  return name


def _conv_lstm(cfg, num_classes: int, data_info: dict, train_inputs) -> nn.Module:
  """The vocabulary size is a property of the data, so it comes from the text source's info."""
  del train_inputs
  if "vocab_size" not in data_info:
    raise ValueError("model.name='conv_lstm' reads token ids and needs data.info['vocab_size'] "
                     "from a text source (data.name in ['names', 'csv'])")
  return ConvLSTM(num_classes=num_classes, vocab_size=int(data_info["vocab_size"]),
                  embed_dim=cfg.embed_dim, conv_features=tuple(cfg.conv_features),
                  kernel_size=cfg.kernel_size, lstm_hidden=cfg.lstm_hidden,
                  dropout_rate=cfg.dropout_rate)


def _mlp(cfg, num_classes: int, data_info: dict, train_inputs) -> nn.Module:
  """Feature rows of any width: the first Dense layer takes its input size from the data."""
  del data_info, train_inputs
  mlp_lib.check_config(cfg)
  return mlp_lib.MLP(num_classes=num_classes, hidden_sizes=tuple(cfg.hidden_sizes),
                     activation=cfg.activation, dropout_rate=float(cfg.dropout_rate),
                     norm=cfg.norm)


MODELS: dict[str, Callable[..., nn.Module]] = {"resnet_cnn": _resnet_cnn,
                                               "conv_groups": _conv_groups,
                                               "conv_lstm": _conv_lstm, "mlp": _mlp}

# The image CNNs: the same image fields of config.model and the same convolution paths.
IMAGE_CNNS = ("resnet_cnn", "conv_groups")


# The top-level parameter collection of each model's classifier head: the only parameters a
# head-only member (rule option retrain=head) trains. A model missing here has no head to retrain.
HEADS: dict[str, str] = {"resnet_cnn": "head", "conv_groups": "head", "conv_lstm": "head",
                         "mlp": "head"}


def head_name(cfg, where: str = "retrain=head") -> str:
  """The name of `cfg.name`'s classifier head, or a one-line error naming the field."""
  if cfg.name not in HEADS:
    raise ValueError(f"{where}: model.name={cfg.name!r} has no named classifier head to "
                     f"retrain; models with one: {sorted(HEADS)}")
  return HEADS[cfg.name]


def check_config(cfg) -> None:
  """What can be checked about `config.model` before any data is loaded."""
  if cfg.name not in MODELS:
    raise ValueError(f"model.name={cfg.name!r} is not one of {sorted(MODELS)}")
  if cfg.name == "mlp":
    mlp_lib.check_config(cfg)
  if cfg.name in IMAGE_CNNS:
    _image_cnn_options(cfg)
    if cfg.get("input_norm", "fixed") not in INPUT_NORMS:
      raise ValueError(f"model.input_norm={cfg.input_norm!r} is not one of {list(INPUT_NORMS)}")
    whitening.check(int(cfg.get("whiten_patch", 0)), float(cfg.get("whiten_eps", whitening.EPS)))


def create_model(cfg, num_classes: int, data_info: dict | None = None, train_inputs=None
                 ) -> nn.Module:
  """The flax module `cfg.name` (MODELS), mapping (inputs, train) -> logits [B, num_classes].

  Args:
    cfg: config.model.
    num_classes: from the data, never a constant.
    data_info: what the data source says about its inputs (e.g. a text source's vocab_size).
    train_inputs: the training split's inputs, for layers fitted to the data (whiten_patch).
  """
  if cfg.name not in MODELS:
    raise ValueError(f"model.name={cfg.name!r} is not one of {sorted(MODELS)}")
  return MODELS[cfg.name](cfg, num_classes, data_info or {}, train_inputs)
