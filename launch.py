"""Entry point: python launch.py --config=configs/cifar.py[:cpu] [--config.train.epochs=5 ...]"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lwi_jax.parallel import sharding
from lwi_jax.report import markdown
from lwi_jax.runtime import console
from lwi_jax.runtime import errors
from lwi_jax.study import study as study_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                          lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  console.configure_logging()  # library INFO logs only with --verbosity
  def study():
    sharding.initialize_distributed(_CONFIG.value)  # before anything else touches JAX
    failure = markdown.failure_line(study_lib.run(_CONFIG.value))
    if failure:  # the outputs are written and flag it; the exit code must too
      print(failure, file=sys.stderr, flush=True)
      sys.exit(errors.EXIT_NON_FINITE)

  # Known errors: one line + hint, exit 2 (traceback with --verbosity=1); see lwi_jax/errors.py.
  errors.run(study, logging.get_verbosity())


if __name__ == "__main__":
  app.run(main)
