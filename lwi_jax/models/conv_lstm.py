"""The source paper's recurrent text classifier: embedding -> 1-D convs -> LSTM -> dropout -> dense.

Inputs are int32 token ids [B, T], right-padded with 0 (see data/text_encoding.py). Padding
must not change the result, so a name padded to 16 or to 32 positions gets the same logits:
  - pad positions get a zero embedding, and every convolution output is zeroed there again, so a
    real position next to the padding sees zeros, exactly as it sees SAME-padding zeros at the
    end of the array;
  - the LSTM runs with `seq_lengths` (flax `nn.RNN`, a `nn.scan` over time) and the class comes
    from the carry at each sequence's own last character, never from a pad step (an empty row
    gets the initial state).

Why it is written with matmuls: the trainer vmaps E members, and XLA:CPU runs batched matrix
products well but gathers/scatters and grouped convolutions poorly. So the embedding is a
one-hot matmul (its gradient is a matmul, not a scatter), a 1-D convolution is K shifted views
concatenated times one matrix, and the LSTM's input projection for all T steps is one matmul
before the scan, leaving only h @ W_h inside the recurrence.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from lwi_jax.data.text_encoding import PAD_ID


def conv1d_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """SAME 1-D convolution, stride 1, [B, T, C] x [K, C, F], as K shifted views + one matmul."""
  k, c, f = kernel.shape
  t = x.shape[1]
  xp = jnp.pad(x, ((0, 0), ((k - 1) // 2, k // 2), (0, 0)))
  patches = jnp.concatenate([xp[:, i:i + t] for i in range(k)], axis=-1)  # order (k, c)
  return jnp.dot(patches, kernel.reshape(k * c, f))


class Conv1D(nn.Module):
  features: int
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return conv1d_same(x, kernel) + bias


def _lstm_bias_init(key, shape, dtype=jnp.float32):
  """Gate order (i, f, g, o); the forget gate starts at +1 so early gradients flow through time."""
  del key
  hidden = shape[0] // 4
  return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)


class LSTMRecurrence(nn.RNNCellBase):
  """LSTM cell whose inputs are already projected to the 4 gates (x W_x + b, done outside)."""

  hidden: int

  @nn.compact
  def __call__(self, carry, gate_inputs):
    c, h = carry
    gates = gate_inputs + nn.Dense(4 * self.hidden, use_bias=False,
                                   kernel_init=nn.initializers.orthogonal(), name="hh")(h)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    del rng
    zeros = jnp.zeros(tuple(input_shape[:-1]) + (self.hidden,), jnp.float32)
    return zeros, zeros

  @property
  def num_feature_axes(self) -> int:
    return 1


class ConvLSTM(nn.Module):
  """Sizes come from the config; vocab_size from the data (`ClassificationData.info`)."""

  num_classes: int
  vocab_size: int
  embed_dim: int = 32
  conv_features: Sequence[int] = (64,)
  kernel_size: int = 3
  lstm_hidden: int = 128
  dropout_rate: float = 0.3

  @nn.compact
  def __call__(self, ids: jax.Array, train: bool) -> jax.Array:
    chex.assert_rank(ids, 2)
    chex.assert_type(ids, jnp.int32)
    mask = (ids != PAD_ID).astype(jnp.float32)[..., None]  # [B, T, 1]
    lengths = jnp.sum(ids != PAD_ID, axis=1).astype(jnp.int32)
    table = self.param("embedding", nn.initializers.normal(1.0), (self.vocab_size, self.embed_dim),
                       jnp.float32)
    x = jnp.dot(jax.nn.one_hot(ids, self.vocab_size, dtype=jnp.float32), table) * mask
    for features in self.conv_features:
      x = nn.relu(Conv1D(features, self.kernel_size)(x)) * mask
    gate_inputs = nn.Dense(4 * self.lstm_hidden, bias_init=_lstm_bias_init, name="ih")(x)
    (_, h), _ = nn.RNN(LSTMRecurrence(self.lstm_hidden, name="lstm"), return_carry=True)(
        gate_inputs, seq_lengths=lengths)
    # nn.RNN picks the carry at step length - 1, i.e. the LAST step for an empty row (the padded
    # tail of an eval batch); give such rows the initial state so no row ever depends on T.
    h = jnp.where(lengths[:, None] > 0, h, 0.0)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.num_classes, name="head")(h)
