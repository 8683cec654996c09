"""Models by name, built from `config.model`. Every model maps (inputs, train) -> logits [B, C]."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn

from lwi_jax.models.conv_lstm import ConvLSTM
from lwi_jax.models.resnet_cnn import CONV_IMPLS, ResidualCNN


def _resnet_cnn(cfg, num_classes: int, data_info: dict) -> nn.Module:
  del data_info
  return ResidualCNN(num_classes=num_classes, widths=tuple(cfg.widths),
                     dense_width=cfg.dense_width, dropout_rate=cfg.dropout_rate,
                     conv_impl=resolve_conv_impl(cfg.get("conv_impl", "auto")))


def resolve_conv_impl(name: str) -> str:
  """'auto' picks the matmul form on CPU (fast there, see resnet_cnn) and XLA convs elsewhere."""
  import jax
  if name == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "xla"
  if name not in CONV_IMPLS:
    raise ValueError(f"model.conv_impl={name!r} is not one of {['auto', *CONV_IMPLS]}")
  return name


def _conv_lstm(cfg, num_classes: int, data_info: dict) -> nn.Module:
  """The vocabulary size is a property of the data, so it comes from the text source's info."""
  if "vocab_size" not in data_info:
    raise ValueError("model.name='conv_lstm' reads token ids and needs data.info['vocab_size'] "
                     "from a text source (data.name in ['names', 'csv'])")
  return ConvLSTM(num_classes=num_classes, vocab_size=int(data_info["vocab_size"]),
                  embed_dim=cfg.embed_dim, conv_features=tuple(cfg.conv_features),
                  kernel_size=cfg.kernel_size, lstm_hidden=cfg.lstm_hidden,
                  dropout_rate=cfg.dropout_rate)


MODELS: dict[str, Callable[..., nn.Module]] = {"resnet_cnn": _resnet_cnn, "conv_lstm": _conv_lstm}


def create_model(cfg, num_classes: int, data_info: dict | None = None) -> nn.Module:
  if cfg.name not in MODELS:
    raise ValueError(f"model.name={cfg.name!r} is not one of {sorted(MODELS)}")
  return MODELS[cfg.name](cfg, num_classes, data_info or {})
