"""The source paper's small residual CNN, with the convolution implementation chosen per backend.

conv(w0) -> conv(w0) + residual -> pool -> conv(w1) -> conv(w1) + residual -> pool -> conv(w2)
-> pool -> dense(d) -> dropout -> dense(C); every convolution is followed by BatchNorm and
model.activation (ReLU: the paper's).

Three convolution implementations with the same parameters (numerically interchangeable, tests
check it):
  "xla"     lax.conv + autodiff. Right on GPU/TPU (cuDNN / XLA convolutions); vmap makes
            them grouped convolutions, which on one H200 cost 1.4-2.5x a lone member's time
            per member (BUILD_NOTES.md, "The GPU check run").
  "cpu"     the CPU path: a custom_vjp whose forward, input-gradient and weight-gradient
            convolutions are all in the form XLA:CPU gives its multi-threaded kernels, one
            ungrouped convolution per member under vmap, a fused BatchNorm+activation and a
            one-pass max-pool gradient; compiled with CPU_COMPILER_OPTIONS (why: below).
  "matmul"  im2col by nine shifted slices + one matmul: the plain reference the tests check
            the other two against; slower than "cpu" everywhere we measured.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwi_jax.models import activations
from lwi_jax.models import cnn_base
from lwi_jax.models.bn_act_cpu import BatchNormAct

_DIMS = ("NHWC", "HWIO", "NHWC")
_SAME = ((1, 1), (1, 1))


def conv3x3_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """SAME 3x3 convolution, stride 1, NHWC x HWIO, as shifted slices + one matmul (reference)."""
  n, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  # Concatenation order (dy, dx, c) matches kernel.reshape(9 * c, out) for HWIO kernels.
  patches = jnp.concatenate([xp[:, dy:dy + h, dx:dx + w, :] for dy in range(3) for dx in range(3)],
                            axis=-1)
  return jnp.dot(patches, kernel.reshape(9 * c, kernel.shape[-1]),
                 preferred_element_type=_acc_dtype(x)).astype(x.dtype)


def _acc_dtype(x: jax.Array):
  """Matmul accumulation dtype: at least float32 (bfloat16 inputs), float64 stays float64."""
  return jnp.promote_types(x.dtype, jnp.float32)


def conv3x3_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding=_SAME,
                                      dimension_numbers=_DIMS)


# ----------------------------------------------------------------------------- cpu
#
# Why the plain CPU step was slow (measured: BUILD_NOTES.md, "Speed"; jax/jaxlib 0.10):
#  1. XLA:CPU hands convolutions to YNNPACK by default, which runs them on ONE core and the
#     weight-gradient convolution (autodiff writes it with the whole HxW image as the "kernel")
#     ~6x slower than Eigen's multi-threaded convolution does.
#  2. Inside a while loop (our epoch is a lax.scan over steps) XLA:CPU does not rewrite
#     autodiff's transposed convolutions into the canonical NHWC x HWIO -> NHWC form, so they
#     miss every library kernel and run as naive emitted loops (one 32-channel layer's
#     backward: 15 s instead of 0.1 s), whichever library is enabled.
#  3. `jax.vmap` over members turns every convolution into a grouped one, ~10x slower again.
# So the CPU convolution is a custom_vjp whose three convolutions are all written in the
# canonical form (the weight gradient with explicit transposes: batch <-> channels), members
# stay ungrouped under vmap (custom_vmap), and the programs that run it are compiled with
# CPU_COMPILER_OPTIONS: YNNPACK keeps the matmuls and reductions, convolutions go to the
# multi-threaded Eigen kernels. Each piece alone is not enough (measured).

# YNNPACK only for matrix products and reductions, not convolutions (see above; with no YNNPACK
# at all BatchNorm's reductions got slow, with its elementwise fusions too the step did).
# Per compiled program (jax.jit compiler_options), not a process-wide XLA_FLAGS setting.
_YNN = "LIBRARY_FUSION_TYPE_"
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": f"{_YNN}INDIVIDUAL_DOT,{_YNN}REDUCE",
}


@jax.custom_batching.custom_vmap
def _ungrouped_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return conv3x3_xla(x, kernel)


@_ungrouped_conv.def_vmap
def _ungrouped_conv_vmap(axis_size, in_batched, x, kernel):
  """Members' convolutions stay ungrouped: XLA:CPU runs a grouped convolution ~10x slower."""
  x_batched, k_batched = in_batched
  if not k_batched:  # one kernel: the member axis joins the image batch
    y = _ungrouped_conv(x.reshape((-1,) + x.shape[2:]), kernel)
    return y.reshape((axis_size, -1) + y.shape[1:]), True
  if not x_batched:  # one input (e.g. shared eval batches): members' kernels side by side
    out = kernel.shape[-1]
    wide = jnp.moveaxis(kernel, 0, -2).reshape(kernel.shape[1:-1] + (axis_size * out,))
    y = _ungrouped_conv(x, wide)
    return jnp.moveaxis(y.reshape(y.shape[:-1] + (axis_size, out)), -2, 0), True
  return jnp.stack([_ungrouped_conv(x[i], kernel[i]) for i in range(axis_size)]), True


def conv3x3_weight_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
  """dk[a, b, c, o] = sum_{n,i,j} xpad[n, i+a, j+b, c] dy[n, i, j, o]  (HWIO, like the kernel).

  The same SAME-padded canonical convolution as the forward one, so it shares its ungrouped
  batching rule: the input is x with batch and channels swapped ([C, H, W, N]), the "kernel" is
  dy as [H, W, N, O]; the [C, 3, 3, O] result is transposed back. Operands are at least float32
  (bfloat16 products are exact in float32, so this is float32 accumulation).
  """
  return _weight_grad_channels_first(jnp.transpose(x, (3, 1, 2, 0)), dy)


def _weight_grad_channels_first(x_t: jax.Array, dy: jax.Array) -> jax.Array:
  """conv3x3_weight_grad from x already laid out [C, H, W, N]."""
  acc = _acc_dtype(x_t)
  out = _ungrouped_conv(x_t.astype(acc), jnp.transpose(dy, (1, 2, 0, 3)).astype(acc))
  return jnp.transpose(out, (1, 2, 0, 3)).astype(x_t.dtype)


def _input_grad(dy: jax.Array, kernel: jax.Array) -> jax.Array:
  """The input gradient: the forward convolution of dy with the flipped, transposed kernel."""
  return _ungrouped_conv(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))


@jax.custom_vjp
def conv3x3_cpu(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """SAME 3x3 convolution, stride 1, NHWC x HWIO; equal to conv3x3_xla, fast on CPU when
  compiled with CPU_COMPILER_OPTIONS (correct, but slower, without them)."""
  return _ungrouped_conv(x, kernel)


def _cpu_fwd(x, kernel):
  return _ungrouped_conv(x, kernel), (x, kernel)


def _cpu_bwd(res, dy):
  x, kernel = res
  return _input_grad(dy, kernel), conv3x3_weight_grad(x, dy)


conv3x3_cpu.defvjp(_cpu_fwd, _cpu_bwd)


@jax.custom_vjp
def conv3x3_cpu_given_transposed(x: jax.Array, x_t: jax.Array, kernel: jax.Array) -> jax.Array:
  """conv3x3_cpu(x, kernel), whose weight gradient reads x_t = x laid out [C, H, W, N] from the
  caller instead of transposing x (cnn_base.ImageCNN.stem_channels_first). x_t gets a zero
  cotangent: it is a second view of x, whose gradient dx carries in full."""
  return _ungrouped_conv(x, kernel)


def _cpu_t_fwd(x, x_t, kernel):
  return _ungrouped_conv(x, kernel), (x_t, kernel)


def _cpu_t_bwd(res, dy):
  x_t, kernel = res
  return _input_grad(dy, kernel), jnp.zeros_like(x_t), _weight_grad_channels_first(x_t, dy)


conv3x3_cpu_given_transposed.defvjp(_cpu_t_fwd, _cpu_t_bwd)

_CONVS = {"xla": conv3x3_xla, "matmul": conv3x3_matmul, "cpu": conv3x3_cpu}


def _pool_windows(x: jax.Array) -> jax.Array:
  n, h, w, c = x.shape
  return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


def _materialized(x: jax.Array) -> jax.Array:
  """x as one stored buffer. The max-pool gradient compares x with max(x); if XLA fused x's
  producer (BatchNorm, ReLU, residual add) into both sides it could round them differently (FMA
  contraction differs per fusion), no element would equal the max and the gradient would be
  lost. A barrier makes both read the same bits. (The jit-only gradient errors of ~0.1 once
  blamed on this were an XLA:CPU fusion-emitter miscompile that the barrier does not change:
  bench/xla_cpu_fusion_repro.py.)
  """
  return jax.lax.optimization_barrier(x)


@jax.custom_vjp
def max_pool_2x2_fused(x: jax.Array) -> jax.Array:
  """reshape+max pooling whose gradient is one elementwise pass (same values as autodiff's).

  Autodiff of `max` splits the gradient evenly among tied maxima; it builds that from a 0/1
  mask, a reduce_sum over each window and a divide, which XLA:CPU runs as three passes. Here
  the count is the sum of the four window positions (elementwise adds), so the whole backward
  fuses into one loop with the same result, ties included.
  """
  return _pool_windows(x).max(axis=(2, 4))


def _pool_fwd(x):
  x = _materialized(x)
  y = _pool_windows(x).max(axis=(2, 4))
  return y, (x, y)


def _pool_bwd(res, g):
  x, y = res
  n, h, w, c = x.shape
  win = _pool_windows(x)  # [n, h/2, 2, w/2, 2, c], a view of x
  yb = y[:, :, None, :, None, :]
  count = sum((win[:, :, a:a + 1, :, b:b + 1] == yb).astype(g.dtype)
              for a in range(2) for b in range(2))
  dx = jnp.where(win == yb, g[:, :, None, :, None, :] / count, 0.0)
  dx = dx.reshape(n, h // 2 * 2, w // 2 * 2, c)
  if dx.shape != x.shape:  # odd sizes: the last row / column is not pooled
    dx = jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0)))
  return (dx,)


max_pool_2x2_fused.defvjp(_pool_fwd, _pool_bwd)


def max_pool_2x2(x: jax.Array, impl: str) -> jax.Array:
  """2x2 max pooling, stride 2. The reshape+max forms have a cheaper gradient on CPU."""
  if impl == "xla":
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  if impl == "cpu":
    return max_pool_2x2_fused(x)
  return _pool_windows(_materialized(x)).max(axis=(2, 4))


def identity_kernel_init(base=nn.initializers.lecun_normal()):
  """`base`, except that the first min(C_in, C_out) filters copy their own input channel (a
  centred one, zeros elsewhere). airbench's identity initialisation: each convolution starts as
  an implicit residual connection, so a deep plain stack starts close to a shallow one."""

  def init(key, shape, dtype=jnp.float32):
    kernel = base(key, shape, dtype)
    kh, kw, c_in, c_out = shape
    n = min(c_in, c_out)
    eye = jnp.zeros((kh, kw, c_in, n), dtype).at[kh // 2, kw // 2].set(jnp.eye(c_in, n, dtype=dtype))
    return kernel.at[..., :n].set(eye)

  return init


class Conv3x3(nn.Module):
  """Parameters in `dtype`; the convolution runs in the input's dtype (bfloat16 under mixed
  precision: the float32 kernel is cast, its gradient comes back as float32)."""

  features: int
  impl: str = "xla"
  add_bias: bool = True  # False: return (conv, bias) so the bias can be folded into BatchNorm
  dtype: jnp.dtype = jnp.float32
  identity_init: bool = False  # model.identity_init: identity_kernel_init

  @nn.compact
  def __call__(self, x, x_t=None):
    """x_t: x laid out [C, H, W, N] (cnn_base.ImageCNN.stem_channels_first), for the CPU path's
    weight gradient; None: transposed from x where needed."""
    init = identity_kernel_init() if self.identity_init else nn.initializers.lecun_normal()
    kernel = self.param("kernel", init, (3, 3, x.shape[-1], self.features), self.dtype)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.dtype)
    if x_t is not None and self.impl == "cpu":
      y = conv3x3_cpu_given_transposed(x, x_t, kernel.astype(x.dtype))
    else:
      y = _CONVS[self.impl](x, kernel.astype(x.dtype))
    return y + bias.astype(x.dtype) if self.add_bias else (y, bias)


def conv_pool_bn_act(x: jax.Array, features: int, impl: str, bn_name: str, *, train: bool,
                     momentum: float, epsilon: float, dtype, compute_dtype, identity_init: bool,
                     bn_scale: bool, activation: str, pool: bool = False,
                     x_t: jax.Array | None = None) -> jax.Array:
  """conv 3x3 -> [2x2 max pool] -> BatchNorm -> activation, created as submodules of the
  calling module (the CNNs' one building block, so both convolution paths stay
  interchangeable). x_t: x laid out [C, H, W, N] if the caller has it (Conv3x3)."""
  bn = dict(use_running_average=not train, momentum=momentum, epsilon=epsilon,
            use_scale=bn_scale, name=bn_name)
  if impl == "cpu":
    z, bias = Conv3x3(features, impl, add_bias=False, dtype=dtype,
                      identity_init=identity_init)(x, x_t)
    if pool:  # a per-channel bias commutes with the max, so BatchNorm still folds it in
      z = max_pool_2x2(z, impl)
    return BatchNormAct(dtype=dtype, activation=activation, **bn)(z, bias)
  x = Conv3x3(features, impl, dtype=dtype, identity_init=identity_init)(x)
  if pool:
    x = max_pool_2x2(x, impl)
  return activations.get(activation)(nn.BatchNorm(dtype=compute_dtype, param_dtype=dtype,
                                                  **bn)(x))


class ResidualCNN(cnn_base.ImageCNN):
  """Widths (w0, w1, w2) and the dense width come from the config: one code for CPU and GPU."""

  dense_width: int = 256
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = self.stem(images)
    cdt = self.compute_dtype or self.dtype
    bn = self.block_options(train)
    layer = iter(range(5))

    def conv_bn_act(x, features, x_t=None):
      # nn.BatchNorm's automatic names, for both paths
      return conv_pool_bn_act(x, features, self.conv_impl, f"BatchNorm_{next(layer)}",
                              x_t=x_t, **bn)

    w0, w1, w2 = self.widths
    x = conv_bn_act(x, w0, self.stem_channels_first(images, train))
    x = x + conv_bn_act(x, w0)
    x = max_pool_2x2(x, self.conv_impl)
    x = conv_bn_act(x, w1)
    x = x + conv_bn_act(x, w1)
    x = max_pool_2x2(x, self.conv_impl)
    x = conv_bn_act(x, w2)
    x = max_pool_2x2(x, self.conv_impl)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.dense_width, dtype=cdt, param_dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=cdt, param_dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.promote_types(self.dtype, jnp.float32))
