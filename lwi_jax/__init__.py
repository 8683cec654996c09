"""lwi-jax: study and counteract learnability imbalance with class-weighted training in JAX/Flax."""

__version__ = "0.1.0"
