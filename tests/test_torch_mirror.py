"""bench/torch_reference.py's CNNs compute what the JAX models compute, field for field.

bench.time_to_accuracy's JAX/PyTorch per-step ratio compares one network in two frameworks
only if the mirrors are that network: here a JAX model's parameters and BatchNorm statistics
are loaded into the PyTorch mirror and both give the same logits, in evaluation and in training
mode (batch statistics), with the preset's fields on (whitening, identity init, no BN scale).
"""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a bench extra: pip install -e '.[bench]'")

from bench import time_to_accuracy  # noqa: E402
from bench import torch_reference as tr  # noqa: E402
from configs import cifar  # noqa: E402
from conftest import jit_init  # noqa: E402
from lwi_jax import models  # noqa: E402
from lwi_jax.models import conv_groups  # noqa: E402

WIDTHS = (4, 8, 8)


def _cfg(name, **fields):
  return ml_collections.ConfigDict(dict(name=name, widths=WIDTHS, dense_width=16, dropout_rate=0.0,
                                        conv_impl="xla", **fields))


def _images(n=6, size=16, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _perturbed(variables, seed=1):
  """Non-trivial parameters and running statistics (biases != 0, variances != 1). Noise from
  numpy: drawn with jax.random, each leaf's draw is a program to compile."""
  rng = np.random.default_rng(seed)

  def noisy(tree, scale, positive=False):
    def leaf(x):
      x = np.asarray(x)
      n = (scale * rng.standard_normal(x.shape)).astype(x.dtype)
      return jnp.asarray(np.exp(n) * x if positive else x + n)
    return jax.tree.map(leaf, tree)
  stats = {name: {"mean": np.asarray(s["mean"]) + 0.2, "var": s["var"]}
           for name, s in variables["batch_stats"].items()}
  return {"params": noisy(variables["params"], 0.3), "batch_stats": noisy(stats, 0.3, True)}


def _t(x, *perm):
  x = np.asarray(x, np.float32)
  return torch.tensor(x.transpose(*perm) if perm else x)


def _load(net, variables, name):
  """The JAX variables into the PyTorch mirror: blocks in creation order, kernels HWIO -> OIHW."""
  params, stats = variables["params"], variables["batch_stats"]
  blocks = [m for m in net.modules() if isinstance(m, tr._ConvPoolBNAct)]
  with torch.no_grad():
    for i, block in enumerate(blocks):
      block.conv.weight.copy_(_t(params[f"Conv3x3_{i}"]["kernel"], 3, 2, 0, 1))
      block.conv.bias.copy_(_t(params[f"Conv3x3_{i}"]["bias"]))
      bn = params[f"BatchNorm_{i}"]
      block.bn.bias.copy_(_t(bn["bias"]))
      block.bn.weight.copy_(_t(bn["scale"]) if "scale" in bn else torch.ones(block.bn.num_features))
      block.bn.running_mean.copy_(_t(stats[f"BatchNorm_{i}"]["mean"]))
      block.bn.running_var.copy_(_t(stats[f"BatchNorm_{i}"]["var"]))
    if name == "conv_groups":
      net.head.weight.copy_(_t(params["head"]["kernel"], 1, 0))
    else:  # the dense layer reads [h, w, c] flattened in JAX, [c, h, w] in PyTorch
      k = np.asarray(params["Dense_0"]["kernel"])
      side = int(np.sqrt(k.shape[0] // WIDTHS[-1]))
      net.fc1.weight.copy_(_t(k.reshape(side, side, WIDTHS[-1], -1).transpose(3, 2, 0, 1)
                              .reshape(k.shape[1], -1)))
      net.fc1.bias.copy_(_t(params["Dense_0"]["bias"]))
      net.fc2.weight.copy_(_t(params["head"]["kernel"], 1, 0))
      net.fc2.bias.copy_(_t(params["head"]["bias"]))


@pytest.mark.parametrize("name", ["conv_groups", "resnet_cnn"])
@pytest.mark.parametrize("train", [False, True])
def test_mirror_gives_the_jax_logits(name, train):
  x = _images()
  # conv_groups with GELU (tanh approximation on both sides), the residual CNN with ReLU
  fields = dict(whiten_patch=2, identity_init=True, bn_scale=name == "resnet_cnn",
                activation="gelu" if name == "conv_groups" else "relu")
  config = ml_collections.ConfigDict({"model": _cfg(name, **fields)})
  model = models.create_model(config.model, 10, {}, x)
  variables = _perturbed(jit_init(model, jax.random.key(0), jnp.asarray(x), train=False))
  if train:
    logits, _ = model.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
  else:
    logits = model.apply(variables, jnp.asarray(x), train=False)
  data = types.SimpleNamespace(train=types.SimpleNamespace(inputs=x), num_classes=10)
  net = time_to_accuracy.torch_network(tr, config, data)
  _load(net, variables, name)
  net.train(train)
  with torch.no_grad():
    mirrored = net(_t(x, 0, 3, 1, 2) / 127.5 - 1.0).numpy()
  np.testing.assert_allclose(mirrored, np.asarray(logits), rtol=2e-4, atol=2e-5)


def test_mirror_fields():
  assert tr.LOGIT_SCALE == conv_groups.LOGIT_SCALE
  torch.manual_seed(0)
  block = tr._ConvPoolBNAct(3, 5, identity_init=True, bn_scale=False)
  w = block.conv.weight.detach().numpy()
  eye = np.zeros((3, 3, 3, 3), np.float32)
  eye[range(3), range(3), 1, 1] = 1.0
  np.testing.assert_array_equal(w[:3], eye)  # filters 0-2 copy their channel
  assert np.abs(w[3:]).sum() > 0  # the rest keep PyTorch's own initialisation
  assert not block.bn.weight.requires_grad and block.bn.bias.requires_grad


def test_torch_member_trains_only_what_jax_trains(tiny_cifar10_dir):
  """The smoke preset (conv_groups, whitening, no BN scale): the fixed BN scales and the whitening
  constants are neither in the optimizer nor decayed, and one epoch leaves them unchanged."""
  config = cifar.get_config("smoke")
  config.data.dir = tiny_cifar10_dir
  config.train.epochs = 1
  data = time_to_accuracy.data_lib.load_dataset(config.data)
  member = time_to_accuracy.TorchMember(config, data, threads=1)
  frozen = [m.bn.weight for m in member.net.modules() if isinstance(m, tr._ConvPoolBNAct)]
  assert frozen and all(not any(p is q for q in member.params) for p in frozen)
  before = member.net.stem.weight.clone()
  member.train_epoch(0)
  assert all(torch.equal(p, torch.ones_like(p)) for p in frozen)
  assert torch.equal(member.net.stem.weight, before)
  assert member.split_tpr().shape == (data.num_classes,)
