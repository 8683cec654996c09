"""Analytic FLOPs of one training step (forward + backward) of the benchmarked models.

Counted: multiply-adds of convolutions and matrix products, 2 FLOPs each; forward once, then the
input gradient and the weight gradient once each (the first layer has no input gradient).
Elementwise work (BatchNorm, activations, the optimizer) is left out, so achieved FLOP/s is a
lower bound on how busy the machine is.
"""

from __future__ import annotations


def _train(fwd: float, dx: float) -> float:
  """forward + dW (same as forward) + dx (0 where no input gradient is needed)."""
  return 2 * fwd + dx


def cnn_step_flops(batch: int, image: int, widths, dense: int, classes: int,
                   in_channels: int = 3) -> float:
  w0, w1, w2 = widths
  total, side, cin = 0.0, image, in_channels
  layers = [(w0, side), (w0, side), (w1, side // 2), (w1, side // 2), (w2, side // 4)]
  for i, (cout, s) in enumerate(layers):
    fwd = 2.0 * batch * s * s * 9 * cin * cout
    total += _train(fwd, 0.0 if i == 0 else fwd)
    cin = cout
  flat = w2 * (image // 8) ** 2
  for fin, fout in ((flat, dense), (dense, classes)):
    fwd = 2.0 * batch * fin * fout
    total += _train(fwd, fwd)
  return total


def conv_groups_step_flops(batch: int, image: int, widths, classes: int,
                           in_channels: int = 3) -> float:
  """lwi_jax/models/conv_groups.py: per group a conv at the incoming size, a 2x2 pool, a conv
  at half the size; a global max pool and a bias-free head. in_channels: 3, or the whitening
  layer's 2*k*k*3 (counted as the first convolution's input, its own patches product left out)."""
  total, side, cin = 0.0, image, in_channels
  for g, w in enumerate(widths):
    first = 2.0 * batch * side * side * 9 * cin * w
    side //= 2
    second = 2.0 * batch * side * side * 9 * w * w
    total += _train(first, 0.0 if g == 0 else first) + _train(second, second)
    cin = w
  head = 2.0 * batch * cin * classes
  return total + _train(head, head)


def conv_lstm_step_flops(batch: int, length: int, vocab: int, embed: int, conv_features,
                         kernel: int, hidden: int, classes: int) -> float:
  total = _train(2.0 * batch * length * vocab * embed, 0.0)  # one-hot embedding matmul
  cin = embed
  for f in conv_features:
    fwd = 2.0 * batch * length * kernel * cin * f
    total += _train(fwd, fwd)
    cin = f
  ih = 2.0 * batch * length * cin * 4 * hidden
  hh = 2.0 * batch * length * hidden * 4 * hidden
  total += _train(ih, ih) + _train(hh, hh)
  head = 2.0 * batch * hidden * classes
  return total + _train(head, head)


def mlp_step_flops(batch: int, sizes) -> float:
  """sizes = (inputs, hidden..., classes): one Dense product per consecutive pair."""
  total = 0.0
  for i, (fin, fout) in enumerate(zip(sizes[:-1], sizes[1:])):
    fwd = 2.0 * batch * fin * fout
    total += _train(fwd, 0.0 if i == 0 else fwd)
  return total
