"""One exception type for data problems, so callers (and users) see the file and the fix."""


class DataError(ValueError):
  """A dataset could not be read: the message names the file or field and what was expected."""
