"""The same networks in PyTorch (CPU): what a user of the source paper's code would run.

Same architecture, batch, class-weighted cross-entropy (`F.cross_entropy(weight=w)`, the
reduction lwi_jax.losses reproduces), Adam, thread count. The CNN runs channels_last (oneDNN's
fast layout on CPU; ~25% faster than NCHW here). Imported only by bench/run.py and
bench/time_to_accuracy.py, only if torch is installed (`pip install -e '.[bench]'` installs
torch==2.13.0). Both CNNs take the recipe's model fields (a fixed patch-whitening first layer,
identity-initialised convolutions, BatchNorm with or without a trained scale);
tests/test_torch_mirror.py loads a JAX model's parameters into them and compares the logits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lwi_jax.models.conv_groups import LOGIT_SCALE  # the JAX model's constant, one place


# lwi_jax.models.activations' names (model.activation); flax's gelu is the tanh approximation
ACTIVATIONS = {"relu": F.relu, "gelu": lambda x: F.gelu(x, approximate="tanh")}


class _ConvPoolBNAct(nn.Module):
  """lwi_jax.models.resnet_cnn.conv_pool_bn_act: conv 3x3 -> [2x2 max pool] -> BN -> act."""

  def __init__(self, cin: int, cout: int, pool: bool = False, bn_scale: bool = True,
               identity_init: bool = False, activation: str = "relu"):
    super().__init__()
    self.act = ACTIVATIONS[activation]
    self.conv = nn.Conv2d(cin, cout, 3, padding=1)
    if identity_init:  # resnet_cnn.identity_kernel_init: filter o < min(cin, cout) copies channel o
      n = min(cin, cout)
      with torch.no_grad():
        self.conv.weight[:n].zero_()
        self.conv.weight[:n, :, 1, 1] = torch.eye(n, cin)
    self.bn = nn.BatchNorm2d(cout, momentum=0.1)  # = flax momentum 0.9
    self.bn.weight.requires_grad_(bn_scale)  # bn_scale=False: the scale stays 1, untrained
    self.pool = pool

  def forward(self, x):
    x = self.conv(x)
    return self.act(self.bn(F.max_pool2d(x, 2) if self.pool else x))


class PatchWhitening(nn.Module):
  """lwi_jax.models.whitening.apply + act: a fixed convolution (buffers, never trained) from the
  (kernel, bias) whitening.fit returned, over patches edge-padded at the bottom/right."""

  def __init__(self, size: int, kernel, bias, channels: int = 3, activation: str = "relu"):
    super().__init__()
    self.act = ACTIVATIONS[activation]
    k = torch.tensor(np.asarray(kernel, np.float32)).reshape(size * size * channels, -1)
    # rows are in (dy, dx, c) order: [out, dy, dx, c] -> [out, c, dy, dx]
    self.register_buffer("weight", k.T.reshape(-1, size, size, channels).permute(0, 3, 1, 2)
                         .contiguous())
    self.register_buffer("bias", torch.tensor(np.asarray(bias, np.float32)))
    self.size = size

  @property
  def out_channels(self) -> int:
    return self.weight.shape[0]

  def forward(self, x):
    x = F.pad(x, (0, self.size - 1, 0, self.size - 1), mode="replicate")
    return self.act(F.conv2d(x, self.weight, self.bias))


def _stem(whitening: PatchWhitening | None, channels: int) -> tuple[nn.Module, int]:
  return (whitening, whitening.out_channels) if whitening is not None else (nn.Identity(),
                                                                             channels)


class TorchResidualCNN(nn.Module):
  """lwi_jax.models.resnet_cnn.ResidualCNN, layer for layer."""

  def __init__(self, num_classes: int, widths=(32, 64, 128), dense_width=256, dropout_rate=0.5,
               image_size=32, whitening: PatchWhitening | None = None, bn_scale: bool = True,
               identity_init: bool = False, channels: int = 3, activation: str = "relu"):
    super().__init__()
    w0, w1, w2 = widths
    self.stem, cin = _stem(whitening, channels)
    block = lambda i, o: _ConvPoolBNAct(i, o, False, bn_scale, identity_init,  # noqa: E731
                                        activation)
    self.a1, self.a2 = block(cin, w0), block(w0, w0)
    self.b1, self.b2 = block(w0, w1), block(w1, w1)
    self.c1 = block(w1, w2)
    side = image_size // 8
    self.fc1 = nn.Linear(w2 * side * side, dense_width)
    self.drop = nn.Dropout(dropout_rate)
    self.fc2 = nn.Linear(dense_width, num_classes)

  def forward(self, x):
    x = self.a1(self.stem(x))
    x = F.max_pool2d(x + self.a2(x), 2)
    x = self.b1(x)
    x = F.max_pool2d(x + self.b2(x), 2)
    x = F.max_pool2d(self.c1(x), 2)
    return self.fc2(self.drop(F.relu(self.fc1(x.flatten(1)))))


class TorchConvGroupsCNN(nn.Module):
  """lwi_jax.models.conv_groups.ConvGroupsCNN: per width, conv -> pool -> BN -> act -> conv ->
  BN -> act; a global max pool; a bias-free head scaled by LOGIT_SCALE."""

  def __init__(self, num_classes: int, widths=(64, 256, 256),
               whitening: PatchWhitening | None = None, bn_scale: bool = True,
               identity_init: bool = False, channels: int = 3, activation: str = "relu"):
    super().__init__()
    self.stem, cin = _stem(whitening, channels)
    blocks = []
    for w in widths:
      blocks += [_ConvPoolBNAct(cin, w, True, bn_scale, identity_init, activation),
                 _ConvPoolBNAct(w, w, False, bn_scale, identity_init, activation)]
      cin = w
    self.blocks = nn.Sequential(*blocks)
    self.head = nn.Linear(cin, num_classes, bias=False)

  def forward(self, x):
    return self.head(self.blocks(self.stem(x)).amax(dim=(2, 3))) * LOGIT_SCALE


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
