"""The same networks in PyTorch (CPU): what a user of the source paper's code would run.

Same architecture, batch, class-weighted cross-entropy (`F.cross_entropy(weight=w)`, the
reduction lwi_jax.losses reproduces), Adam, thread count. The CNN runs channels_last (oneDNN's
fast layout on CPU; ~25% faster than NCHW here). Imported only by bench/run.py, only if torch is
installed (`pip install -e '.[bench]'` installs torch==2.13.0).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class _ConvBNReLU(nn.Module):

  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, 3, padding=1)
    self.bn = nn.BatchNorm2d(cout, momentum=0.1)  # = flax momentum 0.9

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


class TorchResidualCNN(nn.Module):
  """lwi_jax.models.resnet_cnn.ResidualCNN, layer for layer."""

  def __init__(self, num_classes: int, widths=(32, 64, 128), dense_width=256, dropout_rate=0.5,
               image_size=32):
    super().__init__()
    w0, w1, w2 = widths
    self.a1, self.a2 = _ConvBNReLU(3, w0), _ConvBNReLU(w0, w0)
    self.b1, self.b2 = _ConvBNReLU(w0, w1), _ConvBNReLU(w1, w1)
    self.c1 = _ConvBNReLU(w1, w2)
    side = image_size // 8
    self.fc1 = nn.Linear(w2 * side * side, dense_width)
    self.drop = nn.Dropout(dropout_rate)
    self.fc2 = nn.Linear(dense_width, num_classes)

  def forward(self, x):
    x = self.a1(x)
    x = F.max_pool2d(x + self.a2(x), 2)
    x = self.b1(x)
    x = F.max_pool2d(x + self.b2(x), 2)
    x = F.max_pool2d(self.c1(x), 2)
    return self.fc2(self.drop(F.relu(self.fc1(x.flatten(1)))))


class TorchConvLSTM(nn.Module):
  """lwi_jax.models.conv_lstm.ConvLSTM: embedding -> 1-D convs -> LSTM (all T steps, the class
  from each sequence's last real character) -> dropout -> dense."""

  def __init__(self, num_classes: int, vocab_size: int, embed_dim=32, conv_features=(64,),
               kernel_size=3, lstm_hidden=128, dropout_rate=0.3):
    super().__init__()
    self.embed = nn.Embedding(vocab_size, embed_dim)
    convs, cin = [], embed_dim
    for f in conv_features:
      convs.append(nn.Conv1d(cin, f, kernel_size, padding="same"))
      cin = f
    self.convs = nn.ModuleList(convs)
    self.lstm = nn.LSTM(cin, lstm_hidden, batch_first=True)
    self.drop = nn.Dropout(dropout_rate)
    self.head = nn.Linear(lstm_hidden, num_classes)

  def forward(self, ids):
    mask = (ids != 0).unsqueeze(-1).float()
    x = self.embed(ids) * mask
    for conv in self.convs:
      x = F.relu(conv(x.transpose(1, 2)).transpose(1, 2)) * mask
    out, _ = self.lstm(x)
    last = (ids != 0).sum(1).clamp(min=1) - 1
    return self.head(self.drop(out[torch.arange(ids.shape[0]), last]))


class TorchTrainer:
  """S optimizer steps over pre-built batches, like one jitted lax.scan call on the JAX side."""

  def __init__(self, model: nn.Module, inputs: np.ndarray, labels: np.ndarray,
               class_weights: np.ndarray, image: bool, threads: int, seed: int = 0):
    torch.manual_seed(seed)
    self.threads = threads
    self.model = model
    self.image = image
    if image:
      self.model = self.model.to(memory_format=torch.channels_last)
      # [S, B, H, W, C] uint8 -> [S, B, C, H, W] float in [-1, 1], channels_last
      x = torch.from_numpy(np.ascontiguousarray(inputs)).permute(0, 1, 4, 2, 3)
      self.inputs = [(b.float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)
                     for b in x]
    else:
      self.inputs = [torch.from_numpy(np.ascontiguousarray(b)).long() for b in inputs]
    self.labels = [torch.from_numpy(np.ascontiguousarray(b)).long() for b in labels]
    self.weights = torch.from_numpy(np.asarray(class_weights, np.float32))
    self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
    self.model.train()

  def run(self) -> float:
    """All S steps; returns the last loss (forces the work to finish)."""
    torch.set_num_threads(self.threads)  # process-wide: set per call (cases may differ)
    loss = None
    for x, y in zip(self.inputs, self.labels):
      self.opt.zero_grad(set_to_none=True)
      loss = F.cross_entropy(self.model(x), y, weight=self.weights)
      loss.backward()
      self.opt.step()
    return float(loss.detach())
