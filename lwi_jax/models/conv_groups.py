"""airbench's network shape (Keller Jordan's CIFAR-10 speed runs) from the residual CNN's parts.

[patch whitening] -> for each width w: conv(w) -> 2x2 max pool -> BatchNorm -> act -> conv(w)
-> BatchNorm -> act (model.activation: ReLU, or airbench's GELU); then a global max pool and a
bias-free linear head (`head`) whose logits are scaled by LOGIT_SCALE.

Why a second CNN: the residual CNN spends most of its FLOPs on two full-resolution
convolutions and flattens a 4x4 map into a 256-wide dense layer, and its full preset reaches
87.6% in 16 epochs for 0.50 PFLOP a member (BUILD_NOTES, issue #26), where airbench reaches 94%
in ~10 epochs for 0.36 PFLOP by pooling right after each group's first convolution (its FLOPs
sit at 16x16 and 8x8, in wide layers) and by reading the classes off a global max pool. This is
that shape, with the same convolution paths (`conv_impl`, so `cpu` is fast on CPU) and the
same recipe fields as the residual CNN (model.bn_*, whiten_*, identity_init, bn_scale).
The presets keep ReLU (GELU costs 1.08x a step on the CPU; BUILD_NOTES, "ninth session").
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwi_jax.models import cnn_base
from lwi_jax.models.resnet_cnn import conv_pool_bn_act

# airbench's output scale (its `scaling_factor`): the head reads BatchNorm'd features through a
# max pool, whose logits it keeps small this way; taken as airbench's constant, not tuned here.
LOGIT_SCALE = 1.0 / 9.0


class ConvGroupsCNN(cnn_base.ImageCNN):
  """Widths (one per group; airbench94: 64/256/256) come from model.widths."""

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = self.stem(images)
    x_t = self.stem_channels_first(images, train)
    bn = self.block_options(train)
    for g, width in enumerate(self.widths):
      x = conv_pool_bn_act(x, width, self.conv_impl, f"BatchNorm_{2 * g}", pool=True,
                           x_t=x_t if g == 0 else None, **bn)
      x = conv_pool_bn_act(x, width, self.conv_impl, f"BatchNorm_{2 * g + 1}", **bn)
    x = x.max(axis=(1, 2))
    logits = nn.Dense(self.num_classes, use_bias=False, dtype=self.compute_dtype or self.dtype,
                      param_dtype=self.dtype, name="head")(x) * LOGIT_SCALE
    return logits.astype(jnp.promote_types(self.dtype, jnp.float32))
