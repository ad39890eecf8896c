"""One exception type for bad input, so the CLI can print it as one line instead of a traceback."""


class InputError(ValueError):
    """Input a user can fix (a path, a parameter, a data file). The message says what and how."""
