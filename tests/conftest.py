"""Shared test fixtures. Tests run on CPU with tiny models; full runs belong in bench/."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The real CIFAR-10 (python version) lives beside the checkout, read-only; never copied in.
CIFAR10_DIR = os.environ.get(
    "LWI_CIFAR10_DIR", os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar-10-batches-py"))


@pytest.fixture(scope="session")
def cifar10_dir() -> str:
  if not os.path.isdir(CIFAR10_DIR):
    pytest.fail(f"CIFAR-10 python version not found at {CIFAR10_DIR}; set LWI_CIFAR10_DIR")
  return CIFAR10_DIR
