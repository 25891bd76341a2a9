"""The one exception type for problems the user can fix (bad input, bad flags, bad files)."""


class UserError(Exception):
    """A problem with the user's input: the message names the file and says what to do.

    The CLI prints the message without a traceback and exits with status 2.
    """
