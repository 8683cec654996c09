"""The CNN and the recipe follow the data: any size >= 8x8, any channel count and class count,
normalisation from the training split, mirroring off by a config field; configs/images.py end
to end on a tiny generated folder."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import images as images_config
from conftest import jit_init
from lwi_jax import augment, models
from lwi_jax.models.resnet_cnn import ResidualCNN
from lwi_jax.study import checks, study, train_options


@pytest.mark.parametrize("shape,classes", [((8, 8, 1), 3), ((9, 13, 4), 7)])
def test_cnn_takes_any_size_channels_and_classes(shape, classes):
  model = ResidualCNN(num_classes=classes, widths=(2, 2, 2), dense_width=4, conv_impl="xla",
                      pixel_mean=(100.0,) * shape[-1], pixel_std=(50.0,) * shape[-1])
  # Shapes are what is asked, and both the shapes and the size check are found by tracing.
  logits, _ = jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x,
                                                              train=False),
                             jnp.zeros((2,) + shape, jnp.uint8))
  assert logits.shape == (2, classes)
  with pytest.raises(ValueError, match="at least 8x8"):
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 7, 9, 1), jnp.uint8),
                                      train=False))


def test_train_stats_normalisation_is_the_training_splits():
  cfg = images_config.get_config("folder").model
  model = models.create_model(cfg, 3, {"pixel_mean": [10.0, 20.0], "pixel_std": [2.0, 4.0]})
  assert model.pixel_mean == (10.0, 20.0) and model.pixel_std == (2.0, 4.0)
  # mean = std = 127.5 is the fixed scaling x / 127.5 - 1: the same parameters give the same
  # logits, so the statistics are what the first layer sees (a wrong mean or std would not).
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 8, 8, 2)), jnp.uint8)
  small = dict(num_classes=3, widths=(2, 2, 2), dense_width=4, conv_impl="xla")
  fixed = ResidualCNN(**small)
  variables = jit_init(fixed, jax.random.PRNGKey(0), x, train=False)
  stats = ResidualCNN(**small, pixel_mean=(127.5, 127.5), pixel_std=(127.5, 127.5))
  other = ResidualCNN(**small, pixel_mean=(127.5, 100.0), pixel_std=(127.5, 127.5))
  logits = lambda model: jax.jit(functools.partial(model.apply, train=False))(variables, x)  # noqa: E731
  want = logits(fixed)
  np.testing.assert_allclose(logits(stats), want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(logits(other), want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="input_norm='train_stats' needs"):
    models.create_model(cfg, 3, {})
  fixed_cfg = ml_collections.ConfigDict(dict(cfg.to_dict(), input_norm="fixed"))
  assert models.create_model(fixed_cfg, 3, {}).pixel_mean is None  # CIFAR-10's x / 127.5 - 1


def test_flip_none_translates_without_mirroring():
  x = jnp.arange(2 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 8, 1)
  key = jax.random.PRNGKey(3)
  spec = augment.AugmentSpec("flip_crop", 2, "reflect", "none")
  got = augment.apply(spec, x, key, jnp.arange(2), 1)
  want = augment.flip_crop(x, key, 2, "reflect", flip=jnp.zeros((2,), bool))
  np.testing.assert_array_equal(got, want)
  train = ml_collections.ConfigDict(dict(augment="flip_crop", flip="none", eval_flip=True))
  with pytest.raises(ValueError, match="train.eval_flip=True .* train.flip='none'"):
    train_options.eval_flip(train)


def test_images_config_presets_validate():
  for preset in images_config.PRESETS:
    checks.validate_config(images_config.get_config(preset))
  bad = images_config.get_config("folder")
  bad.data.channels = 2
  with pytest.raises(ValueError, match=r"data.channels=2 is not one of \[0, 1, 3, 4\]"):
    checks.validate_config(bad)


def test_folder_study_end_to_end(tmp_path):
  rng = np.random.default_rng(0)
  for c, name in enumerate(("zero", "one", "two")):
    (tmp_path / "img" / name).mkdir(parents=True)
    for i in range(6 if name == "two" else 12):  # imbalanced: the report must say so
      x = np.clip(rng.normal(60 + 70 * c, 20, (8, 8)), 0, 255).astype(np.uint8)
      Image.fromarray(x).save(tmp_path / "img" / name / f"{i:03d}.png")
  config = images_config.get_config("folder")
  config.workdir = str(tmp_path / "run")
  config.data.update(dict(root=str(tmp_path / "img"), cache_dir=str(tmp_path / "cache"),
                          validation_fraction=0.2, min_validation_per_class=1))
  config.model.update(dict(widths=(4, 4, 4), dense_width=8))
  config.train.update(dict(epochs=1, batch_size=8, eval_batch_size=16, flip="none",
                           eval_flip=False))
  config.rules, config.seeds = ("uniform",), (0,)
  config.compare.test = "none"
  lines = []
  study.run(config, log=lines.append)
  with open(os.path.join(config.workdir, "results.json")) as f:
    results = json.load(f)
  info = results["dataset"]["info"]
  assert info["image_shape"] == [8, 8, 1] and info["layout"] == "class"
  names = results["dataset"]["class_names"]
  assert names == ["one", "two", "zero"]  # folder names, sorted
  assert info["class_counts"]["test"] == [2, 1, 2] and info["class_counts"]["train"] == [8, 4, 8]
  assert any(line.startswith("images: 8x8x1 per image") for line in lines)
  assert any(line.startswith("WARNING: the training classes are not balanced") for line in lines)
  with open(os.path.join(config.workdir, "report.md")) as f:
    assert "The training classes are not balanced (largest / smallest = 2.0)" in f.read()
  # the split is written to the workdir, and a rerun pinned to it reuses the finished phases
  manifest = os.path.join(config.workdir, "split_manifest.json")
  assert results["dataset"]["split_manifest"] == manifest
  assert any(line.startswith(f"split manifest: {manifest}") and
             f"--config.data.split_manifest={manifest}" in line for line in lines)
  with open(manifest) as f:
    listed = json.load(f)["splits"]
  assert [len(listed[s]) for s in ("train", "validation", "test")] == [20, 5, 5]
  config.data.split_manifest = manifest
  lines.clear()
  study.run(config, log=lines.append)
  assert any(line.startswith(f"  split reused from {manifest}") for line in lines)
  assert sum("reusing finished phase" in line for line in lines) == 2  # baseline, round1
  with open(os.path.join(config.workdir, "results.json")) as f:
    again = json.load(f)
  assert again["dataset"]["content_hash"] == results["dataset"]["content_hash"]
  with open(manifest) as f:
    assert json.load(f)["splits"] == listed
