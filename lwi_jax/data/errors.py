"""One exception type for data problems, so callers (and users) see the file and the fix."""

from lwi_jax.runtime.errors import UserError


class DataError(UserError):
  """A dataset could not be read: the message names the file or field and what was expected."""
  hint = "fix the data file or the data.* field named above"
